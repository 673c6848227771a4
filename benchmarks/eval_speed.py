"""4. Evaluation throughput of eval-phase / eval-mag against the bare model forward."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from common import EXPERIMENT, Section, Sizes, compare, run_config, say, timed
from torch import nn
from torch.utils.data import Dataset

TASKS = {"phase": "phasenet", "magnitude": "amag_v2"}


def trained_run(model_type: str, size: Sizes) -> str:
    """A briefly trained default-size model in the tracking server (weights logged); its run."""
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    cfg = run_config(model_type, size)
    short = dataclasses.replace(cfg.train, epochs=1, max_steps_per_epoch=2)
    options = MlflowRecorder(experiment=EXPERIMENT, log_model=False, system_metrics=False)
    return train(dataclasses.replace(cfg, train=short), options).run_id


def eval_windows(task: str, model: nn.Module, cfg: Any) -> tuple[Any, Dataset]:
    """The test split and the batched fixed windows evaluate() scores on."""
    from seismic_ml.data import pipelines
    from seismic_ml.data.quality import screen
    from seismic_ml.data.registry import get_split, load_dataset
    from seismic_ml.evaluation.scoring_magnitude import magnitude_windows
    from seismic_ml.evaluation.scoring_phase import phase_windows

    data, _ = screen(get_split(load_dataset(cfg.data.dataset), "test"), "test")
    if task == "phase":
        return data, phase_windows(model, data, cfg)
    subset = pipelines.magnitude_subset(data, cfg.data.magnitude_type)
    return data, magnitude_windows(model, subset, cfg)


def scorer(task: str, model: nn.Module, data: Any, cfg: Any, batch: int) -> Callable[[], Any]:
    """score_phase / score_magnitude on the split (no figures): evaluation's inference part."""
    from seismic_ml.evaluation.scoring_magnitude import score_magnitude
    from seismic_ml.evaluation.scoring_phase import score_phase

    if task == "phase":
        return lambda: score_phase(model, data, cfg, batch, 0.3, None)
    return lambda: score_magnitude(model, data, cfg, batch, None)


@torch.no_grad()
def bare_forward_seconds(model: nn.Module, inputs: list[torch.Tensor]) -> float:
    """Seconds of model(x) over the batches, eval mode, no_grad, after a warm-up batch."""
    model.eval()
    model(inputs[0])
    start = time.perf_counter()
    for x in inputs:
        model(x)
    return time.perf_counter() - start


def one_task(task: str, size: Sizes, repeats: int) -> list[Any]:
    """Whole evaluate_run(), its scoring part, the window generator and the bare forward."""
    from seismic_ml.evaluation.inference import batches
    from seismic_ml.tracking.evaluation_run import evaluate_run
    from seismic_ml.tracking.loader import Source, load_source

    run_id = trained_run(TASKS[task], size)
    trained = load_source(Source(run_id))
    model, cfg = trained.module, trained.config
    data, generator = eval_windows(task, model, cfg)
    inputs = [b["X"] for _, b in batches(generator, size.batch)]
    n = sum(len(x) for x in inputs)
    col: dict[str, list[float]] = {k: [] for k in ("whole", "scoring", "windows", "forward")}
    for i in range(repeats):
        say(f"evaluation: {task} repeat {i + 1}/{repeats}")
        col["whole"].append(n / timed(lambda: evaluate_run(task, run_id, batch_size=size.batch))[0])
        col["scoring"].append(n / timed(scorer(task, model, data, cfg, size.batch))[0])
        col["windows"].append(n / timed(lambda: list(batches(generator, size.batch)))[0])
        col["forward"].append(n / bare_forward_seconds(model, inputs))
    name, unit, ref = "eval-phase" if task == "phase" else "eval-mag", "windows/s", "bare forward"
    return [
        compare(f"{name} scoring (inference part)", col["scoring"], col["forward"], unit, ref, 0.9),
        compare(f"{name} whole command", col["whole"], col["forward"], unit, ref, target="(info)"),
        compare(f"{name} window generator alone", col["windows"], col["forward"], unit, ref, None),
    ]


def run(size: Sizes, repeats: int) -> Section:
    """Both evaluation commands."""
    figures = []
    for task in TASKS:
        figures += one_task(task, size, repeats)
    for figure in figures:
        figure.target = figure.target or "(info)"
    return Section(
        "evaluation",
        "4. Evaluation throughput against the bare model forward",
        figures,
        [
            f"Test split of {size.dataset}, default-size phasenet / amag_v2 trained 2 steps "
            f"(weights only matter for speed), batch {size.batch}, CPU.",
            "whole command: seismic_ml.tracking.evaluation_run.evaluate_run() as `eval-phase` / "
            "`eval-mag --run-id` call it: model download and rebuild, dataset load, an MLflow "
            "evaluation run, scoring, tables and metrics logged (no plots).",
            "scoring: score_phase / score_magnitude alone: the batched fixed windows, "
            "the forward, the classical baseline (STA/LTA or Wood-Anderson ML) and the metrics.",
            "window generator alone: cutting the evaluation's batches (no model).",
            "bare forward: model(x) in eval mode under no_grad over the same windows, "
            "pre-cut, in batches of the same size.",
        ],
    )
