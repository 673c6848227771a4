"""Training against a real `mlflow server`: what a user sees in the run afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli import cli
from seismic_ml.tracking.sender import HEARTBEAT_TAG
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config

pytestmark = pytest.mark.integration

TINY = [
    "--dataset", "synthetic:200", "--batch-size", "8", "--max-steps-per-epoch", "3",
    "--lstm-hidden", "8", "--lstm-layers", "1", "--attention-heads", "2",
]  # fmt: skip


def run_cli(*args: str) -> str:
    """Invoke the CLI in-process; returns the run id it printed."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = next((x for x in result.output.splitlines() if x.startswith("run id: ")), None)
    assert line is not None, result.output
    return line.removeprefix("run id: ")


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    values = MlflowClient().get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in values)


def artifacts(run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in MlflowClient().list_artifacts(run_id, path):
        found |= artifacts(run_id, item.path) if item.is_dir else {item.path}
    return found


def test_run_holds_config_curves_artifacts_and_tags(
    tracking_uri: str, tiny_dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    run_id = run_cli(
        "train-mag", "--model-type", "amag_v2", *TINY, "--epochs", "2",
        "--warmup-epochs", "1", "--learning-rate", "0.002", "--experiment", "it-contract",
    )  # fmt: skip
    run = MlflowClient().get_run(run_id)
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert params["model.type"] == "amag_v2" and params["model.lstm_hidden"] == "8"
    assert params["model.dropout"] == "0.2"
    assert params["train.learning_rate"] == "0.002" and params["train.optimizer"] == "Adam"
    assert params["data.dataset"] == "synthetic:200" and int(params["data.n_train_windows"]) > 0
    assert {k for k in params if k.startswith("train.")} >= {
        "train.epochs", "train.batch_size", "train.warmup_epochs", "train.weight_decay",
        "train.scheduler_patience", "train.scheduler_factor", "train.early_stopping_patience",
        "train.grad_clip", "train.seed", "train.device", "train.num_workers",
    }  # fmt: skip
    lr = history(run_id, "lr")
    assert [s for s, _ in lr] == list(range(6))
    assert lr[0][1] == pytest.approx(0.0002, rel=0.01)
    warmup = [v for _, v in lr[:4]]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))
    assert lr[3][1] == pytest.approx(0.002) and lr[5][1] == pytest.approx(0.002)
    assert len(history(run_id, "train/loss")) == 6
    assert [s for s, _ in history(run_id, "val/loss")] == [1, 2]
    assert [s for s, _ in history(run_id, "val/mae")] == [1, 2]
    assert len(history(run_id, "epoch_time_s")) == 2
    tags = run.data.tags
    assert tags["task"] == "magnitude" and tags["model_type"] == "amag_v2"
    assert tags["dataset"] == "synthetic:200" and tags["seismic_ml.version"]
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"]) and HEARTBEAT_TAG in tags
    assert re.fullmatch(r"amag_v2-synthetic200-\d{8}-\d{6}-[0-9a-f]{4}", run.info.run_name)
    inputs = {
        (d.dataset.name, {t.key: t.value for t in d.tags}["mlflow.data.context"])
        for d in run.inputs.dataset_inputs
    }
    assert inputs == {("synthetic:200:train", "training"), ("synthetic:200:dev", "validation")}
    assert all(d.dataset.digest for d in run.inputs.dataset_inputs)
    assert any(key.startswith("system/") for key in run.data.metrics)  # CPU and memory use
    experiment = MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # UI: runs view
    stored = artifacts(run_id)
    assert stored >= {
        "checkpoints/last.pt", "history/history.json", "history/history.csv",
        "plots/history.png", "config/run_config.json",
    }  # fmt: skip
    assert not [name for name in stored if name.startswith("weights/")]  # in the model, once
    model_id = tags["seismic_ml.model_uri"].removeprefix("models:/")
    model_files = MlflowClient().list_logged_model_artifacts(model_id, "artifacts")
    assert {f.path for f in model_files} == {
        "artifacts/model.safetensors",
        "artifacts/model_args.json",
    }


