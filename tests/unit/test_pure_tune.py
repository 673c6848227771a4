"""tune(options, recorder) is handed what records it: with the in-memory study recorder it tunes
where MLflow cannot even be imported, Optuna's own storage the only store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.unit.test_pure_train import BLOCK_MLFLOW, REPO

NO_MLFLOW = BLOCK_MLFLOW + textwrap.dedent(
    """
    import optuna
    from seismic_ml.tuning.recorder import MemoryStudyRecorder
    from seismic_ml.tuning.study import tune
    from seismic_ml.tuning.tune_config import TuneOptions
    from tests.conftest import tiny_run_config

    folder = Path(sys.argv[1])
    options = TuneOptions(
        base=tiny_run_config(epochs=1),
        n_trials=2,
        max_epochs_per_trial=1,
        study_name="pure",
        storage=f"sqlite:///{folder / 'optuna.db'}",
        retrain_best=True,
        fixed_params=("batch_size",),
    )
    recorder = MemoryStudyRecorder(folder=folder / "report")
    result = tune(options, recorder)
    parent = recorder.records[result.parent_run_id]
    trials = optuna.load_study(study_name="pure", storage=options.storage).trials
    print(json.dumps({
        "counts": result.counts,
        "parent_status": parent.status,
        "parent_metrics": parent.metrics,
        "best_run_id": result.best_run_id,
        "child_states": sorted(recorder.records[i].tags["state"] for i in recorder.trials.values()),
        "trial_run_ids": [t.user_attrs.get("mlflow_run_id") for t in trials],
        "retrained": result.retrain.metrics["epochs_completed"],
        "retrained_model": type(result.retrain.model).__name__,
        "report": sorted(p.name for p in (folder / "report" / "tuning").iterdir()),
        "mlflow_loaded": any(m == "mlflow" or m.startswith("mlflow.") for m in sys.modules),
    }))
    """
)


def test_tune_runs_with_a_memory_recorder_where_mlflow_cannot_be_imported(
    tiny_dataset: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_MLFLOW, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["counts"] == {"COMPLETE": 2}
    assert seen["parent_status"] == "FINISHED"
    assert seen["parent_metrics"]["n_trials/complete"] == 2
    assert seen["child_states"] == ["COMPLETE"] * 2
    assert seen["best_run_id"] in seen["trial_run_ids"]  # each trial names its child record
    assert seen["retrained"] == 1.0 and seen["retrained_model"] == "MagnitudeNet"
    assert {"trials.csv", "best_params.json", "analysis.png"} <= set(seen["report"])
    assert not seen["mlflow_loaded"]


def test_the_readmes_tuning_from_python_block_runs(
    tiny_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Tuning from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'dataset="synthetic:2000"' in code and code.count("n_trials=4") == 2
    code = code.replace('"synthetic:2000"', repr(tiny_dataset)).replace("n_trials=4", "n_trials=1")
    code = code.replace("max_epochs_per_trial=3", "max_epochs_per_trial=1")
    code = code.replace(
        "config_cls()", "config_cls(lstm_hidden=8, lstm_layers=1, attention_heads=2)"
    )
    code = code.replace("TrainConfig(epochs=10)", "TrainConfig(epochs=1, max_steps_per_epoch=2)")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the README's own code)
    memory = scope["memory"]
    assert (tmp_path / "tuning-report" / "tuning" / "trials.csv").is_file()
    assert any(r.status == "FINISHED" and r.metrics for r in memory.records.values())
    import mlflow

    parent = mlflow.get_run(scope["result"].parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.study_name"] == "tracked"
