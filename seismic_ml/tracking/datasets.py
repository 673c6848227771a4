"""A run's data as MLflow dataset inputs, so the UI's Datasets column tells runs on different
data apart: name, source path, a digest of the split's metadata, the split and its context."""

from __future__ import annotations

import warnings

import mlflow
import pandas as pd


def log_split(metadata: pd.DataFrame, name: str, source: str, split: str, context: str) -> None:
    """Log one split of a dataset (its metadata table) as an input of the active run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow warns about int columns that may hold NaN
        dataset = mlflow.data.from_pandas(metadata, source=source, name=f"{name}:{split}")
        mlflow.log_input(dataset, context=context, tags={"split": split})