def test_forced_plateau_reduction_is_not_undone_by_warmup(
    tracking_uri: str, tiny_dataset: str
) -> None:
    run_id = run_cli(
        "train-mag", *TINY, "--epochs", "4", "--warmup-epochs", "3", "--max-steps-per-epoch",
        "2", "--scheduler-patience", "0", "--scheduler-threshold", "0.99",
        "--early-stopping-patience", "0", "--learning-rate", "0.001",
    )  # fmt: skip
    lr = [v for _, v in history(run_id, "lr")]
    assert len(lr) == 8
    assert lr[0] == pytest.approx(1e-4, rel=0.01)
    # epoch 2 ends without (a 99%) improvement: the peak halves while warmup is still running
    assert lr[4] < lr[3]
    assert max(lr[4:]) <= 0.5e-3 * (1 + 1e-6)
    assert lr[-1] < 0.5e-3


class Boom(RuntimeError):
    pass


class ExplodeAfterFirstEpoch:
    def on_step(self, trainer, lr, loss) -> None:
        pass

    def on_epoch_end(self, trainer, metrics, is_best) -> None:
        raise Boom("injected failure")


def test_exception_marks_the_run_failed(tracking_uri: str, tiny_dataset: str) -> None:
    with pytest.raises(Boom):
        train(
            tiny_run_config(epochs=3), MlflowRecorder(run_name="boom"), [ExplodeAfterFirstEpoch()]
        )
    run = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("seismic-ml").experiment_id],
        "attributes.run_name = 'boom'",
    )[0]
    assert run.info.status == "FAILED"
    assert len(history(run.info.run_id, "val/loss")) == 1


def subprocess_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # the runs go to seismic-ml, where the test looks
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_marks_the_run_killed(tracking_uri: str, tiny_dataset: str, signum: int) -> None:
    name = f"signal-{int(signum)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "seismic_ml", "train-mag", *TINY, "--epochs", "200",
         "--early-stopping-patience", "0", "--run-name", name],
        env=subprocess_env(tracking_uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline and proc.poll() is None:
        exp = experiment("seismic-ml")
        runs = (
            client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
            if exp
            else []
        )
        if runs and client.get_metric_history(runs[0].info.run_id, "val/loss"):
            run = runs[0]
            break
        time.sleep(0.5)
    if run is None:
        proc.kill()
        pytest.fail(f"no epoch logged by the training:\n{proc.communicate()[0].decode()}")
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 128 + signum, output
    assert output.count("interrupted by") == 1, output  # said once, not by every click layer
    assert "Traceback" not in output, output
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def test_registered_model_loads_by_alias_in_a_fresh_process(
    tracking_uri: str, tiny_dataset: str, tmp_path: Path
) -> None:
    result = train(
        tiny_run_config(epochs=1),
        MlflowRecorder(register_as="it-amag", alias="champion"),
    )
    x = np.random.default_rng(1).normal(scale=1e4, size=(2, 3, 3001)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = result.model(torch.from_numpy(x)).detach().numpy()
    script = (
        "import sys, numpy as np, torch, seismic_ml\n"
        "m = seismic_ml.load_model('models:/it-amag@champion')\n"
        "x = torch.from_numpy(np.load(sys.argv[1]))\n"
        "np.save(sys.argv[2], m.module(x).detach().numpy())\n"
        "print(type(m.module).__name__, m.name, m.version, m.run_id, m.module.training)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        env=subprocess_env(tracking_uri), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["MagnitudeNet", "it-amag", "1", result.run_id, "False"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-5)
    assert expected.shape == (2,)


def test_resume_continues_the_same_run(tracking_uri: str, tiny_dataset: str) -> None:
    run_id = run_cli("train-mag", *TINY, "--epochs", "1", "--warmup-epochs", "1")
    resumed = run_cli("train-mag", "--resume", run_id, "--epochs", "2")
    assert resumed == run_id
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1"
    assert run.data.tags["resumed_to_epochs"] == "2"
    assert [s for s, _ in history(run_id, "val/loss")] == [1, 2]
    assert [s for s, _ in history(run_id, "lr")] == list(range(6))
    assert [s for s, _ in history(run_id, "train/loss")] == list(range(6))


def test_resume_refuses_other_options(tracking_uri: str) -> None:
    result = CliRunner().invoke(cli, ["train-mag", "--resume", "abc", "--lstm-hidden", "4"])
    assert result.exit_code != 0
    assert "with --resume the config comes from the run; drop --lstm-hidden" in result.output
