"""The picker recipe trained two ways on the same data: seisbench's GenericGenerator and the
project's batched path. Shared by the unit test that compares them and the quality benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import seisbench.data as sbd
import seisbench.util as sbu
import torch
from torch.utils.data import DataLoader

from seismic_ml.data import pipelines
from seismic_ml.data.batches import PhaseBatches
from seismic_ml.data.waveforms import open_waveforms
from seismic_ml.models.configs import PhaseNetConfig
from seismic_ml.models.registry import build_model

GB = 2**30


@dataclass
class RecipeResult:
    """Validation loss and S (and P) peak probabilities on the event windows that hold the pick."""

    val_loss: float
    s_peaks: np.ndarray
    p_peaks: np.ndarray


def seisbench_batches(train: sbd.WaveformDataset, sigma: int, batch: int, seed: int) -> DataLoader:
    """seisbench's PhaseNet recipe: GenericGenerator, WindowAroundSample, RandomWindow, labeller."""
    np.random.seed(seed)  # seisbench's augmentations draw from numpy's global generator
    train.preload_waveforms()  # as seisbench's tutorial does: read once, resampled per window
    generator = pipelines.phase_train_generator(train, "NPS", 3001, sigma)
    return DataLoader(
        generator,
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=sbu.worker_seeding,
    )


def batched_batches(train: sbd.WaveformDataset, sigma: int, batch: int, seed: int) -> DataLoader:
    """The project's batched path on the same split."""
    windows = PhaseBatches(open_waveforms(train, GB), train, 3001, "NPS", sigma, seed=seed)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(windows, generator=torch.Generator().manual_seed(seed)),
        batch,
        drop_last=False,
    )
    return DataLoader(windows, batch_size=None, sampler=sampler)


def train_recipe(loader: DataLoader, steps: int, seed: int, lr: float = 1e-3) -> torch.nn.Module:
    """A PhaseNet from seed trained for `steps` Adam steps on the loader's batches (epochs)."""
    torch.manual_seed(seed)
    model = build_model("phasenet", PhaseNetConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done, epoch = 0, 0
    while done < steps:
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)
        for batch in loader:
            loss = soft_cross_entropy(model(batch["X"], logits=True), batch["y"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return model.eval()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The phase task's loss: cross-entropy against the Gaussian labels."""
    return -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def validate(model: torch.nn.Module, dev: sbd.WaveformDataset, sigma: int) -> RecipeResult:
    """Loss and per-window peaks on the seeded validation windows (seisbench's steered ones)."""
    windows = PhaseBatches(open_waveforms(dev, GB), dev, 3001, "NPS", sigma, window_seed=0)
    batch = windows[list(range(len(windows)))]
    logits = model(batch["X"], logits=True)
    probs = torch.softmax(logits, dim=1).numpy()
    labels = batch["y"].numpy()
    has = {p: labels[:, i].max(axis=-1) > 0.5 for i, p in enumerate("NPS")}
    return RecipeResult(
        float(soft_cross_entropy(logits, batch["y"])),
        probs[has["S"], 2].max(axis=-1),
        probs[has["P"], 1].max(axis=-1),
    )
