"""The torchrun pieces that need no process group: shards, params, gathered validation."""

import pytest

from seismic_ml.config import with_model_defaults
from seismic_ml.training import distributed
from seismic_ml.training.tasks import seed_everything
from seismic_ml.training.train import build_trainer
from tests.conftest import tiny_run_config


def as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    """The environment torchrun gives one of its processes."""
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))


@pytest.mark.parametrize("n, world", [(0, 2), (1, 2), (7, 2), (10, 3), (25, 4)])
def test_shards_in_rank_order_are_the_whole_split(monkeypatch, n: int, world: int) -> None:
    joined = []
    for rank in range(world):
        as_rank(monkeypatch, rank, world)
        joined += distributed.shard(n)
    assert joined == list(range(n))


def test_a_single_process_is_world_one(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")  # without a world of two or more, RANK means nothing
    assert not distributed.active() and distributed.is_main()
    assert distributed.run_params(16) == {"train.world_size": "1", "train.global_batch_size": "16"}
    assert distributed.broadcast("x") == "x" and distributed.mean(2.5) == 2.5


def test_validation_gathered_from_two_shards_equals_one_process(tiny_dataset, monkeypatch) -> None:
    cfg = with_model_defaults(tiny_run_config())
    seed_everything(cfg.train.seed)
    single = build_trainer(cfg)
    expected = single.validate()
    train_set, val_set = single.train_loader.dataset, single.val_loader.dataset
    shards: list = []
    monkeypatch.setattr(distributed, "all_gather", lambda parts: shards.append(parts) or [parts])
    for rank in (0, 1):
        as_rank(monkeypatch, rank, 2)
        loaders = distributed.make_sharded_loaders(train_set, val_set, cfg.train)
        assert len(loaders[1].sampler.sampler) == len(distributed.shard(len(val_set)))
        trainer = distributed.DistributedTrainer(
            single.model, single.task, *loaders, cfg.train, single.device
        )
        trainer.validate()  # this rank's shard alone, recorded in shards
    assert sum(len(s[0]) for s in shards) >= 2 and len(shards) == 2
    monkeypatch.setattr(distributed, "all_gather", lambda parts: list(shards))
    gathered = trainer.validate()  # what every rank computes from both shards
    assert gathered.keys() == expected.keys()
    for key, value in expected.items():
        assert gathered[key] == pytest.approx(value, rel=1e-5), key
