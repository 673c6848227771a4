"""Registered models are portable: one format, their own code, pinned requirements, metadata.

A tiny model of each task is trained and registered on a real tracking server. A clean
interpreter in which `import seismic_ml` is impossible except from the model's own `code/`
folder (a blocking import hook) loads each with `mlflow.pyfunc.load_model("models:/NAME@ALIAS")`
and predicts; its answers must equal the in-process ones, and every distribution it imported
must be pinned in the model's requirements.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from seismic_ml import load_model
from seismic_ml.serving.windows import frame_from_windows
from seismic_ml.tracking import model_io
from seismic_ml.tracking.loader import resolve
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.outside import BLOCK_SEISMIC_ML

pytestmark = pytest.mark.integration

# Run in a fresh interpreter (python -I: no cwd or PYTHONPATH on sys.path). argv[1] holds the
# model URIs and the input; the answers, the imported modules and their files go to argv[2].
OUTSIDE = (
    BLOCK_SEISMIC_ML
    + r"""
import mlflow.pyfunc
import numpy as np
import pandas as pd

job = json.load(open(sys.argv[1]))
frame = pd.read_csv(job["input"])
answers = {}
for task, uri in job["uris"].items():
    model = mlflow.pyfunc.load_model(uri)
    params = {"threshold": 0.0} if task == "phase" else None
    answers[task] = model.predict(frame, params=params).to_dict(orient="list")
files = {
    name: getattr(module, "__file__", None)
    for name, module in list(sys.modules.items())
    if name not in before
}
out = {"blocked": blocked, "answers": answers, "files": files,
       "seismic_ml": sys.modules["seismic_ml"].__file__}
json.dump(out, open(sys.argv[2], "w"))
"""
)


@pytest.fixture(scope="module")
def registered(mlflow_server: str) -> Iterator[dict]:
    """A phase and a gaussian_nll magnitude model registered as NAME@champion on the server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        models = {}
        for task, model_type in (("phase", "phasenet"), ("magnitude", "amag_v2")):
            name = f"portable-{task}-{uuid.uuid4().hex[:8]}"
            cfg = tiny_run_config(model_type, epochs=1)
            if task == "magnitude":
                cfg.model.loss = "gaussian_nll"
            options = MlflowRecorder("portable", register_as=name, alias="champion")
            result = train(cfg, options)
            models[task] = {"uri": f"models:/{name}@champion", "name": name,
                            "run_id": result.run_id, "logged": result.model_uri}  # fmt: skip
        yield models


def _windows(n: int = 2) -> np.ndarray:
    """n raw ZNE windows of 3001 samples, noise at count level."""
    return np.random.default_rng(11).normal(scale=3e4, size=(n, 3, 3001)).astype(np.float32)


@pytest.fixture(scope="module")
def outside(registered: dict, mlflow_server: str, tmp_path_factory) -> dict:
    """What the clean interpreter answered and imported, loading both registered models."""
    folder = tmp_path_factory.mktemp("outside")
    frame_from_windows(_windows()).to_csv(folder / "input.csv", index=False)
    job = {"uris": {t: m["uri"] for t, m in registered.items()}, "input": "input.csv"}
    (folder / "job.json").write_text(json.dumps(job))
    (folder / "outside.py").write_text(OUTSIDE)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "MLFLOW_TRACKING_URI": mlflow_server}
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run(
        [sys.executable, "-I", str(folder / "outside.py"), str(folder / "job.json"),
         str(folder / "out.json")],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]
    return json.loads((folder / "out.json").read_text())


def test_registered_models_load_and_predict_where_seismic_ml_cannot_be_imported(
    tracking_uri, registered, outside
):
    assert outside["blocked"].startswith("blocked: seismic_ml"), outside["blocked"]
    assert re.search(r"[/\\]code[/\\]seismic_ml[/\\]__init__\.py$", outside["seismic_ml"])
    x = _windows()
    for task, model in registered.items():
        got = pd.DataFrame(outside["answers"][task])
        threshold = {"threshold": 0.0} if task == "phase" else {}
        expected = load_model(model["uri"]).predict_windows(x, **threshold)
        in_process = mlflow.pyfunc.load_model(model["uri"]).predict(
            frame_from_windows(x), params=threshold or None
        )
        assert len(expected) > 0, task
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-6)
        pd.testing.assert_frame_equal(in_process, expected, atol=1e-6)


