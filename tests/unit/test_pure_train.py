"""train(cfg) is pure: it trains with no store at all, recorded by the recorder it is handed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seismic_ml.errors import SeismicMLError
from seismic_ml.training.recorder import MemoryRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config

REPO = Path(__file__).resolve().parents[2]
# A fresh interpreter in which `import mlflow` fails: training must not need it.
NO_MLFLOW = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoMlflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "mlflow" or name.startswith("mlflow."):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, NoMlflow())
    from seismic_ml.training.recorder import MemoryRecorder
    from seismic_ml.training.train import train
    from tests.conftest import tiny_run_config

    recorder = MemoryRecorder()
    result = train(tiny_run_config(epochs=2), recorder)
    print(json.dumps({
        "status": recorder.status,
        "steps": [s["step"] for s in recorder.metrics.steps],
        "epochs": [e["epoch"] for e in recorder.metrics.epochs],
        "results": recorder.results,
        "model": type(result.model).__name__,
        "mlflow_loaded": any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules),
    }))
    """
)


def test_train_runs_where_mlflow_cannot_be_imported(tiny_dataset: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_MLFLOW],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "FINISHED"
    assert seen["steps"] == list(range(6))  # 2 epochs x 3 steps
    assert seen["epochs"] == [1, 2]
    assert seen["results"]["epochs_completed"] == 2.0
    assert seen["model"] == "MagnitudeNet"
    assert not seen["mlflow_loaded"]


def test_memory_recorder_keeps_params_metrics_and_results(tiny_dataset: str) -> None:
    recorder = MemoryRecorder()
    result = train(tiny_run_config(epochs=1, learning_rate=0.002), recorder)
    assert recorder.params["train.learning_rate"] == "0.002"
    assert recorder.params["model.type"] == "amag_v2"
    assert [s["step"] for s in recorder.metrics.steps] == [0, 1, 2]
    assert {"lr", "train/loss"} <= set(recorder.metrics.steps[0])
    assert "val/loss" in recorder.metrics.epochs[0]
    assert recorder.results == result.metrics
    assert result.model_uri is None and result.run_id.startswith("memory-")
    assert not result.model.training  # the best epoch's model, ready to predict


class Boom:
    """A callback that fails after the first epoch."""

    def on_step(self, trainer, lr: float, loss: float) -> None:  # noqa: ANN001
        pass

    def on_epoch_end(self, trainer, metrics: dict, is_best: bool) -> None:  # noqa: ANN001
        raise SeismicMLError("boom")


def test_memory_recorder_says_failed_when_training_fails(tiny_dataset: str) -> None:
    recorder = MemoryRecorder()
    with pytest.raises(SeismicMLError, match="boom"):
        train(tiny_run_config(epochs=2), recorder, [Boom()])
    assert recorder.status == "FAILED"
    assert [e["epoch"] for e in recorder.metrics.epochs] == [1]


def test_the_readmes_training_from_python_block_runs(tiny_dataset: str) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Training from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'dataset="synthetic:2000"' in code and "epochs=2" in code
    code = code.replace('"synthetic:2000"', repr(tiny_dataset)).replace("epochs=2", "epochs=1")
    code = code.replace("lstm_hidden=32", "lstm_hidden=8, lstm_layers=1, attention_heads=2")
    code = code.replace("TrainConfig(epochs=1)", "TrainConfig(epochs=1, max_steps_per_epoch=2)")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the README's own code)
    assert scope["memory"].status == "FINISHED"
    assert scope["result"].model_uri.startswith("models:/")
    import mlflow

    run = mlflow.get_run(scope["result"].run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "from-python"
    version = mlflow.MlflowClient().get_model_version_by_alias("seismic-amag", "champion")
    assert version.run_id == run.info.run_id
