"""Several `seismic-ml tune` workers on one study: distinct samples, one report from the storage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli.tuning import tune_report

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
    outputs = start_workers(2, args)

    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    drawn = {tuple(sorted(t.params.items())) for t in trials}
    assert len(drawn) == 4, [t.params for t in trials]
    seeds = {t.user_attrs["sampler_seed"] for t in trials}
    assert len(seeds) == 2 and 7 in seeds  # the creator's is --seed itself

    # every worker prints its own lines only: one per trial, no Optuna INFO, no MLflow links
    for out in outputs:
        assert "View run" not in out and "[I " not in out, out
        assert len(re.findall(r"^Trial \d+ finished: complete, val_loss", out, re.M)) == 2, out
    optuna_study = optuna.load_study(study_name=study, storage=storage)
    assert optuna_study.metric_names == ["val_loss"]
    assert optuna_study.user_attrs["mlflow_tracking_uri"] == tracking_uri

    # the report the last worker wrote shows every trial finished
    parent_id = optuna_study.user_attrs["mlflow_parent_run_id"]
    parent = MlflowClient().get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_trials/complete"] == 4
    assert set(trials_csv(parent_id)["state"]) == {"COMPLETE"}

    # rebuilt on demand, from the storage
    result = CliRunner().invoke(tune_report, ["--study-name", study, "--storage", storage])
    assert result.exit_code == 0, result.output
    assert f"study {study}: 4 complete" in result.output
    assert f"parent run id: {parent_id}" in result.output
    assert len(trials_csv(parent_id)) == 4


def trials_csv(parent_id: str) -> pd.DataFrame:
    path = MlflowClient().download_artifacts(parent_id, "tuning/trials.csv")
    return pd.read_csv(path)


def test_tune_report_of_an_unknown_study_is_a_usage_error(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="there", storage=storage)
    result = CliRunner().invoke(tune_report, ["--study-name", "nope", "--storage", storage])
    assert result.exit_code == 2
    assert "--study-name='nope' is not in" in result.output and "studies: there" in result.output
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(tune_report, ["--study-name", "x", "--storage", missing])
    assert result.exit_code == 2 and "there is no file" in result.output
    assert not (tmp_path / "missing.db").exists()
