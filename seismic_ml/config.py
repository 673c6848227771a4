"""Typed run configuration (data, model, train) and its round trip to flat MLflow params."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from seismic_ml.config_fields import (
    Check,
    ConfigBase,
    Range,
    option,
    param_spelling,
    section_from_params,
)
from seismic_ml.data.budget import parse_budget
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models.registry import check_model_size, get_spec

TASKS = ("phase", "magnitude")
PRECISIONS = ("fp32", "bf16", "auto")
# An unset --warmup-epochs is the model's default, but at most this fraction of the run.
WARMUP_RUN_FRACTION = 0.25
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _budget_readable(text: str) -> bool:
    """True when text reads as a memory budget (50%, 2GB, 512MB, 0)."""
    try:
        parse_budget(text, available=0)
    except BadOptionValue:
        return False
    return True


def _device_name(text: str) -> bool:
    """True for auto, cpu, mps, cuda and cuda:N (the syntax; whether it is here is apart)."""
    return DEVICE_NAME.fullmatch(text) is not None


COUNT = Range(0, 100_000_000)  # a count where 0 means none or all: traces, steps
PATIENCE = Range(0, 10_000)  # epochs
SEEDS = Range(0, 2**32 - 1)  # numpy's seed range
BUDGET = Check(_budget_readable, "a memory size: 0 to 100% of what is available, or 2GB, 512MB")
DEVICE = Check(_device_name, "auto, cpu, cuda, cuda:N or mps")


@dataclass
class DataConfig(ConfigBase):
    """Which waveforms to train on and how they become windows and labels."""

    dataset: str = option("synthetic", "seisbench name, a directory, or synthetic[:N]")
    magnitude_type: str = option("", "keep only traces of this magnitude type (ML, MW, ...)")
    label_sigma: int = option(
        30, "width in samples of the Gaussian pick labels", range=Range(1, 1000)
    )
    max_traces: int = option(0, "use at most this many traces per split (0: all)", range=COUNT)
    memory_budget: str = option(
        "50%",
        "preload a split's waveforms when they fit this much memory; larger splits stream "
        "from the HDF5 file (0: always stream)",
        check=BUDGET,
    )


@dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings shared by every model; None means the model's own default."""

    epochs: int = option(20, "number of epochs", range=Range(1, 10_000))
    learning_rate: float | None = option(
        None, "peak learning rate (default: per model)", range=Range(0, 10, low_open=True)
    )
    batch_size: int | None = option(
        None, "windows per batch (default: per model)", range=Range(1, 16_384)
    )
    warmup_epochs: float | None = option(
        None,
        "linear warmup from 10% of the learning rate (default: per model, at most epochs/4)",
        range=Range(0, 10_000),
    )
    optimizer: str = option("Adam", "optimizer", choices=("Adam", "AdamW", "SGD"))
    weight_decay: float = option(0.0, "weight decay", range=Range(0, 1))
    scheduler_patience: int = option(
        5, "epochs without improvement before the lr is reduced", range=PATIENCE
    )
    scheduler_factor: float = option(
        0.5, "factor applied by the plateau scheduler", range=Range(0, 1, True, True)
    )
    scheduler_threshold: float = option(
        1e-4,
        "relative val-loss improvement that counts as progress for the plateau scheduler",
        range=Range(0, 1, high_open=True),
    )
    early_stopping_patience: int = option(
        10, "epochs without improvement before stopping (0: never)", range=PATIENCE
    )
    grad_clip: float = option(1.0, "max gradient norm (0: off)", range=Range(0, 1_000_000))
    seed: int = option(42, "random seed for weights, data order and augmentation", range=SEEDS)
    device: str = option("auto", "where to train (auto: CUDA, then MPS, then CPU)", check=DEVICE)
    num_workers: int = option(
        0,
        "loader worker processes (0: batches are cut in the training process)",
        range=Range(0, 256),
    )
    precision: str = option(
        "fp32",
        "fp32, bf16 (mixed precision: bfloat16 autocast) or auto (bf16 where the CPU or GPU "
        "has native bfloat16, else fp32)",
        choices=PRECISIONS,
    )
    max_steps_per_epoch: int = option(
        0, "cap on optimizer steps per epoch (0: whole split)", range=COUNT
    )


