"""Evaluation metrics as pure functions: magnitude per trace, picks as seisbench's benchmark does.

Phase metrics follow the seisbench pick benchmark (Münchmeyer et al. 2022): the predicted onset
of a phase is the sample of its highest probability in the window; the detection score of a
window is the highest 1 - P(noise) in it. A pick counts at a probability threshold when its
peak probability reaches the threshold, and is a true positive when it lies within a tolerance
of the labelled onset. As in the benchmark, a phase's threshold can be tuned: the one that
maximises F1 on the dev split (`best_threshold`), at which the test split is then scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from seismic_ml.errors import SeismicMLError
from seismic_ml.pick_scores import (
    TUNING_TOLERANCE_S,
    TunedThreshold,
    best_threshold,
    pick_scores,
)

WITHIN = (0.3, 0.5)
TOLERANCES_S = (0.1, 0.5)
DEFAULT_THRESHOLD = 0.3
BIN_WIDTH = 0.5


# ---------------------------------------------------------------- magnitude


def magnitude_metrics(
    true: np.ndarray, pred: np.ndarray, sigma: np.ndarray | None = None
) -> dict[str, float]:
    """MAE, RMSE, bias, residual std (ddof 0), R², fractions within 0.3/0.5 (and 1/2 sigma)."""
    true, pred = _finite_pairs(true, pred)
    residual = pred - true
    metrics = {
        "n_traces": float(len(residual)),
        "mae": float(mean_absolute_error(true, pred)),
        "rmse": float(root_mean_squared_error(true, pred)),
        "bias": float(residual.mean()),
        "residual_std": float(residual.std()),
        # force_finite=False: NaN, not scikit-learn's 0 or 1, when every true value is equal
        "r2": float(r2_score(true, pred, force_finite=False)) if np.ptp(true) > 0 else float("nan"),
    }
    for limit in WITHIN:
        metrics[f"frac_within_{limit}"] = float((np.abs(residual) <= limit).mean())
    if sigma is not None:
        metrics.update(sigma_coverage(true, pred, sigma))
    return metrics


def sigma_coverage(true: np.ndarray, pred: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Fraction of residuals within 1 and 2 predicted sigma (0.68 / 0.95 if calibrated)."""
    residual = np.abs(np.asarray(pred, float) - np.asarray(true, float))
    sigma = np.asarray(sigma, dtype=float)
    ok = np.isfinite(residual) & np.isfinite(sigma)
    return {
        "frac_within_1sigma": float((residual[ok] <= sigma[ok]).mean()),
        "frac_within_2sigma": float((residual[ok] <= 2 * sigma[ok]).mean()),
        "mean_sigma": float(sigma[ok].mean()),
    }


def magnitude_bin_table(
    true: np.ndarray, pred: np.ndarray, width: float = BIN_WIDTH
) -> pd.DataFrame:
    """Per magnitude bin [low, high): count, MAE, bias and residual std; empty bins left out."""
    true, pred = _finite_pairs(true, pred)
    low = np.floor(true.min() / width) * width
    edges = np.arange(low, true.max() + width, width)
    index = np.clip(np.searchsorted(edges, true, side="right") - 1, 0, len(edges) - 1)
    rows = []
    for i in np.unique(index):
        residual = pred[index == i] - true[index == i]
        rows.append(
            {
                "mag_low": round(float(edges[i]), 6),
                "mag_high": round(float(edges[i] + width), 6),
                "n": len(residual),
                "mae": float(np.abs(residual).mean()),
                "bias": float(residual.mean()),
                "residual_std": float(residual.std()),
            }
        )
    return pd.DataFrame(rows)


