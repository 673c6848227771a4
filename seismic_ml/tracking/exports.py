"""Record an export on the run that trained the model, so the registry knows where it went.

The exported files are uploaded under `exports/<format>/<digest>/` and a tag
`seismic_ml.export.<format>` on the run (and on the registry version, when the export named
one) holds, as JSON, where the files were written, their SHA-256 and the artifact folder.
A later export of the same format replaces the tag; its artifacts stay beside the earlier ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.export import Exported, sha256
from seismic_ml.tracking.loader import TrainedModel

TAG_PREFIX = "seismic_ml.export."
ARTIFACT_DIR = "exports"
DIGEST_CHARS = 12  # of the first file's SHA-256, naming the artifact folder


@dataclass(frozen=True)
class Recorded:
    """Where an export was recorded: the tag, its value, the artifact folder."""

    tag: str
    value: dict
    artifact_dir: str


def export_tag(fmt: str) -> str:
    """The run tag that records the latest export in fmt."""
    return f"{TAG_PREFIX}{fmt}"


def export_record(trained: TrainedModel, exported: Exported) -> dict:
    """The tag's value: format, files with their SHA-256, where they went, when, from what."""
    digests = {path.name: sha256(path) for path in exported.files}
    folder = f"{ARTIFACT_DIR}/{exported.format}/{next(iter(digests.values()))[:DIGEST_CHARS]}"
    return {
        "format": exported.format,
        "out": [str(Path(p).resolve()) for p in exported.files],
        "sha256": digests,
        "artifact_dir": folder,
        "model_uri": trained.uri or f"runs:/{trained.run_id}",
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def record_export(trained: TrainedModel, exported: Exported) -> Recorded:
    """Upload the files to the source run and tag the run (and registry version) with them."""
    value = export_record(trained, exported)
    tag, text = export_tag(exported.format), json.dumps(value, sort_keys=True)
    client = MlflowClient()
    try:
        for path in exported.files:
            client.log_artifact(trained.run_id, str(path), value["artifact_dir"])
        client.set_tag(trained.run_id, tag, text)
        if trained.name and trained.version is not None:
            client.set_model_version_tag(trained.name, str(trained.version), tag, text)
    except (MlflowException, OSError) as exc:
        raise SeismicMLError(
            f"wrote the export, but could not record it on run {trained.run_id}: "
            f"{first_line(exc)} (--no-record skips this)"
        ) from exc
    return Recorded(tag, value, value["artifact_dir"])
