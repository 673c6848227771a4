"""A split's metadata logged as an MLflow dataset input at any size: digest and schema."""

import json

import mlflow
import numpy as np
import pandas as pd

from seismic_ml.data.screen_cache import metadata_digest
from seismic_ml.tracking.datasets import SCHEMA_ROWS, log_split


def metadata(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trace_name": [f"bucket0${i},:3,:6000" for i in range(n)],
            "source_magnitude": np.linspace(0.5, 4.0, n),
            "station_code": [f"S{i % 7:03d}" for i in range(n)],
        }
    )


def test_the_digest_follows_every_row_and_column() -> None:
    table = metadata(3 * SCHEMA_ROWS)
    same = metadata_digest(table)
    assert same == metadata_digest(metadata(3 * SCHEMA_ROWS)) and len(same) == 8
    changed = table.copy()
    changed.loc[len(table) - 1, "source_magnitude"] = 9.9  # past the first rows MLflow hashes
    renamed = table.rename(columns={"station_code": "station"})
    assert len({same, metadata_digest(changed), metadata_digest(renamed)}) == 3


def test_a_logged_split_holds_its_full_profile_digest_and_schema(tmp_path) -> None:
    table = metadata(2 * SCHEMA_ROWS + 5)
    mlflow.set_experiment("dataset-inputs")
    with mlflow.start_run() as run:
        log_split(table, "synthetic:2000", str(tmp_path), "train", "training")
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.name == "synthetic:2000:train"
    assert logged.dataset.digest == metadata_digest(table)
    assert '"num_rows": 2005' in logged.dataset.profile
    assert {"trace_name", "source_magnitude", "station_code"} <= set(
        c["name"] for c in json.loads(logged.dataset.schema)["mlflow_colspec"]
    )
    assert {t.key: t.value for t in logged.tags}["mlflow.data.context"] == "training"
