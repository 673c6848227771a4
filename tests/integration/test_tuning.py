"""`seismic-ml tune` against a real mlflow server: what a user sees in MLflow and in Optuna."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from seismic_ml.cli.tuning import tune
from seismic_ml.tuning.report import OPTUNA_FIGURES

pytestmark = pytest.mark.integration

TUNE_SCRIPT = "from seismic_ml.cli.tuning import tune; tune()"
TINY = [
    "--model-type", "amag_v2", "--lstm-layers", "1", "--attention-heads", "2",
    "--max-steps-per-epoch", "2", "--warmup-epochs", "0",
]  # fmt: skip


def space_file(tmp_path: Path, name: str, lr: tuple[float, float]) -> str:
    """A tiny space: lstm_hidden fixed at 8, batch 8 or 16, learning rate in lr."""
    space = {
        "lstm_hidden": {"type": "categorical", "choices": [8]},
        "batch_size": {"type": "categorical", "choices": [8, 16]},
        "learning_rate": {"type": "float", "low": lr[0], "high": lr[1], "log": True},
    }
    path = tmp_path / name
    path.write_text(json.dumps(space))
    return str(path)


def run_tune(*args: str) -> str:
    """Invoke the command in-process; its output."""
    result = CliRunner().invoke(tune, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def study_runs(experiment: str, study: str) -> tuple[Run, list[Run]]:
    """The study's one parent run and its child runs ordered by trial number."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parents = client.search_runs(
        [experiment_id],
        f"tags.`seismic_ml.role` = 'optuna_study' AND tags.`optuna.study_name` = '{study}'",
    )
    assert len(parents) == 1
    children = client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    return parents[0], sorted(children, key=lambda r: int(r.data.tags["optuna.trial_number"]))


def val_loss_steps(run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, "val/loss"))


def test_trials_nest_prune_resume_and_retrain(
    tracking_uri: str, tiny_dataset: str, tmp_path: Path
) -> None:
    experiment, study = f"tune-{uuid.uuid4().hex[:8]}", "nested"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = [*TINY, "--dataset", tiny_dataset, "--study-name", study, "--storage", storage]
    common += ["--experiment", experiment, "--max-epochs-per-trial", "2"]
    run_tune(
        *common, "--n-trials", "3", "--search-space", space_file(tmp_path, "a.json", (3e-3, 5e-3))
    )

    parent, children = study_runs(experiment, study)
    assert parent.info.status == "FINISHED"
    assert [c.data.tags["optuna.trial_number"] for c in children] == ["0", "1", "2"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["optuna.trial_state"] == "COMPLETE"
        assert child.data.tags["optuna.study_name"] == study
        assert child.data.params["model.type"] == "amag_v2"
        assert child.data.params["model.lstm_hidden"] == "8"
        assert child.data.params["train.epochs"] == "2"
        assert val_loss_steps(child.info.run_id) == [1, 2]
    assert parent.data.metrics["n_trials/complete"] == 3
    # one worker's later trials reuse its screened, preloaded splits (the data settings hold)
    assert [c.data.params["data.train_screening"] for c in children][1:] == ["reused", "reused"]
    best_value = min(c.data.metrics["best/val_loss"] for c in children)
    assert parent.data.metrics["best/value"] == pytest.approx(best_value)
    artifacts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "tuning")}
    assert {"tuning/trials.csv", "tuning/best_params.json", "tuning/analysis.png"} <= artifacts
    assert {f"tuning/{name}" for name in OPTUNA_FIGURES} <= artifacts

    # Resume: a tiny learning rate makes the new trial worse than the median at epoch 1.
    tiny_lr = space_file(tmp_path, "b.json", (1e-9, 2e-9))
    run_tune(
        *common, "--n-trials", "1", "--search-space", tiny_lr, "--pruner-startup-trials", "0",
        "--pruner-warmup-steps", "0",
    )  # fmt: skip
    # Resume again: plain SGD at the largest learning rate allowed, unclipped, diverges to an
    # infinite loss within two steps (a failed trial); then retrain the best. The optimizer and
    # clipping are fixed on the command line (a categorical the study already holds cannot change)
    huge_lr = space_file(tmp_path, "c.json", (9.0, 10.0))
    output = run_tune(
        *common, "--n-trials", "1", "--search-space", huge_lr, "--retrain-best", "--epochs", "1",
        "--optimizer", "SGD", "--grad-clip", "0",
    )  # fmt: skip
    resumed, children = study_runs(experiment, study)
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert [c.data.tags["optuna.trial_number"] for c in children] == ["0", "1", "2", "3", "4"]
    pruned, failed = children[3:]
    assert pruned.info.status == "KILLED" and pruned.data.tags["optuna.trial_state"] == "PRUNED"
    assert val_loss_steps(pruned.info.run_id) == [1]
    assert failed.info.status == "FAILED" and failed.data.tags["optuna.trial_state"] == "FAIL"
    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 + ["PRUNED", "FAIL"]
    assert "diverged" in trials[4].user_attrs["fail_reason"]
    assert resumed.data.metrics["n_trials/pruned"] == 1
    assert resumed.data.metrics["n_trials/fail"] == 1

    retrained_id = re.search(r"retrained run id: (\w+)", output).group(1)
    retrained = MlflowClient().get_run(retrained_id)
    best = min(children[:3], key=lambda c: c.data.metrics["best/val_loss"])
    assert "mlflow.parentRunId" not in retrained.data.tags
    assert retrained.info.status == "FINISHED" and retrained.data.params["train.epochs"] == "1"
    assert retrained.data.params["train.learning_rate"] == best.data.params["train.learning_rate"]
    assert resumed.data.tags["best.retrained_run_id"] == retrained_id


