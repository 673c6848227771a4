"""Several `seismic-ml tune` workers on one study: distinct samples, one report from the storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.integration

TUNE_SCRIPT = "from seismic_ml.cli.tuning import tune; tune()"
TINY = [
    "--model-type", "amag_v2", "--lstm-layers", "1", "--attention-heads", "2",
    "--max-steps-per-epoch", "2", "--warmup-epochs", "0", "--lstm-hidden", "8",
]  # fmt: skip


def start_workers(n: int, args: list[str]) -> list[str]:
    """Start n tune workers together; their outputs once all have exited 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", TUNE_SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * n, outputs
    return outputs


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    return request.getfixturevalue("postgres_url")


def test_workers_started_together_draw_distinct_params(
    tracking_uri: str, storage: str, tiny_dataset: str, tmp_path: Path
) -> None:
    experiment, study = f"tune-{uuid.uuid4().hex[:8]}", "together"
    space = {
        "batch_size": {"type": "categorical", "choices": [8, 16]},
        "learning_rate": {"type": "float", "low": 1e-3, "high": 5e-3, "log": True},
    }
    (tmp_path / "space.json").write_text(json.dumps(space))
    args = [*TINY, "--dataset", tiny_dataset, "--study-name", study, "--storage", storage]
    args += ["--experiment", experiment, "--max-epochs-per-trial", "1", "--n-trials", "2"]
    args += ["--search-space", str(tmp_path / "space.json"), "--seed", "7"]
    start_workers(2, args)

    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    drawn = {tuple(sorted(t.params.items())) for t in trials}
    assert len(drawn) == 4, [t.params for t in trials]
    seeds = {t.user_attrs["sampler_seed"] for t in trials}
    assert len(seeds) == 2 and 7 in seeds  # the creator's is --seed itself
