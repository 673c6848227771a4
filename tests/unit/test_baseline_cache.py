"""The classical baselines of an evaluated split are computed once and reused by every model."""

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seismic_ml.config import with_model_defaults
from seismic_ml.data.quality import screen
from seismic_ml.data.registry import get_split, load_dataset
from seismic_ml.evaluation import baseline_cache, baselines
from seismic_ml.evaluation.scoring_magnitude import score_magnitude
from seismic_ml.evaluation.scoring_phase import score_phase
from seismic_ml.models.registry import build_model
from tests.conftest import tiny_run_config

TASKS = {"phase": "phasenet", "magnitude": "amag_v2"}


class BaselineCalls:
    """Counts the windows each classical baseline is computed on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.windows = 0
        for name in ("sta_lta_picks", "ml_baseline"):
            original = getattr(baselines, name)
            monkeypatch.setattr(baselines, name, self._counted(original))

    def _counted(self, original):
        def counted(windows, *args, **kwargs):
            self.windows += len(windows)
            return original(windows, *args, **kwargs)

        return counted


def score(task: str, seed: int) -> tuple[dict[str, float], pd.DataFrame]:
    """One freshly initialised model of the task scored on the tiny set's test split."""
    cfg = with_model_defaults(tiny_run_config(TASKS[task]))
    torch.manual_seed(seed)
    model = build_model(cfg.model_type, cfg.model)
    data = screen(get_split(load_dataset(cfg.data.dataset), "test"), "test")[0]
    if task == "phase":
        scored = score_phase(model, data, cfg, 16, 0.3, None)
    else:
        scored = score_magnitude(model, data, cfg, 16, None)
    return scored.metrics, scored.predictions


def baseline_part(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if c.startswith("baseline")]]


@pytest.mark.parametrize("task", TASKS)
def test_a_second_model_on_the_same_windows_reuses_the_baseline(
    task: str, tiny_dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(os.environ["SEISBENCH_CACHE_ROOT"]) / baseline_cache.FOLDER
    for kept in folder.glob("*.npz"):
        kept.unlink()
    calls = BaselineCalls(monkeypatch)
    first_metrics, first = score(task, seed=1)
    computed = calls.windows
    assert computed == len(first) and len(list(folder.glob("*.npz"))) == 1
    second_metrics, second = score(task, seed=2)
    assert calls.windows == computed, "the second model computed the baseline again"
    pd.testing.assert_frame_equal(baseline_part(first), baseline_part(second))
    base = {k: v for k, v in first_metrics.items() if k.startswith("baseline/")}
    assert base and base == {k: second_metrics[k] for k in base}
    model_part = [c for c in first.columns if c.startswith("pred_")]
    assert not first[model_part].equals(second[model_part]), "two models gave the same scores"


def test_a_damaged_or_foreign_cache_file_is_recomputed(
    tiny_dataset: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    score("phase", seed=1)  # the file exists now
    _, reference = score("phase", seed=1)
    folder = Path(os.environ["SEISBENCH_CACHE_ROOT"]) / baseline_cache.FOLDER
    (kept,) = [p for p in folder.glob("*.npz") if "baseline_p_sample" in np.load(p).files]
    for damage in (b"not an npz file", _other_length(kept)):
        kept.write_bytes(damage)
        calls = BaselineCalls(monkeypatch)
        with caplog.at_level(logging.WARNING):
            _, table = score("phase", seed=1)
        assert calls.windows == len(table) and "ignoring baseline cache" in caplog.text
        pd.testing.assert_frame_equal(baseline_part(table), baseline_part(reference))
        caplog.clear()


def _other_length(path: Path) -> bytes:
    """The same file with one window fewer in every column."""
    with np.load(path) as kept:
        arrays = {k: (kept[k] if k == baseline_cache.IDENTITY else kept[k][:-1]) for k in kept}
    out = path.with_suffix(".tmp.npz")
    np.savez(out, **arrays)
    return out.read_bytes()


def test_the_key_changes_with_the_windows_and_the_settings(tiny_dataset: str) -> None:
    data = get_split(load_dataset(tiny_dataset), "test")
    base = baseline_cache.baseline_identity(data, task="phase", windowlen=3001, window_seed=0)
    others = [
        baseline_cache.baseline_identity(data, task="phase", windowlen=3000, window_seed=0),
        baseline_cache.baseline_identity(data, task="phase", windowlen=3001, window_seed=1),
        baseline_cache.baseline_identity(
            get_split(load_dataset(tiny_dataset), "dev"), task="phase", windowlen=3001,
            window_seed=0,
        ),
        baseline_cache.baseline_identity(
            data, task="phase", windowlen=3001, window_seed=0,
            sta_lta=baselines.StaLtaSettings(trigger_on=4.0),
        ),
    ]  # fmt: skip
    paths = {baseline_cache.cache_path(i) for i in [base, *others]}
    assert len(paths) == 5