@dataclass
class RunConfig:
    """Everything a run needs to rebuild its model and repeat its training."""

    model_type: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def task(self) -> str:
        """phase or magnitude, from the model registry."""
        return get_spec(self.model_type).task

    def sections(self) -> tuple[tuple[str, Any], ...]:
        """The three sections with their param prefixes, in validation order."""
        return (("model", self.model), ("data", self.data), ("train", self.train))

    def validate(self) -> None:
        """Validate every section (options named as typed: --lstm-hidden); the first raises."""
        for _, section in self.sections():
            section.validate()

    def to_params(self) -> dict[str, str]:
        """Flat, namespaced MLflow params: model.type, model.<opt>, data.<opt>, train.<opt>."""
        params = {"task": self.task, "model.type": self.model_type}
        for prefix, section in self.sections():
            for key, value in dataclasses.asdict(section).items():
                params[f"{prefix}.{key}"] = str(value)  # None is stored as "None"
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> RunConfig:
        """Rebuild the config a run logged, each value checked against its option's range
        (a store is not trusted to hold sane sizes); unknown keys are ignored, missing ones
        default. A value that does not fit is a one-line SeismicMLError naming its param."""
        if "model.type" not in params:
            raise SeismicMLError("the run has no 'model.type' param: not a seismic-ml training run")
        model_type = params["model.type"]
        spec = get_spec(model_type)
        try:
            cfg = cls(
                model_type=model_type,
                model=section_from_params(spec.config_cls, params, "model"),
                data=section_from_params(DataConfig, params, "data"),
                train=section_from_params(TrainConfig, params, "train"),
            )
            for prefix, section in cfg.sections():
                section.validate(param_spelling(prefix))
        except BadOptionValue as exc:
            raise SeismicMLError(f"the run's params are refused: {exc}") from None
        return cfg


def default_warmup(model_default: float, epochs: int) -> float:
    """The warmup of a run that sets none: the model's, shortened to a quarter of a short run."""
    return min(model_default, epochs * WARMUP_RUN_FRACTION)


def with_model_defaults(cfg: RunConfig) -> RunConfig:
    """Fill unset training options with the model's defaults; the warmup fits cfg's epochs."""
    defaults = dict(get_spec(cfg.model_type).train_defaults)
    defaults["warmup_epochs"] = default_warmup(defaults["warmup_epochs"], cfg.train.epochs)
    unset = {k: v for k, v in defaults.items() if getattr(cfg.train, k) is None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **unset))


def checked(cfg: RunConfig) -> RunConfig:
    """cfg validated, with the model's defaults filled in, on a device this machine has and
    of a buildable size: everything a user can get wrong, before any data is read or any run
    exists. Every problem is a usage error (BadOptionValue: exit 2)."""
    cfg.validate()
    cfg = with_model_defaults(cfg)
    cfg.validate()
    check_device_present(cfg.train.device)
    try:
        check_model_size(cfg.model_type, cfg.model)
    except BadOptionValue:
        raise
    except SeismicMLError as exc:  # too large to build here: the user's options say so
        raise BadOptionValue(str(exc)) from None
    return cfg


def check_device_present(name: str) -> None:
    """Refuse a --device this machine lacks (cuda without a GPU, cuda:N past the last one)."""
    if name in ("auto", "cpu"):
        return
    import torch

    if name == "mps":
        if not torch.backends.mps.is_available():
            raise BadOptionValue("--device='mps' is not available here (no Apple GPU): use auto")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.partition(":")[2] or 0)
    if index < count:
        return
    build = " (this torch is a CPU build)" if torch.version.cuda is None else ""
    has = f"no CUDA device{build}" if not count else f"only cuda:0 to cuda:{count - 1}"
    has = "only cuda:0" if count == 1 else has
    raise BadOptionValue(f"--device={name!r} is not on this machine: it has {has}; use auto")
