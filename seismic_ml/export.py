"""A trained model as files for consumers outside this project: seisbench's format, or ONNX.

Pure: a loaded model in, files out, each checked against the model before the export counts
(seisbench: read back with the class that loads it, outputs equal; ONNX: onnxruntime against
torch on batches of 1 and 3). Recording the export on its run is tracking/exports.py's job.

- seisbench: `WaveformModel.save(PATH)` writes PATH.json (model args, default args holding the
  tuned pick thresholds) and PATH.pt (the state dict). A phasenet loads with seisbench's own
  `seisbench.models.PhaseNet.load(PATH)`; the LSTM variants are seisbench subclasses of this
  package and load with their class (seismic-ml installed); magnitude models are plain torch
  modules, refused in one line.
- onnx: raw counts (batch, 3, in_samples), ZNE at 100 Hz, in; a phase model's graph starts with
  seisbench's own input normalisation (demean, divide by the std), so both tasks take what the
  pyfunc takes. Dynamic batch axis; metadata_props say what the model expects and returns.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.model_files import model_args
from seismic_ml.version import __version__

if TYPE_CHECKING:
    from seismic_ml.config import RunConfig

FORMATS = ("seisbench", "onnx")
ONNX_TOLERANCE = 1e-4  # max abs difference onnxruntime may show against torch
SEISBENCH_TOLERANCE = 1e-6
TRACE_BATCH = 2  # the batch the graph is traced with; checked on the others
CHECK_BATCHES = (1, 3)
COUNTS_SCALE = 1e3  # raw counts of the check inputs
ONNX_INPUT = "waveforms"
ONNX_PACKAGES = "onnx, onnxruntime and onnxscript"


class TrainedModel(Protocol):
    """What an export reads of a trained model (tracking.loader.TrainedModel is one)."""

    config: RunConfig
    module: nn.Module
    run_id: str
    uri: str
    thresholds: dict[str, float]

    @property
    def task(self) -> str: ...

    @property
    def model_type(self) -> str: ...


@dataclass(frozen=True)
class Exported:
    """What an export wrote, how a consumer loads it, and what was checked."""

    format: str
    files: tuple[Path, ...]
    loader: str
    checked: str


def export_model(trained: TrainedModel, fmt: str, out: Path) -> Exported:
    """Write trained's model in fmt (seisbench or onnx) at out, checked against the model."""
    if fmt == "seisbench":
        return export_seisbench(trained, out)
    if fmt == "onnx":
        return export_onnx(trained, out)
    raise SeismicMLError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")


def model_card(trained: TrainedModel) -> dict[str, Any]:
    """What a consumer must know: task, model type, rate, components, input length, labels."""
    args = model_args(trained.module, trained.config, trained.thresholds)
    card = {k: args[k] for k in ("task", "model_type", "sampling_rate", "component_order")}
    card.update({"in_samples": args["in_samples"], "labels": output_labels(trained)})
    card.update({"source_run_id": trained.run_id, "model_uri": trained.uri or ""})
    card.update({"thresholds": trained.thresholds, "seismic_ml_version": __version__})
    return card


def output_labels(trained: TrainedModel) -> list[str]:
    """Names of the output channels: the phase labels, or magnitude (and log_sigma)."""
    if trained.task == "phase":
        return list(trained.module.labels)
    sigma = getattr(trained.module, "predicts_uncertainty", False)
    return ["magnitude", "log_sigma"] if sigma else ["magnitude"]


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- seisbench


