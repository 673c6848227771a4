"""Cost of per-step tracking against a real local `mlflow server`, and of logging a model.

Compares the training loop's batched logger (MlflowLogger, log_batch) with one synchronous
`mlflow.log_metrics` call per step, and times `log_model` of a default-size amag_v2 (explicit
pip requirements, nothing inferred). Usage: python benchmarks/tracking_overhead.py [--steps 500]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow


def start_server(root: Path, port: int = 5911) -> subprocess.Popen:
    """A local tracking server, waited for on /health."""
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{root}/b.db",
         "--artifacts-destination", str(root / "a"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    mlflow.set_tracking_uri(f"http://127.0.0.1:{port}")
    return proc


def per_step_batched(steps: int) -> tuple[float, float]:
    """Seconds per step the loop spends in MlflowLogger.on_step, and per step with the sender's
    sending included (its close sends whatever is still queued)."""
    from seismic_ml.tracking.logger import MlflowLogger
    from seismic_ml.tracking.sender import MetricSender

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as spool:
        sender = MetricSender(run.info.run_id, Path(spool)).start()
        logger = MlflowLogger(sender)
        trainer = SimpleNamespace(state=SimpleNamespace(step=0, epoch=0))
        start = time.perf_counter()
        for i in range(steps):
            trainer.state.step = i + 1
            logger.on_step(trainer, 1e-3, 0.5)
        in_loop = (time.perf_counter() - start) / steps
        sender.close()
        return in_loop, (time.perf_counter() - start) / steps


def per_step_synchronous(steps: int) -> float:
    """Seconds per step with one log_metrics request per step."""
    with mlflow.start_run():
        start = time.perf_counter()
        for i in range(steps):
            mlflow.log_metrics({"lr": 1e-3, "train/loss": 0.5}, step=i)
        return (time.perf_counter() - start) / steps


def model_logging_seconds() -> float:
    """Seconds to log a default-size amag_v2 as a pyfunc model from code (safetensors weights)."""
    from seismic_ml.config import RunConfig
    from seismic_ml.models.registry import MODELS, build_model
    from seismic_ml.tracking.model_io import log_model

    cfg = RunConfig("amag_v2", MODELS["amag_v2"].config_cls())
    model = build_model("amag_v2", cfg.model)
    with mlflow.start_run():
        start = time.perf_counter()
        log_model(model, cfg)
        return time.perf_counter() - start


def main() -> None:
    """Start a server, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp))
        try:
            in_loop, batched = per_step_batched(args.steps)
            sync = per_step_synchronous(min(args.steps, 100))
            print(f"logger in the training loop: {in_loop * 1e3:.3f} ms per step")
            print(f"batched logger incl. sending: {batched * 1e3:.2f} ms per step ({args.steps})")
            print(f"log_metrics per step: {sync * 1e3:.2f} ms per step")
            print(f"log_model amag_v2 (default size): {model_logging_seconds():.2f} s")
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
