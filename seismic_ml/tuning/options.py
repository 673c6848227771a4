"""What a tuning worker is asked to do: the base config, the budget, the study and its storage."""

from __future__ import annotations

from dataclasses import dataclass

from seismic_ml.config import RunConfig

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_OUTAGE_LIMIT_S = 300.0


@dataclass
class TuneOptions:
    """What to tune (the base config and its search space), how long, and where it is stored."""

    base: RunConfig
    n_trials: int | None = 20
    max_epochs_per_trial: int = 10
    study_name: str | None = None
    storage: str = DEFAULT_STORAGE
    storage_outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S
    timeout: float | None = None
    search_space_file: str | None = None
    fixed_params: tuple[str, ...] = ()
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 5
    experiment: str | None = None
    retrain_best: bool = False
    register_as: str = ""

    @property
    def name(self) -> str:
        """The study name; by default one study per model type."""
        return self.study_name or f"tune-{self.base.model_type}"
