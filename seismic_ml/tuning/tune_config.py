"""What a tuning worker is asked to do: the base config, the budget, the study and its storage.

Its numbers state their ranges like the train configs (seismic_ml.config_fields): `validate` is the
one check, naming the option as a person typed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from seismic_ml.config import RunConfig
from seismic_ml.config_fields import ConfigBase, Range, Spelling, flag, option

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_OUTAGE_LIMIT_S = 300.0
# fields whose command-line flag is not the field name spelled as a flag
FLAGS = {"storage_outage_limit_s": "--storage-outage-limit"}


def tune_flag(name: str) -> str:
    """A TuneOptions field as the tune command spells it: storage_outage_limit_s ->
    --storage-outage-limit, n_trials -> --n-trials."""
    return FLAGS.get(name) or flag(name)


@dataclass
class TuneOptions(ConfigBase):
    """What to tune (the base config and its search space), how long, and where it is stored."""

    base: RunConfig
    n_trials: int | None = option(
        20, "trials this worker runs (None: until --timeout)", range=Range(0, 1_000_000)
    )
    max_epochs_per_trial: int = option(10, "epochs per trial", range=Range(1, 10_000))
    study_name: str | None = option(None, "Optuna study name")
    storage: str = option(DEFAULT_STORAGE, "Optuna RDB URL")
    storage_outage_limit_s: float = option(
        DEFAULT_OUTAGE_LIMIT_S, "seconds a worker waits out its storage", range=Range(0, 86_400)
    )
    timeout: float | None = option(
        None, "stop starting trials after this many seconds", range=Range(0, 31_536_000)
    )
    search_space_file: str | None = option(None, "search-space file")
    fixed_params: tuple[str, ...] = option((), "config fields given on the command line")
    pruner_startup_trials: int = option(
        5, "complete trials before the pruner prunes", range=Range(0, 10_000)
    )
    pruner_warmup_steps: int = option(
        5, "epochs before a trial can be pruned", range=Range(0, 10_000)
    )
    experiment: str | None = option(None, "MLflow experiment")
    retrain_best: bool = option(False, "train the best config for the full --epochs")
    register_as: str = option("", "register the retrained model under this name")

    @property
    def name(self) -> str:
        """The study name; by default one study per model type."""
        return self.study_name or f"tune-{self.base.model_type}"

    def validate(self, spell: Spelling = tune_flag) -> None:
        """Raise BadOptionValue naming the first option outside its range (as typed)."""
        super().validate(spell)
