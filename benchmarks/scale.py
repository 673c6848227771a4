"""8. Scale (#21): data preparation and evaluation on a synthetic set that takes seconds to read.

A first training start on a cold screening cache against a second start (each a fresh process,
preloaded and streamed), a tuning worker's trials against one start, two models evaluated on one
test split (cold, then warm classical-baseline cache) against the bare forward, and peak RSS.

Workers (a fresh process each, one JSON line on stdout):
python benchmarks/scale.py start --dataset synthetic:50000 --budget 50% --steps 2
python benchmarks/scale.py tune --dataset synthetic:50000 --trials 5 --steps 2 --storage URL
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from common import (
    EXPERIMENT,
    Figure,
    Section,
    Sizes,
    compare,
    quiet_package,
    ratio_at_most,
    run_config,
    say,
    timed,
)

MODEL = "phasenet"
PATHS = {"preloaded": "50%", "streamed": "0"}  # --memory-budget of each data path
TRAIN_DEV_SHARE = 0.8  # the synthetic set's train + dev share (70% + 10%); test is 20%
TRAIN_SHARE = 0.7
# Sizes the projection scales to. STEAD: ~1.2 M traces, waveforms.hdf5 ~70 GB (seisbench's
# benchmark-dataset docs; ~85 GB merged per github.com/smousavi05/STEAD). MLAAPDE: the seisbench
# docs give 1.9 M phase labels and no size; the trace count is taken as 1.9 M (an upper bound).
TARGETS = {"STEAD": 1_200_000, "MLAAPDE": 1_900_000}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (VmHWM, as memory_paths measures it)."""
    from memory_paths import peak_rss_mb as peak

    return peak()


def tracking() -> Any:
    """Training's tracking options for a bench run: no model, no system metrics."""
    from seismic_ml.tracking.training_run import MlflowRecorder

    return MlflowRecorder(experiment=EXPERIMENT, log_model=False, system_metrics=False)


def start_worker(dataset: str, budget: str, steps: int, batch: int, seed: int) -> dict[str, Any]:
    """One training start (1 epoch of `steps` steps) in this process; its run and peak RSS."""
    from seismic_ml.training.train import train

    size = Sizes(dataset=dataset, batch=batch, epochs=1, max_steps=steps, seed=seed)
    cfg = run_config(MODEL, size, memory_budget=budget)
    wall, result = timed(lambda: train(cfg, tracking()))
    return {"run_id": result.run_id, "wall_s": wall, "peak_rss_mb": peak_rss_mb()}


def tune_worker(
    dataset: str, trials: int, steps: int, batch: int, seed: int, storage: str
) -> dict[str, Any]:
    """A tuning worker of `trials` one-epoch trials in this process; its parent run and peak RSS.

    batch_size and filter_factor are fixed (as given on the command line) to keep trials short:
    neither changes the data, so the trials' data time is the same as with them searched.
    """
    from seismic_ml.tracking.study_runs import MlflowStudyRecorder
    from seismic_ml.tuning.study import tune
    from seismic_ml.tuning.tune_config import TuneOptions

    size = Sizes(dataset=dataset, batch=batch, epochs=1, max_steps=steps, seed=seed)
    options = TuneOptions(
        base=run_config(MODEL, size),
        n_trials=trials,
        max_epochs_per_trial=1,
        study_name=f"scale-{time.time_ns()}",
        storage=storage,
        fixed_params=("batch_size", "filter_factor"),
        experiment=EXPERIMENT,
    )
    wall, result = timed(lambda: tune(options, MlflowStudyRecorder()))
    return {"parent": result.parent_run_id, "wall_s": wall, "peak_rss_mb": peak_rss_mb()}


def run_worker(args: list[str]) -> dict[str, Any]:
    """A worker in a fresh process (this file); its JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scale worker {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_info(run_id: str) -> dict[str, Any]:
    """A run's data/prepare_s, training windows/s and how its splits were prepared."""
    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(run_id)
    params, metrics = run.data.params, run.data.metrics
    return {
        "run_id": run_id,
        "prepare_s": metrics["data/prepare_s"],
        "windows_per_s": metrics.get("train/windows_per_s", float("nan")),
        "screening": params.get("data.train_screening", "?"),
        "waveforms": params.get("data.train_waveforms", "?"),
    }


def trial_runs(parent: str) -> list[dict[str, Any]]:
    """run_info of every trial run under a tuning worker's parent run, in trial order."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    runs.sort(key=lambda r: int(r.data.tags.get("optuna.trial_number", 0)))
    return [run_info(r.info.run_id) for r in runs]


def dataset_folder(dataset: str) -> Path:
    """The set's folder in the seisbench cache (built when missing)."""
    from seismic_ml.data.registry import load_dataset

    return Path(load_dataset(dataset).path).resolve()


