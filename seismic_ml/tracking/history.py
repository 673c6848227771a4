"""Training history: artifacts written at the end of a run and curves read back from MLflow."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

EPOCH_KEYS = ("train/epoch_loss", "val/loss")


def log_history_artifacts(history: list[dict[str, float]]) -> None:
    """history.json and history.csv of the per-epoch metrics, into the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "history.json").write_text(json.dumps(history, indent=2))
        pd.DataFrame(history).to_csv(folder / "history.csv", index=False)
        mlflow.log_artifacts(tmp, artifact_path="history")


def metric_history(run_id: str, key: str) -> pd.DataFrame:
    """One metric's full history as a frame of step and value, ordered by step."""
    values = MlflowClient().get_metric_history(run_id, key)
    frame = pd.DataFrame({"step": [m.step for m in values], "value": [m.value for m in values]})
    return frame.sort_values(["step"], kind="stable").reset_index(drop=True)


def plot_run_history(run_id: str, out_dir: Path) -> Path:
    """Loss and learning-rate curves of a run, drawn from its metric history, saved as PNG."""
    fig, (ax_step, ax_epoch, ax_lr) = plt.subplots(1, 3, figsize=(15, 4))
    _draw(ax_step, metric_history(run_id, "train/loss"), "train/loss")
    ax_step.set(xlabel="optimizer step", ylabel="loss", title="training loss per step")
    for key in EPOCH_KEYS:
        _draw(ax_epoch, metric_history(run_id, key), key)
    ax_epoch.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
    _draw(ax_lr, metric_history(run_id, "lr"), "lr")
    ax_lr.set(xlabel="optimizer step", ylabel="learning rate", title="learning rate", yscale="log")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "history.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw(ax: plt.Axes, frame: pd.DataFrame, label: str) -> None:
    if not frame.empty:
        ax.plot(frame["step"], frame["value"], label=label)
        ax.legend()


def log_plot(run_id: str, path: Path) -> None:
    """A figure into the run's plots/, as an artifact only: reopening the run would change its
    status (a FAILED run stays FAILED)."""
    MlflowClient().log_artifact(run_id, str(path), "plots")
