"""What a user sees of #20 item 7 on a real server: a subset evaluation says so and leaves a
version's headline tags alone, --register-as prints its URI, no spurious --experiment warning
under `mlflow run`, one name per dataset."""

from __future__ import annotations

import logging
import os
import uuid

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli.main import cli
from seismic_ml.tracking.run import use_experiment
from tests.integration.test_mlflow_project import mlflow_run

pytestmark = pytest.mark.integration


TINY = [
    "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "8", "--warmup-epochs", "0",
    "--lstm-hidden", "8", "--lstm-layers", "1", "--attention-heads", "2", "--no-system-metrics",
]  # fmt: skip


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _line(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(prefix))


def _eval_run(output: str) -> mlflow.entities.Run:
    return MlflowClient().get_run(_line(output, "evaluation run: ").split()[-1])


def _input_names(run: mlflow.entities.Run) -> set[str]:
    return {d.dataset.name for d in run.inputs.dataset_inputs}


@pytest.fixture(scope="module")
def registered(mlflow_server: str, tiny_dataset: str) -> dict[str, str]:
    """A tiny amag_v2 trained through the CLI on `synthetic:200:0` (synthetic:200 spelled
    another way), registered under an alias; what train-mag printed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        name = f"subset-{uuid.uuid4().hex[:8]}"
        experiment = f"subset-{uuid.uuid4().hex[:8]}"
        given = ["--experiment", experiment, "--register-as", name, "--alias", "champion"]
        output = _cli("train-mag", "--dataset", "synthetic:200:0", *TINY, *given)
        run_id = _line(output, "run id: ").split()[-1]
        yield {"name": name, "experiment": experiment, "run_id": run_id, "output": output}
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def test_register_as_prints_the_alias_uri_it_created(tracking_uri, registered):
    line = _line(registered["output"], "registered: ")
    assert line == f"registered: models:/{registered['name']}@champion (version 1)"


def test_register_as_without_alias_prints_the_version_uri(tracking_uri, registered):
    output = _cli("train-mag", "--dataset", "synthetic:200", *TINY, "--experiment",
                  registered["experiment"], "--register-as", registered["name"])  # fmt: skip
    assert _line(output, "registered: ") == f"registered: models:/{registered['name']}/2"


def test_one_dataset_name_in_params_tags_and_inputs(tracking_uri, registered):
    run = MlflowClient().get_run(registered["run_id"])
    assert run.data.params["data.dataset"] == "synthetic:200"
    assert run.data.tags["dataset"] == "synthetic:200"
    assert _input_names(run) == {"synthetic:200:train", "synthetic:200:dev"}
    evaluated = _eval_run(_cli("eval-mag", "--run-id", registered["run_id"], "--dataset",
                               "synthetic:200:0", "--max-traces", "5"))  # fmt: skip
    assert evaluated.data.params["eval.dataset"] == "synthetic:200"
    assert evaluated.data.tags["dataset"] == "synthetic:200"
    assert _input_names(evaluated) == {"synthetic:200:test"}


def test_subset_evaluation_says_so_and_leaves_the_headline_tags_alone(tracking_uri, registered):
    uri = f"models:/{registered['name']}@champion"
    output = _cli("eval-mag", "--model-uri", uri, "--max-traces", "10")
    run = _eval_run(output)
    subset = run.data.params["eval.subset"]
    n_split = int(subset.split(" of ")[1].split()[0])
    assert subset == f"10 of {n_split} traces" and n_split > 10
    assert run.data.tags["eval.subset"] == subset
    assert f"subset: {subset} of the split scored" in output
    tags = MlflowClient().get_model_version(registered["name"], "1").tags
    assert not any(key.startswith("test/") for key in tags), tags
    assert tags["eval_subset/run_id"] == run.info.run_id
    assert tags["eval_subset/scored"] == f"{subset} of synthetic:200 [test]"

    whole = _eval_run(_cli("eval-mag", "--model-uri", uri))
    assert "eval.subset" not in whole.data.params and "eval.subset" not in whole.data.tags
    tags = MlflowClient().get_model_version(registered["name"], "1").tags
    assert float(tags["test/mae"]) == pytest.approx(whole.data.metrics["test/mae"], rel=1e-3)
    assert tags["eval/run_id"] == whole.info.run_id
    # --max-traces at least the split's size scores the whole split: no subset
    more = _eval_run(_cli("eval-mag", "--model-uri", uri, "--max-traces", str(n_split)))
    assert "eval.subset" not in more.data.params


def test_mlflow_run_warns_when_another_experiment_is_asked_for(tracking_uri, registered):
    """`mlflow run -e eval_mag` picks the experiment; --experiment (an undeclared -P) naming
    another is ignored, and said to be (no --experiment, no warning: test_mlflow_project)."""
    chosen = f"project-{uuid.uuid4().hex[:8]}"
    done = mlflow_run(tracking_uri, "eval_mag", chosen, f"run_id={registered['run_id']}",
                      "max_traces=5", f"experiment={registered['experiment']}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    warned = [line for line in done.stderr.splitlines() if "ignored" in line]
    assert warned == [f"--experiment {registered['experiment']} ignored: the run is in "
                      f"experiment {chosen}"]  # fmt: skip
    experiment = MlflowClient().get_experiment_by_name(chosen)
    (run,) = MlflowClient().search_runs([experiment.experiment_id])
    assert run.data.params["eval.subset"].startswith("5 of")


def test_naming_the_experiment_the_handed_run_is_in_is_no_warning(
    tracking_uri, registered, monkeypatch, caplog
):
    """--experiment naming the experiment `mlflow run` chose is not "ignored": no warning."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(registered["experiment"])
    handed = client.create_run(experiment.experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", handed.info.run_id)
    with caplog.at_level(logging.WARNING):
        use_experiment(registered["experiment"])
        assert not caplog.records
        use_experiment("another-experiment")
    assert [r.getMessage() for r in caplog.records] == [
        f"--experiment another-experiment ignored: the run is in experiment "
        f"{registered['experiment']}"
    ]
    client.set_terminated(handed.info.run_id)


def test_tune_register_as_prints_the_version_uri(tracking_uri, registered, monkeypatch):
    """tune --retrain-best --register-as: the line names the version the retrained run
    registered (the study itself is faked; the registry lookup is real)."""
    from seismic_ml.training.train import TrainResult
    from seismic_ml.tuning.report import TuneResult

    def fake_tune(options, recorder, **_):
        retrain = TrainResult(registered["run_id"], {}, None, "models:/m-x", [])
        return TuneResult("s", "parent", {"COMPLETE": 1}, retrain=retrain)

    monkeypatch.setattr("seismic_ml.tuning.study.tune", fake_tune)
    output = _cli("tune", "--model-type", "amag_v2", "--retrain-best", "--register-as",
                  registered["name"])  # fmt: skip
    assert output.splitlines()[-1] == f"registered: models:/{registered['name']}/1"
