"""A run's data as MLflow dataset inputs, so the UI's Datasets column tells runs on different
data apart: name, source path, a digest of the split's metadata, the split and its context."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException

from seismic_ml.data.screen_cache import metadata_digest

SCHEMA_ROWS = 1000  # rows the logged schema is inferred from
DATASET_RACE_TRIES = 3
# Schemas inferred in this process, by metadata digest: MLflow asks for a dataset's schema more
# than once per log_input, and a tuning worker logs the same splits for every trial.
_SCHEMAS: dict[str, Any] = {}


class MetadataDataset(PandasDataset):
    """MLflow's PandasDataset with its schema inferred from the first rows and a vectorised
    digest of every row: MLflow's own check every value in Python (about 0.1 ms a row, a minute
    and a half per start on STEAD's 1.2 M traces)."""

    @property
    def schema(self) -> Any:
        """The columns' types, as MLflow infers them, from the first SCHEMA_ROWS rows (once per
        metadata digest in a process)."""
        if self.digest not in _SCHEMAS:
            _SCHEMAS[self.digest] = _inferred_schema(self._df)
        return _SCHEMAS[self.digest]


def _inferred_schema(metadata: pd.DataFrame) -> Any:
    """MLflow's schema of the first SCHEMA_ROWS rows; None when it cannot infer one."""
    try:
        return mlflow.models.infer_signature(metadata.head(SCHEMA_ROWS)).inputs
    except Exception:  # as MLflow's own: a table without a schema is still logged
        return None


def log_split(
    metadata: pd.DataFrame,
    name: str,
    source: str,
    split: str,
    context: str,
    digest: str | None = None,
) -> None:
    """Log one split of a dataset (its metadata table) as an input of the active run; digest:
    its metadata_digest when already known (a tuning worker's reused splits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow warns about int columns that may hold NaN
        dataset = MetadataDataset(
            df=metadata,
            source=resolve_dataset_source(source),
            name=f"{name}:{split}",
            digest=digest or metadata_digest(metadata),
        )
        _log_input(dataset, context, split)


def _log_input(dataset: MetadataDataset, context: str, split: str) -> None:
    """mlflow.log_input, again when another run created the same dataset at the same moment:
    the store creates a missing dataset row without a lock, and the loser's unique-key error
    fails its whole request; on the next try the dataset exists and is linked."""
    for attempt in range(DATASET_RACE_TRIES):
        try:
            mlflow.log_input(dataset, context=context, tags={"split": split})
            return
        except MlflowException as exc:
            if attempt == DATASET_RACE_TRIES - 1 or not _lost_a_race(exc):
                raise


def _lost_a_race(exc: MlflowException) -> bool:
    """A unique-key violation (SQLite's or PostgreSQL's wording) on the datasets table."""
    text = str(exc)
    return "datasets" in text and ("UNIQUE constraint" in text or "duplicate key" in text)
