"""The pyfunc model's signature: raw ZNE windows in, picks or magnitude (and sigma) out.

The four input columns are all needed, yet declared optional (`required=False`): MLflow checks
required columns in `PyFuncModel.predict` (`_validate_prediction_input`) and reports a missing one
behind two dumps of the request table; declared optional, a table without one reaches
`windows_from_frame`, which names it first (`missing column(s) E; expected ...`). Types are
still enforced by MLflow (a non-numeric Z is its short "Failed to convert column Z" 400).

A picker's `threshold` parameter has no default value (None): MLflow hands a missing parameter
to the model as its declared default, and a number there would hide the thresholds tuned in
training, which the model uses when the request gives none.
"""

from __future__ import annotations

from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

INPUT = Schema(
    [
        ColSpec("long", "window", required=False),
        *(ColSpec("double", c, required=False) for c in "ZNE"),
    ]
)
PICKS = Schema(
    [
        ColSpec("long", "window"),
        ColSpec("string", "phase"),
        ColSpec("double", "time_s"),
        ColSpec("double", "probability"),
    ]
)


def model_signature(task: str, has_sigma: bool) -> ModelSignature:
    """Input, output and (phase models) the pick threshold parameter."""
    if task == "phase":
        params = ParamSchema([ParamSpec("threshold", "double", None)])
        return ModelSignature(INPUT, PICKS, params)
    outputs = [ColSpec("long", "window"), ColSpec("double", "magnitude")]
    if has_sigma:
        outputs.append(ColSpec("double", "sigma"))
    return ModelSignature(INPUT, Schema(outputs))
