"""`mlflow models serve` and `mlflow models predict` on a registered model.

The served model runs with SEISMIC_ML_SERVE_MAX_WINDOWS=4, so that a request over the limit is
small enough to send here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from seismic_ml import load_model
from seismic_ml.serving.windows import frame_from_windows
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.integration.conftest import MLFLOW
from tests.processes import free_port, stop_group, wait_answering

pytestmark = pytest.mark.integration

MAX_WINDOWS = 4


@pytest.fixture(scope="module")
def registered(mlflow_server: str) -> Iterator[str]:
    """models:/NAME@champion of a small gaussian_nll magnitude model on the test server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        name = f"served-{uuid.uuid4().hex[:8]}"
        cfg = tiny_run_config("amag_v2", epochs=1)
        cfg.model.loss = "gaussian_nll"
        train(cfg, MlflowRecorder("serving", register_as=name, alias="champion"))
        yield f"models:/{name}@champion"


@pytest.fixture(scope="module")
def served(registered: str, mlflow_server: str, tmp_path_factory) -> Iterator[dict]:
    """A real `mlflow models serve` subprocess on a free port; its output shown on failure."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, MLFLOW_TRACKING_URI=mlflow_server)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["SEISMIC_ML_SERVE_MAX_WINDOWS"] = str(MAX_WINDOWS)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [MLFLOW, "models", "serve", "-m", registered, "--env-manager", "local",
             "-p", str(port), "--host", "127.0.0.1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, proc, log, timeout=120, path="/ping")
        yield {"url": url, "log": log, "uri": registered}
    finally:
        stop_group(proc)


def _post_raw(url: str, data: bytes, content_type: str) -> tuple[int, str]:
    """POST a body to /invocations; (HTTP status, the answer's text)."""
    request = urllib.request.Request(f"{url}/invocations", data, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _post(url: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body to /invocations; (HTTP status, decoded answer)."""
    status, text = _post_raw(url, json.dumps(body).encode(), "application/json")
    return status, json.loads(text)


def _windows(n: int = 2) -> np.ndarray:
    """n raw ZNE windows of 3001 samples, noise at count level."""
    return np.random.default_rng(7).normal(scale=3e4, size=(n, 3, 3001)).astype(np.float32)


def _split(frame: pd.DataFrame) -> dict:
    """The request body for a table, in MLflow's dataframe_split format."""
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def test_served_model_answers_two_windows_as_in_process(tracking_uri, served):
    x = _windows()
    status, answer = _post(served["url"], _split(frame_from_windows(x)))
    assert status == 200, served["log"].read_text()[-3000:]
    got = pd.DataFrame(answer["predictions"])
    expected = load_model(served["uri"]).predict_windows(x)
    assert list(got.columns) == ["window", "magnitude", "sigma"]
    assert got["window"].tolist() == [0, 1]
    np.testing.assert_allclose(got[["magnitude", "sigma"]], expected[["magnitude", "sigma"]],
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def _bad_request(fault: str, kind: str) -> tuple[pd.DataFrame, str]:
    """A request table with one fault, and the words its answer's message must start with.

    A non-numeric value never reaches the model: MLflow's own parse refuses it (JSON: cast to the
    signature's types; CSV: pandas.read_csv), with its own short message.
    """
    frame = frame_from_windows(_windows(1))
    if fault == "shape":
        return frame.iloc[:100], "window 0 has 100 rows; expected "
    if fault == "missing":
        return frame.drop(columns="E"), "missing column(s) E; expected "
    if fault == "nan":
        frame.loc[7, "N"] = np.nan
        return frame, "the windows hold NaN or infinite values"
    frame = frame.iloc[:5].astype({"Z": str})
    frame["Z"] = "loud"
    if kind == "csv":
        return frame, "Failed to parse input as a Pandas DataFrame."
    return (
        frame,
        "Invalid input. Data is not compatible with model signature. Failed to convert column Z",
    )


def _encoded(frame: pd.DataFrame, kind: str) -> tuple[bytes, str]:
    """The body and content type of a table sent as JSON (dataframe_split) or CSV."""
    if kind == "csv":
        return frame.to_csv(index=False).encode(), "text/csv"
    return json.dumps(_split(frame)).encode(), "application/json"


def _assert_reason_first(status: int, text: str, start: str, log: Path) -> dict:
    """HTTP 400 whose message starts with `start`; no dump of the request table anywhere."""
    assert status == 400, f"{status} {text[:2000]}\n{log.read_text()[-3000:]}"
    answer = json.loads(text)
    assert answer["message"].startswith(start), answer["message"][:2000]
    assert "Failed to predict data" not in answer["message"], answer["message"][:2000]
    trace = answer.pop("stack_trace", "")
    assert len(json.dumps(answer)) < 500, text[:2000]
    assert "window" not in trace, trace
    return answer | ({"stack_trace": trace} if trace else {})


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("fault", ["shape", "missing", "nan", "dtype"])
def test_bad_request_is_http_400_with_the_reason_first_and_no_dump(
    tracking_uri, served, fault, kind
):
    frame, start = _bad_request(fault, kind)
    status, text = _post_raw(served["url"], *_encoded(frame, kind))
    answer = _assert_reason_first(status, text, start, served["log"])
    if fault == "dtype" and kind == "csv":
        # MLflow's CSV parse adds its traceback (a stack_trace field, not the request)
        assert "could not convert string to float: 'loud'" in answer["message"], answer
    else:
        assert len(text) < 500 and "stack_trace" not in answer, text[:2000]


def test_too_large_request_is_refused_first_and_the_next_valid_one_answered(tracking_uri, served):
    too_many = frame_from_windows(_windows(MAX_WINDOWS + 1))
    status, text = _post_raw(served["url"], *_encoded(too_many, "json"))
    assert status == 413, f"{status} {text[:2000]}\n{served['log'].read_text()[-3000:]}"
    assert len(text) < 500, text[:2000]
    answer = json.loads(text)
    assert answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert answer["message"].startswith(
        f"request too large: {len(too_many)} rows, about {MAX_WINDOWS + 1} windows of 3001 "
        f"samples; this server takes at most {MAX_WINDOWS} windows per request "
        "(SEISMIC_ML_SERVE_MAX_WINDOWS)"
    ), answer["message"]
    status, answer = _post(served["url"], _split(frame_from_windows(_windows(MAX_WINDOWS))))
    assert status == 200, f"{answer}\n{served['log'].read_text()[-3000:]}"
    assert len(answer["predictions"]) == MAX_WINDOWS


def test_registered_model_holds_no_pickle_and_its_example_is_a_valid_request(
    tracking_uri, served, tmp_path
):
    folder = Path(mlflow.artifacts.download_artifacts(served["uri"], dst_path=str(tmp_path)))
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"MLmodel", "artifacts/model.safetensors", "artifacts/model_args.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth", ".pickle"))]
    example = json.loads((folder / "serving_input_example.json").read_text())
    status, answer = _post(served["url"], example)
    assert status == 200 and len(answer["predictions"]) == 1


def test_mlflow_models_predict_on_csv_and_json(tracking_uri, registered, tmp_path):
    x = _windows()
    frame = frame_from_windows(x)
    frame.to_csv(tmp_path / "windows.csv", index=False)
    (tmp_path / "windows.json").write_text(json.dumps(_split(frame)))
    expected = load_model(registered).predict_windows(x)
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    for kind in ("csv", "json"):
        out = tmp_path / f"out-{kind}.json"
        done = subprocess.run(
            [MLFLOW, "models", "predict", "-m", registered, "-i", str(tmp_path / f"windows.{kind}"),
             "-t", kind, "-o", str(out), "--env-manager", "local"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        got = pd.DataFrame(json.loads(out.read_text())["predictions"])
        np.testing.assert_allclose(got["magnitude"], expected["magnitude"], rtol=1e-5, atol=1e-5)


def test_phase_model_answers_picks_with_a_threshold_param(tracking_uri):
    result = train(tiny_run_config("phasenet", epochs=1), MlflowRecorder("serving"))
    model = mlflow.pyfunc.load_model(result.model_uri)
    assert "phase" in model.metadata.get_output_schema().input_names()
    x = _windows(2)
    got = model.predict(frame_from_windows(x), params={"threshold": 0.0})
    expected = load_model(result.run_id).predict_windows(x, threshold=0.0)
    assert list(got.columns) == ["window", "phase", "time_s", "probability"]
    assert len(got) > 0 and set(got["phase"]) <= {"P", "S"}
    pd.testing.assert_frame_equal(got, expected, atol=1e-5)
