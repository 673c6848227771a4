"""2. Data path alone: windows/s the training loader delivers against what the bf16 step eats."""

from __future__ import annotations

import gc

from common import Section, Sizes, compare, run_config, say
from loops import compute_rate, package_data_rate, steps_per_epoch, train_split, tutorial_data_rate

MODEL_TYPES = ("phasenet", "amag_v2")


def run(size: Sizes, repeats: int) -> Section:
    """Per model type and repeat: the bf16 compute-only step, then the loaders alone."""
    section = Section("data", "2. Data path alone against the bf16 step")
    epochs = max(size.epochs - 1, 1)
    for model_type in MODEL_TYPES:
        cfg = run_config(model_type, size, "bf16")
        steps = steps_per_epoch(len(train_split(cfg)), size.batch, size.max_steps)
        data, tutorial, step = [], [], []
        for i in range(repeats):
            say(f"data path: {model_type} repeat {i + 1}/{repeats}")
            # the step first: the tutorial loader's worker processes may outlive its pass
            step.append(compute_rate(cfg, steps * epochs, bf16=True))
            data.append(package_data_rate(cfg, steps, epochs))
            tutorial.append(tutorial_data_rate(cfg, steps, epochs))
            gc.collect()
        unit, ref = "windows/s", "compute-only step bf16"
        section.figures += [
            compare(f"{model_type} training loader", data, step, unit, ref, 3.0),
            compare(f"{model_type} tutorial loader", tutorial, step, unit, ref, target="(info)"),
        ]
    section.notes = [
        "training loader: the DataLoader build_trainer(cfg) makes (batched windows from the "
        "preloaded split, num_workers 0, in this process), iterated without a model over the "
        "same steps as a tracked epoch x (epochs-1), after a warm-up batch.",
        "tutorial loader (for comparison): seisbench's GenericGenerator over its full cache, "
        "2 DataLoader workers, the same steps.",
        "compute-only step bf16: as in section 1, measured right before the loaders.",
    ]
    return section
