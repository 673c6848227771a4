"""Data-parallel training under torchrun: the process group, sharded loaders, a DDP trainer.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in every process it starts. With a world of
two or more, `train()` joins the process group (gloo on CPU, NCCL on CUDA, one GPU per local
rank) and trains a `DistributedTrainer`: each rank steps on its shard of every epoch, DDP
averages the gradients, validation is computed on the gathered outputs of all shards, so every
rank sees the same numbers. Rank 0 alone talks to MLflow, writes checkpoints and registers.
Without torchrun (or with a world of one) nothing here changes what a single process does.

Debug hook: with SEISMIC_ML_DDP_CHECKSUM_DIR set, every rank writes `rank<N>.sha256`, the
SHA-256 of its model's state_dict after training, into that folder (the tests compare them).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from seismic_ml.config import TrainConfig
from seismic_ml.training.loop import Callback, LoopState, Trainer
from seismic_ml.training.tasks import make_loaders, set_loader_epoch

CHECKSUM_DIR_ENV = "SEISMIC_ML_DDP_CHECKSUM_DIR"
RANK_SEED_STRIDE = 7919  # keeps the augmentation seeds of different ranks apart
T = TypeVar("T")


def world_size() -> int:
    """Processes in the job: torchrun's WORLD_SIZE, 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """True under torchrun with two or more processes."""
    return world_size() > 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0")) if active() else 0


def is_main() -> bool:
    """True for the process that tracks, checkpoints and registers (rank 0, or the only one)."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process on a node takes the GPU of its LOCAL_RANK."""
    if not active() or device.type != "cuda":
        return device
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (gloo on CPU, NCCL on CUDA), then leave it."""
    if not active() or dist.is_initialized():
        yield
        return
    device = local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it may build the synthetic set), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(value: T) -> T:
    """Rank 0's value, on every rank (picklable objects; within the job, never from a server)."""
    if not active():
        return value
    holder = [value if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather(value: T) -> list[T]:
    """Every rank's value, in rank order, on every rank."""
    if not active():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def mean(value: float) -> float:
    """The mean of a number over the ranks."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor) / world_size()


def shard(n: int) -> list[int]:
    """This rank's contiguous slice of range(n); the slices in rank order are range(n) again."""
    bounds = np.linspace(0, n, world_size() + 1).round().astype(int)
    return list(range(bounds[rank()], bounds[rank() + 1]))


def run_params(per_rank_batch: int) -> dict[str, str]:
    """Params every training run records: processes and windows per optimizer step."""
    return {
        "train.world_size": str(world_size()),
        "train.global_batch_size": str(per_rank_batch * world_size()),
    }


def make_sharded_loaders(
    train_set: Dataset, val_set: Dataset, cfg: TrainConfig
) -> tuple[DataLoader, DataLoader]:
    """Training loader over a DistributedSampler (reshuffled per epoch), validation shard exact."""
    sampler = DistributedSampler(
        train_set, num_replicas=world_size(), rank=rank(), shuffle=True, seed=cfg.seed
    )
    return make_loaders(
        train_set,
        val_set,
        cfg.batch_size,
        cfg.num_workers,
        cfg.seed,
        train_sampler=sampler,
        val_sampler=shard(len(val_set)),
    )


class DistributedTrainer(Trainer):
    """The loop under DDP: sharded epochs, averaged gradients, validation over all shards."""

    def fit(self, callbacks: Sequence[Callback] = ()) -> LoopState:
        """Wrap the model in DDP (its first collective), run the loop, then the debug checksum."""
        if not isinstance(self.net, DistributedDataParallel):
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        state = super().fit(callbacks)
        write_checksum(self.model)
        return state

    def train_epoch(self, callbacks: Sequence[Callback]) -> float:
        """One sharded pass; then rank 0's BatchNorm statistics everywhere (as DDP uses them)."""
        loss = super().train_epoch(callbacks)
        for buffer in self.model.buffers():
            dist.broadcast(buffer, src=0)
        return loss

    def _step(self, batch: dict[str, torch.Tensor]) -> float:
        """A DDP step; the loss reported is the mean over the ranks (the global batch's)."""
        return mean(super()._step(batch))

    def _seed_epoch(self) -> None:
        """Reshuffle the shards for this epoch; each rank its own augmentation draws."""
        epoch, seed = self.state.epoch, self.cfg.seed
        offset = RANK_SEED_STRIDE * rank()
        np.random.seed((seed * 1_000_003 + epoch + offset) % 2**32)
        self.train_loader.generator.manual_seed(seed + epoch + offset)
        set_loader_epoch(self.train_loader, epoch)

    def _gather_val(self, parts: tuple[list, ...]) -> tuple[list, ...]:
        """Every rank's validation outputs, targets, losses and sizes, joined in rank order."""
        gathered = all_gather(parts)
        return tuple([item for rank_parts in gathered for item in rank_parts[i]] for i in range(4))


def write_checksum(model: nn.Module) -> Path | None:
    """SHA-256 of the model's state_dict into $SEISMIC_ML_DDP_CHECKSUM_DIR/rank<N>.sha256."""
    folder = os.environ.get(CHECKSUM_DIR_ENV)
    if not folder:
        return None
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    path = Path(folder) / f"rank{rank()}.sha256"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest.hexdigest() + "\n")
    return path