def test_a_two_epoch_trial_reaches_its_sampled_learning_rate(
    tracking_uri: str, tiny_dataset: str, tmp_path: Path
) -> None:
    experiment, study = f"tune-{uuid.uuid4().hex[:8]}", "warmup"
    no_warmup_given = [a for a in TINY if a not in ("--warmup-epochs", "0")]
    space = space_file(tmp_path, "s.json", (5e-3, 1e-2))
    run_tune(
        *no_warmup_given, "--dataset", tiny_dataset, "--study-name", study, "--n-trials", "1",
        "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--experiment", experiment,
        "--max-epochs-per-trial", "2", "--search-space", space,
    )  # fmt: skip
    _, (child,) = study_runs(experiment, study)
    assert child.data.params["train.epochs"] == "2"
    assert child.data.params["train.warmup_epochs"] == "0.5"  # a quarter of the trial
    sampled = float(child.data.params["train.learning_rate"])
    history = MlflowClient().get_metric_history(child.info.run_id, "lr")
    lrs = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(lrs) == 4 and lrs[0] == pytest.approx(0.1 * sampled)
    assert lrs[1:] == pytest.approx([sampled] * 3)


@pytest.mark.postgres
def test_two_workers_share_one_study_and_parent_on_postgres(
    tracking_uri: str, postgres_url: str, tiny_dataset: str, tmp_path: Path
) -> None:
    experiment, study = f"tune-{uuid.uuid4().hex[:8]}", "shared"
    args = [*TINY, "--dataset", tiny_dataset, "--study-name", study, "--storage", postgres_url]
    args += ["--experiment", experiment, "--max-epochs-per-trial", "1", "--n-trials", "2"]
    args += ["--search-space", space_file(tmp_path, "space.json", (1e-3, 5e-3))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", TUNE_SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    # the whole of both workers' output on failure (pytest shortens a list's repr)
    assert [w.returncode for w in workers] == [0, 0], "\n---- worker ----\n".join(outputs)

    numbers = [{int(n) for n in re.findall(r"Trial (\d+) finished", out)} for out in outputs]
    assert numbers[0].isdisjoint(numbers[1]) and numbers[0] | numbers[1] == {0, 1, 2, 3}
    trials = optuna.load_study(study_name=study, storage=postgres_url).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]

    parent, children = study_runs(experiment, study)
    assert parent.info.status == "FINISHED"
    assert all(f"parent run id: {parent.info.run_id}" in out for out in outputs)
    assert [c.data.tags["optuna.trial_number"] for c in children] == ["0", "1", "2", "3"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert parent.data.metrics["n_trials/total"] == 4


def test_bad_search_space_file_is_one_line_and_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"lstm_hiden": {"type": "int", "low": 8, "high": 64}}))
    storage = tmp_path / "optuna.db"
    result = CliRunner().invoke(
        tune,
        [
            "--model-type",
            "amag_v2",
            "--search-space",
            str(path),
            "--storage",
            f"sqlite:///{storage}",
        ],
    )
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown parameter 'lstm_hiden'" in lines[0]
    assert "valid: attention_heads" in lines[0]
    assert not storage.exists()
