"""load_model(ref): a trained model rebuilt from data (model_args.json, safetensors weights).

A reference is a run id, `runs:/ID/...`, `models:/NAME/VERSION`, `models:/NAME/latest`,
`models:/NAME@ALIAS` or MLflow 3's `models:/m-ID`. Whatever it names, the training run is
resolved, and the model files: those of the logged model a registry version (or m-ID) names,
else the run's newest logged model, else the run's `weights/` folder (runs that log no model,
and the previous format). The installed package's class for the model type is called with the
constructor arguments in `model_args.json` and filled from `model.safetensors`; the run's
params give the RunConfig and must agree with model_args.json. The pick thresholds tuned in
training come from model_args.json, checked to be numbers in (0, 1). Nothing read from the
tracking server is unpickled or executed: the logged model's bundled code is never imported.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seismic_ml import model_files
from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.tracking import model_io
from seismic_ml.tracking.store import CHOOSE_STORE
from seismic_ml.trained import TrainedModel

__all__ = ["Source", "TrainedModel", "load_model", "load_source", "resolve", "resolve_pair"]

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?$")
REFERENCE_FORMS = "a run id, runs:/ID/model, models:/NAME/VERSION or models:/NAME@ALIAS"


@dataclass
class Source:
    """The training run behind a reference, and the registry version when it named one."""

    run_id: str
    name: str | None = None
    version: int | None = None
    model_id: str | None = None  # the logged model (models:/m-ID) a registry version points at
    fetched: Run | None = field(default=None, repr=False, compare=False)  # read once

    @property
    def run(self) -> Run:
        """The training run, read from the store once (the first time it is asked for)."""
        if self.fetched is None:
            self.fetched = model_io.get_run(self.run_id)
        return self.fetched

    @property
    def config(self) -> RunConfig:
        """The config the training run logged as params (checked against their ranges)."""
        return RunConfig.from_params(self.run.data.params)


def load_model(ref: str) -> TrainedModel:
    """The trained model a reference names, rebuilt without unpickling anything."""
    return load_source(resolve(ref), ref)


def load_source(source: Source, uri: str = "", cfg: RunConfig | None = None) -> TrainedModel:
    """The trained model of a resolved source (its model files, checked against its params;
    cfg: those params already read as a config)."""
    run = source.run
    cfg = cfg or source.config
    files = _model_files(run, source.model_id)
    with _about(source.run_id, files.where):
        saved = model_files.load_model_files(files.model_args, files.weights, cfg)
    return TrainedModel(
        cfg, saved.module, source.run_id, source.name, source.version, uri, saved.thresholds
    )


@contextlib.contextmanager
def _about(run_id: str, where: str) -> Iterator[None]:
    """A model-file error inside, prefixed with the run and the place its files came from."""
    try:
        yield
    except SeismicMLError as exc:
        raise SeismicMLError(f"run {run_id} ({where}): {exc}") from exc


def _model_files(run: Any, model_id: str | None) -> model_io.ModelFiles:
    """The run's model files, or one line saying it has none (retrain)."""
    files = _find_files(run, model_id)
    if files is None:
        raise SeismicMLError(
            f"run {run.info.run_id} predates safe model artifacts (no logged model, no "
            f"{model_files.WEIGHTS_DIR}/{model_files.WEIGHTS_FILE}): retrain it, or resume it with "
            "--resume to log them"
        )
    return files


def _find_files(run: Any, model_id: str | None) -> model_io.ModelFiles | None:
    """The run's model files (None: it has none); a store that cannot say is one line."""
    try:
        return model_io.find_model_files(run, model_id)
    except MlflowException as exc:
        raise SeismicMLError(
            f"cannot find the model files of run {run.info.run_id}: {first_line(exc)}"
        ) from exc


def check_run_model(run: Run) -> None:
    """Refuse a run whose model_args.json (if it has one) contradicts its params."""
    run_id = run.info.run_id
    try:
        place = model_io.model_place(run)
    except MlflowException as exc:
        raise SeismicMLError(f"cannot find the model of run {run_id}: {first_line(exc)}") from exc
    path = place.fetch_if_there(model_files.ARGS_FILE)
    if path is None:
        return
    params = RunConfig.from_params(run.data.params)
    with _about(run_id, place.where):
        model_files.read_model_args(path, params)


def resolve(ref: str) -> Source:
    """The training run (and registry version) a run id or model URI refers to."""
    ref = ref.strip()
    if RUN_ID.match(ref):
        return Source(ref, fetched=model_io.get_run(ref))
    if ref.startswith("runs:/") and ref[6:].split("/")[0]:
        return Source(ref[6:].split("/")[0])
    match = MODELS_URI.match(ref)
    if match is None:
        raise SeismicMLError(f"cannot read model reference {ref!r}: give {REFERENCE_FORMS}")
    try:
        return _registry_source(MlflowClient(), match, ref)
    except MlflowException as exc:
        where = mlflow.get_tracking_uri()
        raise SeismicMLError(
            f"{ref} not found in {where} ({CHOOSE_STORE}): {first_line(exc)}"
        ) from exc


def resolve_pair(run_id: str | None, model_uri: str | None) -> tuple[Source, str]:
    """(source, model URI shown to the user) from --run-id, --model-uri or both (which agree)."""
    if not run_id and not model_uri:
        raise SeismicMLError("give --run-id (a training run) or --model-uri (runs:/, models:/)")
    if not model_uri:
        source = Source(run_id)
        return source, source.run.data.tags.get(model_io.MODEL_URI_TAG) or f"runs:/{run_id}"
    source = resolve(model_uri)
    if run_id and source.run_id != run_id:
        raise SeismicMLError(
            f"--model-uri {model_uri} was logged by run {source.run_id}, not by --run-id {run_id}"
        )
    return source, model_uri


def source_run_id(model_uri: str) -> str:
    """The training run that logged a model."""
    return resolve(model_uri).run_id


def _registry_source(client: MlflowClient, match: re.Match, ref: str) -> Source:
    """models:/NAME/VERSION, models:/NAME/latest, models:/NAME@ALIAS or models:/m-ID."""
    name = match["name"]
    if match["alias"]:
        version = client.get_model_version_by_alias(name, match["alias"])
    elif match["version"]:
        version = client.get_model_version(name, _version_number(client, name, match["version"]))
    else:
        run_id = client.get_logged_model(name).source_run_id
        if not run_id:
            raise SeismicMLError(f"{ref} records no training run")
        return Source(run_id, model_id=name)
    run_id = _version_run(client, version, ref)
    return Source(run_id, name, int(version.version), _version_model_id(version))


def _version_number(client: MlflowClient, name: str, version: str) -> str:
    """A version number, with `latest` read as the highest one."""
    if version != "latest":
        return version
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise SeismicMLError(f"registered model {name!r} has no versions")
    return str(max(int(v.version) for v in versions))


def _version_model_id(version: Any) -> str | None:
    """The logged model a registry version was made from (MLflow 3), if it records one."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = MODELS_URI.match(version.source or "")
    if source and not source["version"] and not source["alias"]:
        return source["name"]
    return None


def _version_run(client: MlflowClient, version: Any, ref: str) -> str:
    """A model version's run id, or its logged model's source run (MLflow 3 models:/m-...)."""
    if version.run_id:
        return version.run_id
    source = MODELS_URI.match(version.source or "")
    if source and not source["version"] and not source["alias"]:
        run_id = client.get_logged_model(source["name"]).source_run_id
        if run_id:
            return run_id
    raise SeismicMLError(f"{ref} records no training run")