def forget_screening(folder: Path) -> int:
    """Delete the kept screening reports of this set's files (a cold cache); how many."""
    from seismic_ml.data.screen_cache import cache_dir

    def path_of(report: Path) -> str:
        return json.loads(report.read_text())["identity"]["dataset"]["path"]

    return _remove_kept(cache_dir().glob("*.json"), path_of, folder)


def forget_baselines(folder: Path) -> int:
    """Delete the kept classical-baseline results of this set's splits (a cold cache)."""
    import numpy as np
    import seisbench

    from seismic_ml.evaluation.baseline_cache import FOLDER, IDENTITY

    def path_of(kept: Path) -> str:
        with np.load(kept, allow_pickle=False) as arrays:
            return json.loads(str(arrays[IDENTITY]))["split"]["dataset"]["path"]

    return _remove_kept((Path(seisbench.cache_root) / FOLDER).glob("*.npz"), path_of, folder)


def _remove_kept(files: Iterable[Path], path_of: Callable[[Path], str], folder: Path) -> int:
    """Delete the files whose recorded dataset path is folder (unreadable ones stay); how many."""
    removed = 0
    for kept in files:
        try:
            path = path_of(kept)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path == str(folder):
            kept.unlink(missing_ok=True)
            removed += 1
    return removed


def start(size: Sizes, dataset: str, budget: str, steps: int) -> dict[str, Any]:
    """One training start in a fresh process: the worker's result and its run's figures."""
    args = ["start", "--dataset", dataset, "--batch", str(size.batch), "--seed", str(size.seed)]
    worker = run_worker([*args, "--budget", budget, "--steps", str(steps)])
    return {**worker, **run_info(worker["run_id"])}