def export_seisbench(trained: TrainedModel, out: Path) -> Exported:
    """seisbench's json + pt at out (a base path), read back by the class that loads it."""
    import seisbench.models as sbm

    if not isinstance(trained.module, sbm.WaveformModel):
        raise SeismicMLError(no_seisbench_class(trained))
    base = seisbench_base(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(trained.module).eval()
    model.default_args.update({f"{p}_threshold": t for p, t in trained.thresholds.items()})
    model.save(str(base), weights_docstring=seisbench_docstring(trained, model))
    loaded, cls = read_back_seisbench(model, base)
    diff = max_difference(model, loaded, normalised_input(model))
    if diff > SEISBENCH_TOLERANCE:
        raise SeismicMLError(f"{base} read back differs from the model by {diff:.3g}: not usable")
    files = (base.with_name(base.name + ".json"), base.with_name(base.name + ".pt"))
    checked = f"read back with equal outputs, max difference {diff:.1g}"
    return Exported("seisbench", files, loader_line(cls, base), checked)


def seisbench_base(out: Path) -> Path:
    """The base path seisbench appends .json and .pt to (a given .json or .pt suffix dropped)."""
    return out.with_suffix("") if out.suffix in (".json", ".pt") else out


def no_seisbench_class(trained: TrainedModel) -> str:
    """Why a model has no seisbench form, and what a seisbench user could use instead."""
    cls = type(trained.module)
    return (
        f"{trained.model_type} cannot be exported in seisbench's format: seisbench has no "
        f"{trained.task} model of this kind, and its class {cls.__module__}.{cls.__qualname__} "
        "(from seismic-ml) is a plain torch module, not a seisbench WaveformModel; use "
        f"--format onnx, or seismic_ml.load_model({trained.uri or trained.run_id!r})"
    )


def seisbench_docstring(trained: TrainedModel, model: nn.Module) -> str:
    """The weights docstring: where the model comes from and which class reads it."""
    cls = type(model)
    return (
        f"seismic-ml {__version__} {trained.model_type} from MLflow run {trained.run_id} "
        f"({trained.uri or 'no URI'}); class {cls.__module__}.{cls.__qualname__}"
    )


def seisbench_classes(model: nn.Module) -> list[type]:
    """The classes that may load the files, seisbench's own first, then the model's class."""
    own = [c for c in type(model).__mro__ if c.__module__.startswith("seisbench.models.")]
    return [*own[:1], type(model)] if own and own[0] is not type(model) else [type(model)]


def read_back_seisbench(model: nn.Module, base: Path) -> tuple[nn.Module, type]:
    """The exported files loaded by the first class that reads them with the same weights."""
    problems = []
    for cls in seisbench_classes(model):
        try:
            with _quiet():
                loaded = cls.load(str(base)).eval()
        except (TypeError, RuntimeError, ValueError, KeyError, OSError) as exc:
            problems.append(f"{cls.__name__}: {first_line(exc)}")
            continue
        return loaded, cls
    raise SeismicMLError(f"{base}.json cannot be read back: {'; '.join(problems)}")


def loader_line(cls: type, base: Path) -> str:
    """How a user loads the files, in one line."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__.startswith("seisbench."):
        name = f"seisbench.models.{cls.__qualname__}"
        return f"{name}.load({str(base)!r}).eval()"
    return (
        f"{name}.load({str(base)!r}).eval() (seisbench has no such class; this seisbench "
        "WaveformModel subclass needs seismic-ml installed)"
    )


def normalised_input(model: nn.Module, batch: int = TRACE_BATCH) -> torch.Tensor:
    """A reproducible normalised (batch, 3, in_samples) input."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch, 3, int(model.in_samples)), generator=generator)


@torch.no_grad()
def max_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference of two modules' outputs on x."""
    return float((a(x) - b(x)).abs().max())


# ---------------------------------------------------------------- ONNX


class RawCountsGraph(nn.Module):
    """A phase model with seisbench's input normalisation in front: raw counts in, as served."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, N) raw counts -> the network's output on the normalised window."""
        return self.module(self.module.annotate_batch_pre(x, {}))


def onnx_graph(trained: TrainedModel) -> nn.Module:
    """The module to export: raw counts in for both tasks (magnitude models normalise inside)."""
    if trained.task == "phase":
        return RawCountsGraph(trained.module).eval()
    return trained.module.eval()


def export_onnx(trained: TrainedModel, out: Path) -> Exported:
    """An ONNX file with a dynamic batch axis, checked with onnxruntime, metadata attached."""
    onnx = _onnx_module()
    graph = onnx_graph(trained)
    x = counts_input(trained, TRACE_BATCH)
    proto = trace_onnx(trained, graph, x)
    card = model_card(trained)
    set_metadata(proto, onnx_metadata(card, trained))
    proto.doc_string = describe_io(trained)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    try:
        diff = check_onnx(out, graph, trained)
    except SeismicMLError:
        out.unlink(missing_ok=True)
        raise
    checked = f"onnxruntime matches torch within {diff:.1g} on batches of 1 and 3"
    return Exported("onnx", (out,), onnx_loader_line(out), checked)


def _onnx_module() -> Any:
    """The onnx package, or one line saying what to install."""
    try:
        import onnx
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise SeismicMLError(
            f"ONNX export needs {ONNX_PACKAGES} ({first_line(exc)}): "
            "pip install onnx onnxruntime onnxscript"
        ) from None
    return onnx


def counts_input(trained: TrainedModel, batch: int) -> torch.Tensor:
    """A reproducible raw-counts (batch, 3, in_samples) input."""
    return normalised_input(trained.module, batch) * COUNTS_SCALE


def trace_onnx(trained: TrainedModel, graph: nn.Module, x: torch.Tensor) -> Any:
    """The ONNX ModelProto of graph, batch axis dynamic (torch.export-based exporter)."""
    batch = torch.export.Dim("batch")
    try:
        with _quiet():
            program = torch.onnx.export(
                graph,
                (x,),
                dynamo=True,
                input_names=[ONNX_INPUT],
                output_names=[output_name(trained)],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
    except Exception as exc:  # torch.export and the ONNX translation raise many classes
        raise SeismicMLError(
            f"{trained.model_type} cannot be exported to ONNX: {first_line(exc)}"
        ) from None
    return program.model_proto


def output_name(trained: TrainedModel) -> str:
    """The ONNX output's name: probabilities (phase) or magnitude."""
    return "probabilities" if trained.task == "phase" else "magnitude"


def describe_io(trained: TrainedModel) -> str:
    """The graph's input and output in words."""
    n = int(trained.module.in_samples)
    labels = ", ".join(output_labels(trained))
    if trained.task == "phase":
        out = f"probabilities (batch, {len(output_labels(trained))}, {n}) of {labels}"
        scale = "std" if getattr(trained.module, "norm", "std") == "std" else "peak amplitude"
        pre = f"; the graph demeans each component and divides it by its {scale}, as seisbench does"
    else:
        sigma = len(output_labels(trained)) == 2
        out = f"magnitude (batch, 2): {labels}" if sigma else "magnitude (batch,)"
        pre = "; the graph normalises the amplitude itself and keeps its log10 as a feature"
    return f"input {ONNX_INPUT}: raw counts (batch, 3, {n}), ZNE, 100 Hz{pre}. output {out}"


def onnx_metadata(card: dict[str, Any], trained: TrainedModel) -> dict[str, str]:
    """metadata_props: every card entry as a string (lists and dicts as JSON)."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in card.items()}
    meta.update({"input": ONNX_INPUT, "output": output_name(trained), "layout": "batch,3,samples"})
    meta["description"] = describe_io(trained)
    return meta


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replace the ModelProto's metadata_props with metadata."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def check_onnx(path: Path, graph: nn.Module, trained: TrainedModel) -> float:
    """Max abs difference of onnxruntime against torch on batches of 1 and 3; too large raises."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    differences = []
    for batch in CHECK_BATCHES:
        x = counts_input(trained, batch)
        with torch.no_grad():
            expected = graph(x).numpy()
        got = session.run(None, {ONNX_INPUT: x.numpy()})[0]
        if got.shape != expected.shape:
            raise SeismicMLError(
                f"ONNX export of {trained.model_type} gives shape {got.shape} for a batch of "
                f"{batch}, torch {expected.shape}: not written"
            )
        differences.append(np.abs(got - expected).max())
    worst = float(np.max(differences))  # NaN stays NaN, and fails the check
    if not worst <= ONNX_TOLERANCE:
        raise SeismicMLError(
            f"ONNX export of {trained.model_type} differs from torch by {worst:.3g} "
            f"(more than {ONNX_TOLERANCE:g}) in onnxruntime: not written"
        )
    return worst


def onnx_loader_line(out: Path) -> str:
    """How a user runs the file, in one line."""
    return (
        f"onnxruntime.InferenceSession({str(out)!r}).run(None, "
        f"{{{ONNX_INPUT!r}: counts}}) with counts float32 (batch, 3, in_samples)"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines, warnings and log messages."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