def _finite_pairs(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if true.shape != pred.shape:
        raise SeismicMLError(f"{true.shape} true values but {pred.shape} predictions")
    ok = np.isfinite(true) & np.isfinite(pred)
    if not ok.any():
        raise SeismicMLError("no trace with both a true and a predicted magnitude to score")
    return true[ok], pred[ok]


# ---------------------------------------------------------------- phase picking


def onset_residuals(
    true_sample: np.ndarray, pred_sample: np.ndarray, sampling_rate: float
) -> np.ndarray:
    """Predicted minus labelled onset in seconds, for the windows that hold a labelled onset."""
    true_sample = np.asarray(true_sample, dtype=float)
    pred_sample = np.asarray(pred_sample, dtype=float)
    ok = np.isfinite(true_sample) & np.isfinite(pred_sample)
    return (pred_sample[ok] - true_sample[ok]) / sampling_rate


def onset_metrics(residual_s: np.ndarray, phase: str) -> dict[str, float]:
    """Mean, std and MAE (s) of onset residuals, and how many windows they come from."""
    key = phase.lower()
    residual_s = np.asarray(residual_s, dtype=float)
    if residual_s.size == 0:
        return {f"{key}_n_residuals": 0.0}
    return {
        f"{key}_n_residuals": float(residual_s.size),
        f"{key}_residual_mean_s": float(residual_s.mean()),
        f"{key}_residual_std_s": float(residual_s.std()),
        f"{key}_residual_mae_s": float(np.abs(residual_s).mean()),
    }


def detection_auc(is_event: np.ndarray, score: np.ndarray) -> float:
    """Event-vs-noise ROC-AUC of a per-window score; NaN when only one class is present.

    sklearn comes with mlflow (a dependency), so its tested implementation is used.
    """
    is_event = np.asarray(is_event, dtype=bool)
    score = np.asarray(score, dtype=float)
    if is_event.all() or not is_event.any():
        return float("nan")
    return float(roc_auc_score(is_event, score))


def phase_metrics(
    picks: pd.DataFrame,
    sampling_rate: float,
    threshold: float = DEFAULT_THRESHOLD,
    phases: str = "PS",
) -> dict[str, float]:
    """All phase metrics from a per-window table (columns true_<p>, pred_<p>, prob_<p>, ...).

    `picks` has, per phase p in lower case, true_<p>_sample (NaN without an onset),
    pred_<p>_sample and pred_<p>_prob, plus is_event and detection_score.
    """
    metrics: dict[str, float] = {"n_windows": float(len(picks))}
    for phase in phases:
        key = phase.lower()
        true = picks[f"true_{key}_sample"].to_numpy(dtype=float)
        pred = picks[f"pred_{key}_sample"].to_numpy(dtype=float)
        prob = picks[f"pred_{key}_prob"].to_numpy(dtype=float)
        metrics.update(onset_metrics(onset_residuals(true, pred, sampling_rate), phase))
        for tol in TOLERANCES_S:
            scores = pick_scores(true, pred, prob, threshold, tol, sampling_rate)
            metrics.update({f"{key}_{name}_{tol}s": value for name, value in scores.items()})
    metrics["detection_roc_auc"] = detection_auc(picks["is_event"], picks["detection_score"])
    return metrics


def tune_thresholds(
    picks: pd.DataFrame, sampling_rate: float, phases: str = "PS"
) -> dict[str, TunedThreshold]:
    """Per phase, the F1-maximising threshold of a per-window table (as `phase_metrics` reads)."""
    return {
        phase: best_threshold(
            picks[f"true_{phase.lower()}_sample"].to_numpy(dtype=float),
            picks[f"pred_{phase.lower()}_sample"].to_numpy(dtype=float),
            picks[f"pred_{phase.lower()}_prob"].to_numpy(dtype=float),
            sampling_rate,
        )
        for phase in phases
    }


def tuned_pick_metrics(
    picks: pd.DataFrame, sampling_rate: float, thresholds: dict[str, float]
) -> dict[str, float]:
    """Per phase with a tuned threshold: it, and precision, recall, F1 at it (0.5 s tolerance)."""
    metrics: dict[str, float] = {}
    tol = TUNING_TOLERANCE_S
    for phase, threshold in thresholds.items():
        key = phase.lower()
        scores = pick_scores(
            picks[f"true_{key}_sample"].to_numpy(dtype=float),
            picks[f"pred_{key}_sample"].to_numpy(dtype=float),
            picks[f"pred_{key}_prob"].to_numpy(dtype=float),
            threshold,
            tol,
            sampling_rate,
        )
        metrics[f"{key}_threshold_tuned"] = float(threshold)
        metrics.update({f"{key}_{name}_tuned_{tol}s": value for name, value in scores.items()})
    return metrics
