"""3. Tracking cost per optimizer step against a real local `mlflow server`.

The training loop's logger (MlflowLogger) queues `lr` and `train/loss` each step; the background
MetricSender sends them in batches. Measured: what the training thread spends per step, and the
whole cost per step amortised up to the end of the sender's close() (all sent), beside one
synchronous `mlflow.log_metrics` call per step.
Standalone: python benchmarks/tracking_overhead.py [--steps 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
from common import EXPERIMENT, Section, Sizes, at_most, compare, say, tracking_server


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


def run(size: Sizes, repeats: int) -> Section:
    """Repeats of the batched logger and of the synchronous reference, back to back."""
    mlflow.set_experiment(EXPERIMENT)
    in_loop, amortised, sync = [], [], []
    for i in range(repeats):
        say(f"tracking cost: repeat {i + 1}/{repeats}")
        loop_s, total_s = per_step_batched(size.tracking_steps)
        in_loop.append(loop_s * 1e3)
        amortised.append(total_s * 1e3)
        sync.append(per_step_synchronous(size.sync_steps) * 1e3)
    ref = "one log_metrics per step"
    amortised_figure = compare("amortised per step, sending included", amortised, sync, "ms", ref)
    amortised_figure.target, amortised_figure.met = "< 1 ms", amortised_figure.value < 1.0
    return Section(
        "tracking",
        "3. Tracking cost per optimizer step (local mlflow server)",
        [
            at_most("on the training thread per step", in_loop, "ms", 1.0, "< 1 ms"),
            amortised_figure,
        ],
        [
            f"{size.tracking_steps} steps of `lr` + `train/loss` through MlflowLogger.on_step "
            "and the background MetricSender (spool line, batched log_batch); amortised = "
            "wall time from the first step to the end of close(), when everything is sent, "
            f"per step. Reference: {size.sync_steps} synchronous `mlflow.log_metrics` calls.",
        ],
    )


def main() -> None:
    """Start a server, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Sizes.tracking_steps)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tracking_server(Path(tmp)):
        section = run(Sizes(tracking_steps=args.steps), args.repeats)
    for figure in section.figures:
        print(f"{figure.name}: {figure.value:.3f} {figure.unit} (target {figure.target})")


if __name__ == "__main__":
    main()
