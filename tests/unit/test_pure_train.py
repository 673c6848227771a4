"""train(cfg) and evaluate(trained, settings) are pure: they train and score with no store at all,
recorded by the recorders they are handed."""

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
# The start of a script for a fresh interpreter in which `import mlflow` fails.
BLOCK_MLFLOW = textwrap.dedent(
    """
    import importlib.abc, json, sys
    from pathlib import Path

    class NoMlflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "mlflow" or name.startswith("mlflow."):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, NoMlflow())
    """
)
NO_MLFLOW = BLOCK_MLFLOW + textwrap.dedent(
    """
    from seismic_ml.evaluation.evaluate import EvalSettings, evaluate
    from seismic_ml.evaluation.recorder import MemoryEvalRecorder
    from seismic_ml.trained import TrainedModel
    from seismic_ml.training.recorder import MemoryRecorder
    from seismic_ml.training.train import train
    from tests.conftest import tiny_run_config

    recorder = MemoryRecorder()
    cfg = tiny_run_config(epochs=2)
    result = train(cfg, recorder)
    scores = MemoryEvalRecorder(folder=Path(sys.argv[1]))
    trained = TrainedModel(cfg, result.model, result.run_id)
    scored = evaluate(trained, EvalSettings(max_traces=6), scores)
    print(json.dumps({
        "eval_status": scores.status,
        "eval_params": scores.params,
        "eval_metrics": scores.metrics,
        "eval_subset": scored.subset,
        "eval_rows": len(scored.predictions),
        "status": recorder.status,
        "steps": [s["step"] for s in recorder.metrics.steps],
        "epochs": [e["epoch"] for e in recorder.metrics.epochs],
        "results": recorder.results,
        "model": type(result.model).__name__,
        "mlflow_loaded": any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules),
    }))
    """
)


def test_train_and_evaluate_run_where_mlflow_cannot_be_imported(
    tiny_dataset: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_MLFLOW, str(tmp_path / "scored")],
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
    # the trained model scored on 6 test traces of its own dataset (less any screened out),
    # its files in the folder given
    assert seen["eval_status"] == "FINISHED"
    assert seen["eval_params"]["eval.max_traces"] == "6"
    assert seen["eval_params"]["eval.dataset"] == tiny_run_config().data.dataset
    assert 0 < seen["eval_rows"] <= 6 and seen["eval_subset"].startswith("6 of ")
    assert {"test/mae", "test/rmse", "baseline/mae"} <= set(seen["eval_metrics"])
    assert (tmp_path / "scored" / "predictions.csv").is_file()
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


def test_the_readmes_evaluating_from_python_block_runs(
    tiny_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seismic_ml.tracking.training_run import MlflowRecorder

    name = "readme-eval"
    train(tiny_run_config(epochs=1), MlflowRecorder(register_as=name, alias="champion"))
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Evaluating from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "models:/seismic-amag@champion" in code and "max_traces=500" in code
    code = code.replace("seismic-amag", name).replace("max_traces=500", "max_traces=8")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the README's own code)
    assert scope["memory"].status == "FINISHED"
    assert (tmp_path / "scored" / "predictions.csv").is_file()
    assert any((tmp_path / "scored" / "plots").glob("*.png"))
    import mlflow

    run = mlflow.get_run(scope["result"].run_id)
    assert run.info.status == "FINISHED" and run.data.params["eval.max_traces"] == "8"
    assert run.data.tags["seismic_ml.evaluated_model_uri"] == f"models:/{name}@champion"
