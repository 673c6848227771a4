"""TrainedModel: a trained network with the config it was trained with and where it came from.

What the loader (tracking/loader.py) hands to evaluation, prediction and export, none of which
needs to know that it came from MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.serving.windows import pick_thresholds, predict_windows


@dataclass
class TrainedModel:
    """A trained network in eval mode with the config it was trained with and where it came from."""

    config: RunConfig
    module: nn.Module
    run_id: str
    name: str | None = None
    version: int | None = None
    uri: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)  # tuned per phase; {}: none

    @property
    def task(self) -> str:
        """phase or magnitude."""
        return self.config.task

    @property
    def model_type(self) -> str:
        """The registry name of the architecture."""
        return self.config.model_type

    def predict_windows(self, x: np.ndarray, threshold: float | None = None) -> pd.DataFrame:
        """Picks or magnitudes of (n, 3, in_samples) raw ZNE windows, as served: picks at the
        given threshold, else at the thresholds tuned in training, else at the default."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        chosen = pick_thresholds(threshold, self.thresholds)
        return predict_windows(self.module, self.task, x, np.arange(len(x)), chosen)
