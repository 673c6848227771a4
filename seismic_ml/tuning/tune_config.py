"""What a tuning worker is asked to do: the base config, the budget, the study and its storage.

Its numbers state their ranges like the train configs (seismic_ml.config_fields): `validate` is the
one check, naming the option as a person typed it. The tune command's options are generated from
these fields (help, default, range, heading), in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

from seismic_ml.config import RunConfig
from seismic_ml.config_fields import ConfigBase, Range, Spelling, flag, option

DEFAULT_STORAGE = "sqlite:///optuna.db"
DEFAULT_OUTAGE_LIMIT_S = 300.0
STUDY = "Study"
STORAGE = "Optuna storage (shared by workers)"
OUTCOME = "Best trial and tracking (MLflow)"
# fields whose command-line flag is not the field name spelled as a flag
FLAGS = {"storage_outage_limit_s": "--storage-outage-limit", "search_space_file": "--search-space"}
# fields the command builds from other options, not options of their own
NOT_OPTIONS = ("base", "fixed_params")


def tune_flag(name: str) -> str:
    """A TuneOptions field as the tune command spells it: storage_outage_limit_s ->
    --storage-outage-limit, n_trials -> --n-trials."""
    return FLAGS.get(name) or flag(name)


@dataclass
class TuneOptions(ConfigBase):
    """What to tune (the base config and its search space), how long, and where it is stored."""

    base: RunConfig
    n_trials: int | None = option(
        20, "trials this worker runs", range=Range(0, 1_000_000), section=STUDY
    )
    max_epochs_per_trial: int = option(
        10,
        "epochs per trial; val/loss is reported to the pruner each epoch",
        range=Range(1, 10_000),
        section=STUDY,
    )
    timeout: float | None = option(
        None,
        "stop starting trials after this many seconds (default: no limit)",
        range=Range(0, 31_536_000),
        section=STUDY,
    )
    search_space_file: str | None = option(
        None, "YAML/JSON file overriding the default search space", section=STUDY
    )
    pruner_startup_trials: int = option(
        5, "complete trials before the median pruner prunes", range=Range(0, 10_000), section=STUDY
    )
    pruner_warmup_steps: int = option(
        5, "epochs of a trial before it can be pruned", range=Range(0, 10_000), section=STUDY
    )
    study_name: str | None = option(
        None, "Optuna study name (default: tune-<model type>)", section=STORAGE
    )
    storage: str = option(
        DEFAULT_STORAGE,
        "Optuna RDB URL; a PostgreSQL URL shares the study between workers",
        section=STORAGE,
    )
    storage_outage_limit_s: float = option(
        DEFAULT_OUTAGE_LIMIT_S,
        "how long a worker waits out an unreachable Optuna storage (retrying with backoff); "
        "then it stops with one line, its trial closed by the next worker",
        range=Range(0, 86_400),
        section=STORAGE,
    )
    retrain_best: bool = option(
        False, "train the best config for the full --epochs as an ordinary run", section=OUTCOME
    )
    register_as: str = option("", "register the retrained model under this name", section=OUTCOME)
    experiment: str | None = option(
        None, "MLflow experiment (default: seismic-ml)", section=OUTCOME
    )
    fixed_params: tuple[str, ...] = option((), "config fields given on the command line")

    @property
    def name(self) -> str:
        """The study name; by default one study per model type."""
        return self.study_name or f"tune-{self.base.model_type}"

    def validate(self, spell: Spelling = tune_flag) -> None:
        """Raise BadOptionValue naming the first option outside its range (as typed)."""
        super().validate(spell)
