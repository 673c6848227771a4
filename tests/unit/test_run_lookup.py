"""A run id the store does not hold and a store that does not answer are told apart."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from seismic_ml.cli import cli
from tests.processes import free_port


def test_an_unknown_run_id_is_named_in_one_line() -> None:
    import mlflow

    mlflow.set_experiment("lookup")  # the store exists; the run does not
    result = CliRunner().invoke(cli, ["eval-mag", "--run-id", "0123456789abcdef0123456789abcdef"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: no MLflow run '0123456789abcdef"), result.output
    assert "Traceback" not in result.output


def test_a_store_that_does_not_answer_is_not_called_a_missing_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    before = mlflow.get_tracking_uri()  # the test's store, given back at the end
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow.set_tracking_uri(url)
    try:
        result = CliRunner().invoke(cli, ["eval-mag", "--run-id", "0" * 32])
    finally:
        mlflow.set_tracking_uri(before)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "no MLflow run" not in result.output
    assert "127.0.0.1" in result.output, result.output


def _count_run_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run id MlflowClient.get_run is asked for from now on (the calls still go through)."""
    from mlflow.tracking import MlflowClient

    asked: list[str] = []
    real = MlflowClient.get_run

    def counting(self: MlflowClient, run_id: str):  # noqa: ANN202
        asked.append(run_id)
        return real(self, run_id)

    monkeypatch.setattr(MlflowClient, "get_run", counting)
    return asked


@pytest.mark.parametrize("by", ["run-id", "models-uri"])
def test_an_evaluation_reads_the_training_run_once(
    tiny_dataset: str, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    from seismic_ml.tracking.evaluation_run import evaluate_run
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train
    from tests.conftest import tiny_run_config

    name = f"lookup-{by}"
    trained = train(tiny_run_config(epochs=1), MlflowRecorder(register_as=name, alias="champion"))
    asked = _count_run_reads(monkeypatch)
    ref = (
        {"run_id": trained.run_id} if by == "run-id" else {"model_uri": f"models:/{name}@champion"}
    )
    result = evaluate_run("magnitude", max_traces=8, **ref)
    assert result.evaluated_run_id == trained.run_id
    assert asked.count(trained.run_id) == 1, asked


def test_a_resume_reads_its_run_once_before_reopening_it(
    tiny_dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train
    from tests.conftest import tiny_run_config

    first = train(tiny_run_config(epochs=1), MlflowRecorder(run_name="lookup-resume"))
    asked = _count_run_reads(monkeypatch)
    reopened: list[int] = []  # reads asked for when mlflow reopens the run (its own lookup)
    real_start = mlflow.start_run

    def start(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        reopened.append(len(asked))
        return real_start(*args, **kwargs)

    monkeypatch.setattr(mlflow, "start_run", start)
    recorder = MlflowRecorder(resume=first.run_id)
    resumed = train(recorder.resume_config("magnitude", epochs=2), recorder)
    assert resumed.run_id == first.run_id and resumed.metrics["epochs_completed"] == 2.0
    assert reopened and asked[: reopened[0]].count(first.run_id) == 1, asked
