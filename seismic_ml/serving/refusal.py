"""A request the served model refuses: HTTP 4xx whose message is the reason, first and alone.

MLflow's scoring server (`mlflow/pyfunc/scoring_server/__init__.py`, `invocations()`, checked in
mlflow 3.17.2) catches any `MlflowException` raised by `model.predict` and reassigns

    e.message = f"Failed to predict data '{data}'. \\nError: {e.message}"

before answering with `e.serialize_as_json()`: every 400 would start with a dump of the request
table. `RequestRefused.message` is a property whose setter keeps the first value it is given (the
one `MlflowException.__init__` sets), so that reassignment leaves the reason alone, and
`serialize_as_json()` (which reads `self.message`) answers with the reason only. A subclass of
`MlflowException` keeps MLflow's status mapping and JSON shape (`error_code`, `message`).
`tests/integration/test_serving.py` checks the answer through a real `mlflow models serve`, so a
change in MLflow's handling shows up there.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED


class RequestRefused(MlflowException):
    """HTTP 400 (INVALID_PARAMETER_VALUE) whose message no later reassignment can prefix."""

    def __init__(self, reason: str, error_code: int = INVALID_PARAMETER_VALUE) -> None:
        """The reason is the whole message, as a person can act on it."""
        super().__init__(reason, error_code=error_code)

    @property
    def message(self) -> str:
        """The reason given at construction."""
        return self._reason

    @message.setter
    def message(self, value: str) -> None:
        """Keep the first value (set by MlflowException.__init__); later ones are ignored."""
        if "_reason" not in vars(self):
            self._reason = str(value)


class RequestTooLarge(RequestRefused):
    """A request over the served model's size limit: HTTP 413 Content Too Large, as a proxy's."""

    def __init__(self, reason: str) -> None:
        """error_code REQUEST_LIMIT_EXCEEDED in the body: a client tells size from content."""
        super().__init__(reason, error_code=REQUEST_LIMIT_EXCEEDED)

    def get_http_status_code(self) -> int:
        """413, which a reverse proxy's body limit answers too (MLflow has no code for it)."""
        return 413
