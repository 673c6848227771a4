"""1. Training throughput: train() with full tracking against the tutorial-style bare loop and
the compute-only step, fp32 and bf16, and what each precision learns in the same steps."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from common import EXPERIMENT, Figure, Section, Sizes, compare, median, run_config, say
from loops import bare_loop_rate, compute_rate

MODEL_TYPES = ("phasenet", "amag_v2")
NOISE_FLOOR = 0.01  # relative val/loss difference always counted as noise
NOISE_SEEDS = 2  # other seeds whose fp32 val/loss spread says what "within noise" is


def tracked(cfg: Any) -> dict[str, float]:
    """train() into the tracking server: logged windows/s, last val/loss and steps per epoch."""
    from mlflow.tracking import MlflowClient

    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    result = train(cfg, MlflowRecorder(experiment=EXPERIMENT, log_model=False))
    client = MlflowClient()
    history = client.get_metric_history(result.run_id, "train/windows_per_s")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)]
    steps = int(client.get_run(result.run_id).data.params["train.steps_per_epoch"])
    return {
        "rate": median(rates[1:] or rates),
        "val_loss": result.history[-1]["val/loss"],
        "steps": steps,
    }


def with_seed(cfg: Any, seed: int) -> Any:
    """The same config with another seed."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))


def one_repeat(model_type: str, size: Sizes, first: bool) -> dict[str, Any]:
    """Every side of the comparison for one model type, back to back."""
    fp32, bf16 = run_config(model_type, size), run_config(model_type, size, "bf16")
    got: dict[str, Any] = {}
    run = tracked(fp32)
    got.update(tracked_fp32=run["rate"], val_fp32=run["val_loss"])
    timed_epochs, steps = max(size.epochs - 1, 1), run["steps"]
    run = tracked(bf16)
    got.update(tracked_bf16=run["rate"], val_bf16=run["val_loss"])
    got["bare"] = bare_loop_rate(fp32, steps, timed_epochs)
    got["compute_fp32"] = compute_rate(fp32, steps * timed_epochs, bf16=False)
    got["compute_bf16"] = compute_rate(bf16, steps * timed_epochs, bf16=True)
    if first:  # the seed-to-seed spread of val/loss: what "within noise" means
        others = [
            tracked(with_seed(fp32, size.seed + k))["val_loss"] for k in range(1, NOISE_SEEDS + 1)
        ]
        got["noise"] = max(abs(v - got["val_fp32"]) for v in others)
        got["val_other_seeds"] = others
    return got


def model_figures(model_type: str, runs: list[dict[str, Any]]) -> list[Figure]:
    """The throughput ratios and the val/loss comparison of one model type."""
    col = defaultdict(list)
    for run in runs:
        for key, value in run.items():
            col[key].append(value)
    unit, bare = "windows/s", "tutorial bare loop (fp32)"
    return [
        compare(f"{model_type} tracked fp32", col["tracked_fp32"], col["bare"], unit, bare, 1.3),
        compare(
            f"{model_type} tracked fp32",
            col["tracked_fp32"],
            col["compute_fp32"],
            unit,
            "compute-only step fp32",
            0.9,
        ),
        bf16_vs_bare(model_type, col["tracked_bf16"], col["bare"]),
        compare(
            f"{model_type} tracked bf16",
            col["tracked_bf16"],
            col["compute_bf16"],
            unit,
            "compute-only step bf16",
            target="(info)",
        ),
        compare(
            f"{model_type} compute-only bf16",
            col["compute_bf16"],
            col["compute_fp32"],
            unit,
            "compute-only step fp32",
            target="(info)",
        ),
        val_loss_figure(model_type, col),
    ]


def bf16_vs_bare(model_type: str, values: list[float], refs: list[float]) -> Figure:
    """bf16 against the bare loop: at least 2x, stretch 2.5x."""
    figure = compare(
        f"{model_type} tracked bf16", values, refs, "windows/s", "tutorial bare loop (fp32)", 2.0
    )
    figure.target = ">= 2x (stretch 2.5x)"
    return figure


def val_loss_figure(model_type: str, col: dict[str, list]) -> Figure:
    """val/loss after the same steps in bf16 against fp32; noise = fp32's seed-to-seed spread."""
    fp32, bf16 = median(col["val_fp32"]), median(col["val_bf16"])
    noise = max(col["noise"][0], NOISE_FLOOR * abs(fp32))
    figure = compare(
        f"{model_type} val/loss bf16", col["val_bf16"], col["val_fp32"], "loss", "val/loss fp32"
    )
    figure.target = f"|bf16 - fp32| <= noise {noise:.4f}"
    figure.met = abs(bf16 - fp32) <= noise
    others = ", ".join(f"{v:.4f}" for v in col["val_other_seeds"][0])
    figure.note = f"fp32 with seeds +1..+{NOISE_SEEDS}: {others}"
    return figure


def run(size: Sizes, repeats: int) -> Section:
    """All repeats of every model type; figures are medians over the repeats."""
    section = Section(
        "training", "1. Training throughput (train-phase phasenet, train-mag amag_v2)"
    )
    for model_type in MODEL_TYPES:
        runs = []
        for i in range(repeats):
            say(f"training: {model_type} repeat {i + 1}/{repeats}")
            runs.append(one_repeat(model_type, size, first=i == 0))
        section.figures.extend(model_figures(model_type, runs))
    section.notes = notes(size)
    return section


def notes(size: Sizes) -> list[str]:
    """How the training figures were measured."""
    steps = f"{size.max_steps} steps" if size.max_steps else "the whole training split"
    return [
        f"Data {size.dataset}, batch {size.batch}, seed {size.seed}, default model sizes, "
        f"{size.epochs} epochs of {steps}, warmup 0, CPU.",
        "tracked: the real train() in this process, full tracking (per-step metrics through "
        "the background sender, system metrics, checkpoints, history and plots) into a local "
        "`mlflow server` (SQLite); model logging off (timed in section 5). windows/s is the "
        "run's logged `train/windows_per_s` (training windows / training seconds of an epoch, "
        "validation excluded), median over the epochs after the first.",
        "tutorial bare loop: seisbench's PhaseNet tutorial recipe on the same screened training "
        "split: seisbench GenericGenerator (phase_train_generator / magnitude_train_generator) "
        "over waveforms preloaded in seisbench's full cache, DataLoader(shuffle, 2 workers, "
        "worker_seeding), Adam, the task's loss, no clipping; the same number of steps as one "
        "tracked epoch, epochs-1 fresh loader passes after one warm-up batch.",
        "compute-only: the loop's step (autocast forward, loss, zero_grad, backward, clip 1.0, "
        "Adam) on one random batch, the same number of steps, after a warm-up step.",
        "val/loss: the last epoch's validation loss of the tracked fp32 and bf16 runs (same seed, "
        "same steps). Noise: the largest |fp32 seed - fp32 other seed| over "
        f"{NOISE_SEEDS} other seeds (at least 1% of fp32).",
        "Ratios are medians of per-repeat ratios (both sides measured back to back).",
    ]
