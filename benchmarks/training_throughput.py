"""Training throughput (windows/s) of each model type at its default size, forward and backward.

Usage: python benchmarks/training_throughput.py [--batch 32] [--steps 5] [--models amag_v2,...]
Results are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from seismic_ml.models.registry import MODELS, build_model
from seismic_ml.training.tasks import MagnitudeTask, PhaseTask


def windows_per_second(model_type: str, batch: int, steps: int) -> float:
    """Optimizer steps on random windows of the model's input length; windows per second."""
    spec = MODELS[model_type]
    model = build_model(model_type, spec.config_cls()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, model.in_samples)
    if spec.task == "phase":
        y = torch.softmax(torch.randn(batch, 3, model.in_samples), dim=1)
        task = PhaseTask(cfg=None, labels=model.labels)
    else:
        y = torch.rand(batch) * 5
        task = MagnitudeTask(cfg=None)
        task.loss = lambda out, target: torch.nn.functional.mse_loss(out, target)

    def step() -> None:
        loss = task.loss(task.forward(model, x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    """Print one line per model type."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    for model_type in args.models.split(","):
        rate = windows_per_second(model_type, args.batch, args.steps)
        print(f"{model_type:20s} {rate:8.1f} windows/s (batch {args.batch})")


if __name__ == "__main__":
    main()