def starts(size: Sizes, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Per data path: a first start on a cold screening cache, then a second start."""
    result = {}
    for path, budget in PATHS.items():
        forget_screening(folder)
        say(f"scale: first and second start, {path} (--memory-budget {budget})")
        result[path] = [
            start(size, size.scale_dataset, budget, size.scale_steps),
            start(size, size.scale_dataset, budget, size.scale_rate_steps),
        ]
    return result


def fixed_cost(size: Sizes) -> dict[str, Any]:
    """A start's cost that does not grow with the data: the data/prepare_s of a streamed start
    on the small bench set whose screening report is kept (the second of two starts)."""
    say(f"scale: a start's fixed cost, streamed starts on {size.dataset}")
    start(size, size.dataset, PATHS["streamed"], 1)
    return start(size, size.dataset, PATHS["streamed"], 1)


def start_figures(runs: dict[str, list[dict[str, Any]]]) -> list[Figure]:
    """First start's data/prepare_s (info) and the second's against it (<= 0.1x)."""
    figures = []
    for path, (first, second) in runs.items():
        name = f"{path}: first start data/prepare_s, screening cache cold"
        figures.append(Figure(name, first["prepare_s"], "s", [first["prepare_s"]], target="(info)"))
        figures.append(
            ratio_at_most(
                f"{path}: second start data/prepare_s, screening cache warm",
                [second["prepare_s"]],
                [first["prepare_s"]],
                "s",
                "first start",
                0.1,
            )
        )
    return figures


def tuning(size: Sizes, reference: dict[str, Any]) -> tuple[Figure, list[dict[str, Any]], dict]:
    """A tuning worker's summed trial data/prepare_s against one (second, preloaded) start's."""
    say(f"scale: tuning worker, {size.scale_trials} trials")
    with tempfile.TemporaryDirectory(prefix="seismic_ml_scale_") as tmp:
        worker = run_worker(
            ["tune", "--dataset", size.scale_dataset, "--trials", str(size.scale_trials),
             "--steps", str(size.scale_steps), "--batch", str(size.batch),
             "--seed", str(size.seed), "--storage", f"sqlite:///{tmp}/optuna.db"]
        )  # fmt: skip
    trials = trial_runs(worker["parent"])
    total = sum(t["prepare_s"] for t in trials)
    figure = ratio_at_most(
        f"tuning worker, {len(trials)} trials: summed data/prepare_s",
        [total],
        [reference["prepare_s"]],
        "s",
        "one start (second, preloaded)",
        1.5,
    )
    origins = ", ".join(f"{t['screening']} {t['prepare_s']:.2f} s" for t in trials)
    figure.note = f"per trial: {origins}"
    return figure, trials, worker


def evaluation(size: Sizes, folder: Path, models: list[str], repeats: int) -> list[Figure]:
    """Two models' scoring of one test split (baseline cache cold, then warm) and their whole
    evaluate_run() against the bare forward over the same windows."""
    from eval_speed import bare_forward_seconds, eval_windows, scorer

    from seismic_ml.evaluation.inference import batches
    from seismic_ml.tracking.evaluation_run import evaluate_run
    from seismic_ml.tracking.loader import Source, load_source

    loaded = []
    for run_id in models:
        trained = load_source(Source(run_id))
        data, windows = eval_windows("phase", trained.module, trained.config)
        inputs = [b["X"] for _, b in batches(windows, size.batch)]
        loaded.append((run_id, trained.module, trained.config, data, inputs))
    n = sum(len(x) for x in loaded[0][4])
    whole: dict[str, list[float]] = {"cold": [], "warm": []}
    forget_baselines(folder)
    for (run_id, *_), key in zip(loaded, ("cold", "warm"), strict=True):
        say(f"scale: evaluate_run() of {run_id}, baseline cache {key}")
        seconds, _ = timed(lambda r=run_id: evaluate_run("phase", r, batch_size=size.batch))
        whole[key].append(n / seconds)
    forget_baselines(folder)
    # model 1 cold (the first scoring of the split), model 2 warm in every repeat, then model 1
    # again warm: the same model both ways tells the cache's effect from the model's own
    order = [(0, "cold"), *[(1, "warm")] * max(repeats, 1), (0, "warm1")]
    col: dict[str, list[float]] = {}
    for i, key in order:
        _, model, cfg, data, inputs = loaded[i]
        say(f"scale: scoring model {i + 1}, baseline cache {key[:4]}, then the bare forward")
        col.setdefault(key, []).append(n / timed(scorer("phase", model, data, cfg, size.batch))[0])
        col.setdefault(f"fwd_{key}", []).append(n / bare_forward_seconds(model, inputs))
    unit, ref = "windows/s", "bare forward"
    cold = compare("eval scoring, model 1, baseline cache cold", col["cold"], col["fwd_cold"],
                   unit, ref, target="(info)")  # fmt: skip
    warm = compare("eval scoring, model 2, baseline cache warm", col["warm"], col["fwd_warm"],
                   unit, ref, at_least=0.9)  # fmt: skip
    again = compare("eval scoring, model 1 again, baseline cache warm", col["warm1"],
                    col["fwd_warm1"], unit, ref, target="(info)")  # fmt: skip
    whole_figures = [
        compare(f"eval whole command, model {i + 1}, cache {key}", whole[key],
                col[f"fwd_{key}"][:1], unit, ref, target="(info)")
        for i, key in enumerate(("cold", "warm"))
    ]  # fmt: skip
    for figure in (cold, warm, again):
        figure.note = f"{n} windows"
    return [cold, warm, again, *whole_figures]


def rss_figures(runs: dict[str, list[dict]], tuner: dict[str, Any]) -> list[Figure]:
    """Peak RSS of each worker process and of this one (evaluation), for information."""
    rows = [(f"{path} {w}", r["peak_rss_mb"]) for path, pair in runs.items()
            for w, r in zip(("first start", "second start"), pair, strict=True)]  # fmt: skip
    rows += [("tuning worker", tuner["peak_rss_mb"]), ("this process (evaluation)", peak_rss_mb())]
    return [Figure(f"peak RSS: {name}", mb, "MB", [mb], target="(info)") for name, mb in rows]


def project(seconds: float, fixed: float, factor: float) -> float:
    """A measured time at `factor` times the traces: its fixed part plus the rest scaled."""
    return fixed + max(seconds - fixed, 0.0) * factor


def projection(
    size: Sizes, runs: dict[str, list[dict]], trials: list[dict], fixed: float
) -> list[str]:
    """The measured starts, trials and windows/s projected to STEAD and MLAAPDE sizes (linear;
    a reused trial's whole data/prepare_s is scaled: it is mostly per-row work, an upper bound)."""
    n = int(size.scale_dataset.partition(":")[2])
    lines = []
    for name, traces in TARGETS.items():
        factor = traces / n
        tuned = project(trials[0]["prepare_s"], fixed, factor) if trials else 0.0
        tuned += sum(t["prepare_s"] for t in trials[1:]) * factor
        parts = [f"tuning worker, {len(trials)} trials: {tuned / 60:.1f} min"]
        for path, (first, second) in runs.items():
            epoch_h = traces * TRAIN_SHARE / second["windows_per_s"] / 3600
            parts.append(
                f"{path}: first start {project(first['prepare_s'], fixed, factor) / 60:.1f} min, "
                f"later starts {project(second['prepare_s'], fixed, factor) / 60:.1f} min, "
                f"epoch {epoch_h:.1f} h at {second['windows_per_s']:.0f} windows/s"
            )
        lines.append(
            f"projection to {name} (~{traces / 1e6:.1f} M traces, x{factor:.0f} the traces; "
            f"fixed {fixed:.1f} s kept, the rest scaled): " + "; ".join(parts)
        )
    return lines


def run(size: Sizes, repeats: int) -> Section:
    """Starts, a tuning worker and evaluation on the scale set, each start in a fresh process."""
    from memory_paths import build_set

    name, _, count = size.scale_dataset.partition(":")
    if name != "synthetic" or not count.isdigit():
        raise ValueError(f"--scale-dataset takes synthetic:N, not {size.scale_dataset!r}")
    built = build_set(int(count))
    folder = dataset_folder(size.scale_dataset)
    fixed = fixed_cost(size)
    runs = starts(size, folder)
    tuned, trials, tuner = tuning(size, runs["preloaded"][1])
    models = [runs["preloaded"][0]["run_id"], runs["preloaded"][1]["run_id"]]
    evaluated = evaluation(size, folder, models, repeats)
    rates = [
        Figure(f"{path}: training, second start", pair[1]["windows_per_s"], "windows/s",
               [pair[1]["windows_per_s"]], target="(info)",
               note=f"1 epoch of {size.scale_rate_steps} steps, its first step included")
        for path, pair in runs.items()
    ]  # fmt: skip
    base = Figure(
        f"a start's fixed cost: data/prepare_s, streamed, {size.dataset}, report kept",
        fixed["prepare_s"], "s", [fixed["prepare_s"]], target="(info)",
    )  # fmt: skip
    figures = [built, base, *start_figures(runs), tuned, *evaluated, *rates]
    figures += rss_figures(runs, tuner)
    said = notes(size, runs, trials, tuner) + projection(size, runs, trials, fixed["prepare_s"])
    title = "8. Scale: data preparation and evaluation on a large set"
    return Section("scale", title, figures, said)


def notes(size: Sizes, runs: dict[str, list[dict]], trials: list[dict], tuner: dict) -> list[str]:
    """How the figures were measured, with what each run says about its splits."""
    said = "; ".join(
        f"{path}: {w} start train split {r['screening']}, {r['waveforms']} "
        f"(run {r['run_id'][:8]}, {r['wall_s']:.0f} s in all)"
        for path, pair in runs.items()
        for w, r in zip(("first", "second"), pair, strict=True)
    )
    return [
        f"{size.scale_dataset}, {MODEL} (default size), batch {size.batch}, CPU; every start "
        f"is `train()` in a fresh process: 1 epoch, {size.scale_steps} steps (second starts "
        f"{size.scale_rate_steps}), validation on the whole dev split, no model logged.",
        "data/prepare_s: the run's own metric, seconds from the start of data preparation "
        "(metadata, screening, preloading) to the training loop's start.",
        f"preloaded: --memory-budget {PATHS['preloaded']} (train and dev fit); streamed: "
        f"--memory-budget {PATHS['streamed']} (both stream from HDF5). Before each first start "
        "the set's screening reports are deleted; the HDF5 file stays in the OS page cache "
        "(it was just written or read), so no figure includes a cold disk.",
        f"Runs: {said}.",
        f"tuning worker: `tune()` in a fresh process, {size.scale_trials} one-epoch trials of "
        f"{size.scale_steps} steps, batch_size and filter_factor fixed; its reference is the "
        f"preloaded second start (both read the kept screening report); {tuner['wall_s']:.0f} s "
        f"in all; {len(trials)} trial runs found.",
        "evaluation: the first and second preloaded starts' models on the test split. scoring: "
        "score_phase (windows, forward, STA/LTA baseline, metrics) as eval_speed measures it; "
        "model 1 with the set's classical-baseline results deleted first, model 2 after it "
        "(warm), then model 1 again (warm). whole command: evaluate_run() (`eval-phase --run-id`), "
        "model 1 cold, model 2 warm. "
        "bare forward: model(x), eval mode, no_grad, over the same windows pre-cut.",
        "peak RSS: VmHWM of each worker process; this process ran the evaluation (and any "
        "section before this one).",
        f"a start's fixed cost: what data/prepare_s holds that does not grow with the data "
        f"(imports in a fresh process, the MLflow run, the model and optimizer), measured as a "
        f"streamed start on the small {size.dataset} whose screening report is kept.",
        "projection: not measured at those sizes. Each start's data/prepare_s minus the fixed "
        "cost is scaled linearly by the traces (the same train+dev share); the fixed cost is "
        "added back. Epoch: 70% of the traces (the synthetic set's train share) at the second "
        "start's windows/s here. A preloaded STEAD needs ~70 GB of RAM for train and dev; "
        "with less it streams.",
    ]


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: one start or one tuning worker, one JSON line on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("start", "tune"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--budget", default="50%")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--storage", default="")
    args = parser.parse_args(argv)
    quiet_package()
    if args.kind == "start":
        result = start_worker(args.dataset, args.budget, args.steps, args.batch, args.seed)
    else:
        result = tune_worker(
            args.dataset, args.trials, args.steps, args.batch, args.seed, args.storage
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
