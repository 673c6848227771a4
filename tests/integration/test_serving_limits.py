"""The served model's request limit and its refusals, in process through MLflow's own scoring code.

`test_serving.py` proves the same through a real `mlflow models serve`; these are the fast checks
of the pieces: the env var, the order (size before any array), the message MLflow cannot prefix.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

import seismic_ml.serving.pyfunc as pyfunc_module
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model
from seismic_ml.serving.limits import DEFAULT_MAX_WINDOWS, MAX_WINDOWS_ENV, max_windows
from seismic_ml.serving.refusal import RequestRefused, RequestTooLarge
from seismic_ml.serving.windows import frame_from_windows
from seismic_ml.tracking.model_io import log_model
from tests.conftest import tiny_run_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local copy of an untrained tiny amag_v2 logged as the pyfunc model."""
    cfg = tiny_run_config("amag_v2")
    module = build_model(cfg.model_type, cfg.model).eval()
    with mlflow.start_run():
        uri = log_model(module, cfg)
    return mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path_factory.mktemp("model")))


def _invoke(model: mlflow.pyfunc.PyFuncModel, n_windows: int) -> MlflowException:
    """What MLflow's scoring server raises for a JSON request of n windows (it must raise)."""
    frame = frame_from_windows(np.ones((n_windows, 3, 3001), dtype=np.float32))
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)})
    schema = model.metadata.get_input_schema()
    with pytest.raises(MlflowException) as caught:
        scoring_server.invocations(body, "application/json", model, schema)
    return caught.value


def test_refusal_message_survives_the_scoring_servers_reassignment() -> None:
    error = RequestRefused("window 3 has 2999 rows; expected 3001")
    error.message = f"Failed to predict data '{'x' * 5000}'. \nError: {error.message}"
    body = json.loads(error.serialize_as_json())
    assert body["message"] == "window 3 has 2999 rows; expected 3001" == str(error)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert error.get_http_status_code() == 400
    too_large = RequestTooLarge("request too large: ...")
    assert too_large.get_http_status_code() == 413
    assert json.loads(too_large.serialize_as_json())["error_code"] == "REQUEST_LIMIT_EXCEEDED"


@pytest.mark.parametrize(("value", "expected"), [(None, DEFAULT_MAX_WINDOWS), ("8", 8), (" 1 ", 1)])
def test_max_windows_comes_from_the_environment(value, expected) -> None:
    assert max_windows({} if value is None else {MAX_WINDOWS_ENV: value}) == expected


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
def test_a_bad_max_windows_is_refused_naming_the_variable(value) -> None:
    with pytest.raises(SeismicMLError) as caught:
        max_windows({MAX_WINDOWS_ENV: value})
    assert str(caught.value) == (
        f"{MAX_WINDOWS_ENV} must be a whole number of windows >= 1, not {value.strip()!r}"
    )


def test_a_bad_max_windows_stops_the_model_loading(model_uri, monkeypatch) -> None:
    monkeypatch.setenv(MAX_WINDOWS_ENV, "zero")
    with pytest.raises(SeismicMLError, match=MAX_WINDOWS_ENV):
        mlflow.pyfunc.load_model(model_uri)


def test_size_is_checked_before_any_window_array_is_built(model_uri, monkeypatch) -> None:
    monkeypatch.setenv(MAX_WINDOWS_ENV, "3")
    model = mlflow.pyfunc.load_model(model_uri)

    def never(*args: object) -> None:
        raise AssertionError("windows_from_frame called on a request over the limit")

    with monkeypatch.context() as patch:
        patch.setattr(pyfunc_module, "windows_from_frame", never)
        error = _invoke(model, 4)
    assert isinstance(error, RequestTooLarge)
    assert error.message.startswith(
        f"request too large: 12004 rows, about 4 windows of 3001 samples; this server takes at "
        f"most 3 windows per request ({MAX_WINDOWS_ENV})"
    )
    assert len(model.predict(frame_from_windows(np.ones((3, 3, 3001), np.float32)))) == 3
