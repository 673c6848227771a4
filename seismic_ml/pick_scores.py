"""Picks scored as seisbench's pick benchmark scores them (Münchmeyer et al. 2022): one pick per
window at its peak probability, a true positive within a tolerance of the labelled onset, and
the threshold that maximises F1. Training tunes its per-epoch thresholds with it, evaluation
scores the test split with it; it needs nothing but numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TUNING_TOLERANCE_S = 0.5  # the tolerance at which pick thresholds are tuned and scored


def pick_scores(
    true_sample: np.ndarray,
    pred_sample: np.ndarray,
    pred_prob: np.ndarray,
    threshold: float,
    tolerance_s: float,
    sampling_rate: float,
) -> dict[str, float]:
    """Precision, recall, F1 of one pick per window (peak >= threshold) within a tolerance.

    A window's pick is a true positive when the window holds a labelled onset within the
    tolerance; a pick that misses counts as a false positive and, where an onset exists, also
    as a false negative. No picks at all give precision 0 (as sklearn's zero_division=0).
    """
    true_sample = np.asarray(true_sample, dtype=float)
    picked = np.asarray(pred_prob, dtype=float) >= threshold
    labelled = np.isfinite(true_sample)
    tp = int((picked & _hits(true_sample, pred_sample, tolerance_s, sampling_rate)).sum())
    fp = int(picked.sum()) - tp
    fn = int(labelled.sum()) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _hits(
    true_sample: np.ndarray, pred_sample: np.ndarray, tolerance_s: float, sampling_rate: float
) -> np.ndarray:
    """Windows whose predicted onset lies within the tolerance of a labelled onset."""
    true_sample = np.asarray(true_sample, dtype=float)
    pred_sample = np.asarray(pred_sample, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.abs(pred_sample - true_sample) <= tolerance_s * sampling_rate + 1e-9


@dataclass(frozen=True)
class TunedThreshold:
    """The pick threshold that maximises F1 on a set of windows, and the F1 it reaches."""

    threshold: float
    f1: float


def best_threshold(
    true_sample: np.ndarray,
    pred_sample: np.ndarray,
    pred_prob: np.ndarray,
    sampling_rate: float,
    tolerance_s: float = TUNING_TOLERANCE_S,
) -> TunedThreshold:
    """The threshold in (0, 1) maximising `pick_scores`' F1; ties: the lowest; NaN: no hit at all.

    F1 changes only where the threshold passes a peak probability, so the candidates are the
    distinct peaks in (0, 1] (a peak of exactly 1 stands as the largest float below 1), each
    scored at once from cumulative counts: F1 = 2 TP / (picks + labelled onsets).
    """
    true_sample = np.asarray(true_sample, dtype=float)
    prob = np.asarray(pred_prob, dtype=float)
    usable = np.isfinite(prob) & (prob > 0)
    hits = usable & _hits(true_sample, pred_sample, tolerance_s, sampling_rate)
    candidates = np.unique(np.minimum(prob[usable], np.nextafter(1.0, 0.0)))
    picks = _count_at_or_above(prob[usable], candidates)
    true_positives = _count_at_or_above(prob[hits], candidates)
    f1 = 2.0 * true_positives / np.maximum(picks + int(np.isfinite(true_sample).sum()), 1)
    if not (true_positives > 0).any():
        return TunedThreshold(float("nan"), 0.0)
    threshold = float(candidates[int(np.argmax(f1))])  # argmax: the first, lowest of ties
    scores = pick_scores(true_sample, pred_sample, prob, threshold, tolerance_s, sampling_rate)
    return TunedThreshold(threshold, scores["f1"])


def _count_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values reach each threshold."""
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side="left")