def _imported_distributions(files: dict[str, str | None]) -> tuple[set[str], set[str]]:
    """(distributions whose files the modules came from, site-packages modules of none),
    leaving out the standard library and the model's own code."""
    owners = _distribution_files()
    imported, unowned = set(), set()
    for name, file in files.items():
        if not file or name.partition(".")[0] in sys.stdlib_module_names:
            continue
        if re.search(r"[/\\]code[/\\]seismic_ml[/\\]", file):
            continue  # the model's own code
        owner = owners.get(str(Path(file).resolve()))
        if owner is not None:
            imported.add(owner)
        elif "site-packages" in file:
            unowned.add(f"{name} ({file})")
    return imported, unowned


def _distribution_files() -> dict[str, str]:
    """Every installed file (resolved path) -> the normalised name of its distribution."""
    from importlib.metadata import distributions

    owners = {}
    for dist in distributions():
        name = _normalised(dist.metadata["Name"])
        for file in dist.files or ():
            owners[str(Path(dist.locate_file(file)).resolve())] = name
    return owners


def _normalised(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_serving_path_imports_nothing_its_requirements_do_not_pin(
    tracking_uri, registered, outside
):
    imported, unowned = _imported_distributions(outside["files"])
    assert not unowned, sorted(unowned)
    for model in registered.values():
        path = mlflow.pyfunc.get_model_dependencies(model["uri"])
        lines = [x.strip() for x in Path(path).read_text().splitlines() if x.strip()]
        assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^\s]*", x) for x in lines), lines
        pinned = {_normalised(x.split("==")[0]) for x in lines}
        assert imported - pinned == set(), f"imported, not in requirements.txt: {imported - pinned}"
        assert {"torch", "seisbench", "safetensors", "psutil", "mlflow"} <= pinned
        assert not {"optuna", "scikit-learn", "seismic-ml"} & (pinned | imported)


def test_metadata_and_version_tags_say_what_the_model_expects(tracking_uri, registered):
    client = MlflowClient()
    for task, model in registered.items():
        metadata = mlflow.models.get_model_info(model["uri"]).metadata
        run = client.get_run(model["run_id"])
        digest = next(
            d.dataset.digest
            for d in run.inputs.dataset_inputs
            if {t.value for t in d.tags} >= {"training"}
        )
        expected = {
            "task": task,
            "model_type": "phasenet" if task == "phase" else "amag_v2",
            "sampling_rate": 100.0,
            "component_order": "ZNE",
            "in_samples": 3001,
            "labels": ["N", "P", "S"] if task == "phase" else ["magnitude", "log_sigma"],
            "training_run_id": model["run_id"],
            "dataset": "synthetic:200",
            "dataset_digest": digest,
        }
        assert {k: metadata.get(k) for k in expected} == expected
        assert ("thresholds" in metadata) == (task == "phase")
        version = client.get_model_version_by_alias(model["name"], "champion")
        tags = version.tags
        for key, value in metadata.items():
            assert tags[key] == (value if isinstance(value, str) else json.dumps(value)), key


def test_the_model_is_stored_once_with_its_code_and_no_pickle(tracking_uri, registered, tmp_path):
    client = MlflowClient()
    for model in registered.values():
        run_files = _run_files(client, model["run_id"])
        assert not [f for f in run_files if f.endswith(("safetensors", "model_args.json"))]
        assert not [f for f in run_files if f.startswith("weights/")], run_files
        folder = Path(mlflow.artifacts.download_artifacts(model["uri"], dst_path=str(tmp_path)))
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {"artifacts/model.safetensors", "artifacts/model_args.json"} <= files
        assert {"code/seismic_ml/__init__.py", "code/seismic_ml/serving/pyfunc.py"} <= files
        assert not [f for f in files if f.endswith((".pkl", ".pt", ".pth", ".pickle", ".pyc"))]
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        assert mlmodel["flavors"]["python_function"]["code"] == "code"
        assert version_source(client, model) == model["logged"]


def version_source(client: MlflowClient, model: dict) -> str:
    """The logged model a registry version was made from."""
    return client.get_model_version_by_alias(model["name"], "champion").source


def _run_files(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    """Every artifact file of a run (its own folder, not its logged models)."""
    found = []
    for info in client.list_artifacts(run_id, path or None):
        found += _run_files(client, run_id, info.path) if info.is_dir else [info.path]
    return found


def test_a_model_version_is_loaded_from_the_logged_model_it_was_made_from(tracking_uri, registered):
    for model in registered.values():
        source = resolve(model["uri"])
        assert f"models:/{source.model_id}" == model["logged"]
        assert (source.run_id, source.name) == (model["run_id"], model["name"])
        logged = model_io.logged_model(MlflowClient().get_run(model["run_id"]))
        assert f"models:/{logged.model_id}" == model["logged"]  # the run's newest, too
