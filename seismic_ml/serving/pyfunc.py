"""The pyfunc model: rebuilds the network from its artifacts (JSON + safetensors) and predicts.

The logged model carries this package as its code (`code_paths`), so MLflow imports this module
from the model's own `code/` folder wherever it is loaded: the package need not be installed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from seismic_ml.errors import SeismicMLError
from seismic_ml.serving.limits import check_size, max_windows
from seismic_ml.serving.refusal import RequestRefused
from seismic_ml.serving.windows import pick_thresholds, predict_windows, windows_from_frame


class SeismicModel(PythonModel):
    """Raw ZNE windows at 100 Hz in; picks (phase models) or magnitudes out.

    A picker picks at the request's `threshold` for every phase; without one, at the thresholds
    tuned in training (model_args.json `thresholds`, also in the MLmodel metadata), else 0.3.
    """

    def load_context(self, context: PythonModelContext) -> None:
        """Build the network from model_args.json + safetensors; read the request limit."""
        from seismic_ml.model_files import load_model_files

        self.max_windows = max_windows()
        artifacts = context.artifacts
        saved = load_model_files(Path(artifacts["model_args"]), Path(artifacts["weights"]))
        self.task, self.module, self.thresholds = saved.task, saved.module, saved.thresholds
        self.in_samples = int(self.module.in_samples)

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, float] | None = None,
    ) -> pd.DataFrame:
        """Refuse an oversized or malformed table (reason first), else picks or magnitudes."""
        check_size(len(model_input), self.in_samples, self.max_windows)
        threshold = pick_thresholds((params or {}).get("threshold"), self.thresholds)
        try:
            x, ids = windows_from_frame(model_input, self.in_samples)
        except SeismicMLError as exc:
            raise RequestRefused(str(exc)) from None
        return predict_windows(self.module, self.task, x, ids, threshold)
