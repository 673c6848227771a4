"""Typed run configuration (data, model, train) and its round trip to flat MLflow params."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from seismic_ml.data.budget import parse_budget
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models.registry import get_spec
from seismic_ml.options import ConfigBase, option, section_from_params

TASKS = ("phase", "magnitude")
PRECISIONS = ("fp32", "bf16", "auto")
# An unset --warmup-epochs is the model's default, but at most this fraction of the run.
WARMUP_RUN_FRACTION = 0.25


@dataclass
class DataConfig(ConfigBase):
    """Which waveforms to train on and how they become windows and labels."""

    dataset: str = option("synthetic", "seisbench name, a directory, or synthetic[:N]")
    magnitude_type: str = option("", "keep only traces of this magnitude type (ML, MW, ...)")
    label_sigma: int = option(30, "width in samples of the Gaussian pick labels", positive=True)
    max_traces: int = option(0, "use at most this many traces per split (0: all)")
    memory_budget: str = option(
        "50%",
        "preload a split's waveforms when they fit this much memory (50% of what is available, "
        "2GB, 512MB); larger splits stream from the HDF5 file (0: always stream)",
    )

    def validate(self) -> None:
        """Check the fields and that the memory budget reads as a size."""
        super().validate()
        parse_budget(self.memory_budget, available=0)


@dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings shared by every model; None means the model's own default."""

    epochs: int = option(20, "number of epochs", positive=True)
    learning_rate: float | None = option(None, "peak learning rate (default: per model)")
    batch_size: int | None = option(None, "windows per batch (default: per model)")
    warmup_epochs: float | None = option(
        None, "linear warmup from 10% of the learning rate (default: per model, at most epochs/4)"
    )
    optimizer: str = option("Adam", "optimizer", choices=("Adam", "AdamW", "SGD"))
    weight_decay: float = option(0.0, "weight decay")
    scheduler_patience: int = option(5, "epochs without improvement before the lr is reduced")
    scheduler_factor: float = option(0.5, "factor applied by the plateau scheduler", positive=True)
    scheduler_threshold: float = option(
        1e-4, "relative val-loss improvement that counts as progress for the plateau scheduler"
    )
    early_stopping_patience: int = option(10, "epochs without improvement before stopping")
    grad_clip: float = option(1.0, "max gradient norm (0: off)")
    seed: int = option(42, "random seed for weights, data order and augmentation")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    num_workers: int = option(
        0,
        "loader worker processes (0: batches are cut in the training process)",
    )
    precision: str = option(
        "fp32",
        "fp32, bf16 (mixed precision: bfloat16 autocast) or auto (bf16 where the CPU or GPU "
        "has native bfloat16, else fp32)",
        choices=PRECISIONS,
    )
    max_steps_per_epoch: int = option(0, "cap on optimizer steps per epoch (0: whole split)")

    def validate(self) -> None:
        """Check the fields and the schedule's ranges."""
        super().validate()
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise BadOptionValue(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise BadOptionValue(f"batch_size must be positive, got {self.batch_size}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise BadOptionValue(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.scheduler_factor < 1:
            raise BadOptionValue(f"scheduler_factor must be in (0, 1), got {self.scheduler_factor}")


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

    def validate(self) -> None:
        """Validate every section; the first problem raises."""
        self.model.validate()
        self.data.validate()
        self.train.validate()

    def to_params(self) -> dict[str, str]:
        """Flat, namespaced MLflow params: model.type, model.<opt>, data.<opt>, train.<opt>."""
        params = {"task": self.task, "model.type": self.model_type}
        for prefix, section in (("model", self.model), ("data", self.data), ("train", self.train)):
            for key, value in dataclasses.asdict(section).items():
                params[f"{prefix}.{key}"] = str(value)  # None is stored as "None"
        return params

    @classmethod
    def from_params(cls, params: dict[str, str]) -> RunConfig:
        """Rebuild the config a run logged; unknown keys are ignored, missing ones default."""
        if "model.type" not in params:
            raise SeismicMLError("the run has no 'model.type' param: not a seismic-ml training run")
        model_type = params["model.type"]
        spec = get_spec(model_type)
        return cls(
            model_type=model_type,
            model=section_from_params(spec.config_cls, params, "model"),
            data=section_from_params(DataConfig, params, "data"),
            train=section_from_params(TrainConfig, params, "train"),
        )


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
    """cfg with the model's defaults filled in, validated; a bad value is a usage error."""
    cfg = with_model_defaults(cfg)
    try:
        cfg.validate()
    except BadOptionValue:
        raise
    except SeismicMLError as exc:  # a model config's own check
        raise BadOptionValue(str(exc)) from exc
    return cfg
