"""Evaluation metrics on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from seismic_ml import pick_scores
from seismic_ml.errors import SeismicMLError
from seismic_ml.evaluation import metrics

# residuals 0.125, -0.25, 0.5, 0: exact in binary, so the expected values are exact too
TRUE = np.array([1.0, 2.0, 3.0, 4.0])
PRED = np.array([1.125, 1.75, 3.5, 4.0])


def test_magnitude_metrics_known_answers():
    m = metrics.magnitude_metrics(TRUE, PRED)
    assert m["n_traces"] == 4
    assert m["mae"] == pytest.approx(0.875 / 4)
    assert m["bias"] == pytest.approx(0.375 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(0.328125 / 4))
    assert m["residual_std"] == pytest.approx(math.sqrt(0.328125 / 4 - (0.375 / 4) ** 2))
    assert m["r2"] == pytest.approx(1 - 0.328125 / 5.0)
    assert m["frac_within_0.3"] == 0.75
    assert m["frac_within_0.5"] == 1.0
    assert "frac_within_1sigma" not in m


def test_magnitude_metrics_skip_nan_pairs_and_refuse_empty_input():
    m = metrics.magnitude_metrics(np.append(TRUE, 5.0), np.append(PRED, np.nan))
    assert m["n_traces"] == 4
    assert m["mae"] == pytest.approx(0.875 / 4)
    with pytest.raises(SeismicMLError, match="no trace"):
        metrics.magnitude_metrics([np.nan], [1.0])


def test_sigma_coverage_counts_residuals_inside_one_and_two_sigma():
    sigma = np.array([0.25, 0.125, 0.125, 0.5])  # |r| = 0.125, 0.25, 0.5, 0
    m = metrics.magnitude_metrics(TRUE, PRED, sigma)
    assert m["frac_within_1sigma"] == 0.5  # first and last
    assert m["frac_within_2sigma"] == 0.75  # 0.5 > 2 * 0.125
    assert m["mean_sigma"] == pytest.approx(0.25)


def test_magnitude_bin_table_groups_by_half_units_and_leaves_empty_bins_out():
    true = np.array([1.0, 1.25, 1.75, 3.0])
    pred = np.array([1.5, 1.25, 1.5, 3.5])
    table = metrics.magnitude_bin_table(true, pred)
    assert table[["mag_low", "mag_high"]].values.tolist() == [[1.0, 1.5], [1.5, 2.0], [3.0, 3.5]]
    assert table["n"].tolist() == [2, 1, 1]
    assert table["bias"].tolist() == pytest.approx([0.25, -0.25, 0.5])
    assert table["mae"].tolist() == pytest.approx([0.25, 0.25, 0.5])


# five windows at 100 Hz, onset at sample 100 in the first three:
# 0: picked 5 samples late (TP at 0.1 s), 1: picked 30 late (TP only at 0.5 s),
# 2: below threshold (FN), 3: a pick without onset (FP), 4: nothing, nothing (TN)
ONSET = np.array([100.0, 100.0, 100.0, np.nan, np.nan])
PICK = np.array([105.0, 130.0, 200.0, 50.0, 60.0])
PROB = np.array([0.9, 0.9, 0.2, 0.8, 0.1])


def test_pick_scores_within_tolerances():
    tight = pick_scores.pick_scores(ONSET, PICK, PROB, 0.3, 0.1, 100.0)
    assert tight == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3})
    loose = pick_scores.pick_scores(ONSET, PICK, PROB, 0.3, 0.5, 100.0)
    assert loose == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    nothing = pick_scores.pick_scores(ONSET, PICK, PROB, 0.95, 0.5, 100.0)
    assert nothing == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_onset_residuals_in_seconds_only_where_an_onset_is_labelled():
    residual = metrics.onset_residuals(ONSET, PICK, 100.0)
    assert residual.tolist() == pytest.approx([0.05, 0.3, 1.0])
    m = metrics.onset_metrics(residual, "P")
    assert m["p_n_residuals"] == 3
    assert m["p_residual_mean_s"] == pytest.approx(0.45)
    assert m["p_residual_mae_s"] == pytest.approx(0.45)
    assert m["p_residual_std_s"] == pytest.approx(np.std([0.05, 0.3, 1.0]))
    assert metrics.onset_metrics(np.array([]), "S") == {"s_n_residuals": 0.0}


def test_detection_auc_known_answers():
    # of the 4 event-noise pairs, 3 are ordered right
    assert metrics.detection_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert metrics.detection_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.detection_auc([0, 1], [0.9, 0.1]) == pytest.approx(0.0)
    assert math.isnan(metrics.detection_auc([1, 1], [0.2, 0.3]))


def test_phase_metrics_combine_residuals_scores_and_detection():
    table = pd.DataFrame(
        {
            "true_p_sample": ONSET,
            "pred_p_sample": PICK,
            "pred_p_prob": PROB,
            "is_event": np.isfinite(ONSET),
            "detection_score": [0.9, 0.8, 0.7, 0.95, 0.1],
        }
    )
    m = metrics.phase_metrics(table, 100.0, threshold=0.3, phases="P")
    assert m["n_windows"] == 5
    assert m["p_precision_0.1s"] == pytest.approx(1 / 3)
    assert m["p_recall_0.5s"] == pytest.approx(2 / 3)
    assert m["p_residual_mae_s"] == pytest.approx(0.45)
    assert m["detection_roc_auc"] == pytest.approx(0.5)  # the 0.95 noise window beats all
    assert not any(k.startswith("s_") for k in m)
