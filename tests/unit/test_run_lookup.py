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

    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow.set_tracking_uri(url)
    result = CliRunner().invoke(cli, ["eval-mag", "--run-id", "0123456789abcdef0123456789abcdef"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "no MLflow run" not in result.output
    assert "127.0.0.1" in result.output, result.output
