"""`torchrun --nproc_per_node=2` on CPU (gloo): one MLflow run, identical weights, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.integration

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
TINY = [
    "--lstm-hidden", "8", "--lstm-layers", "1", "--attention-heads", "2",
    "--max-steps-per-epoch", "4", "--num-workers", "0", "--seed", "42",
]  # fmt: skip
EPOCHS = 3
PER_RANK_BATCH = 8
# 2 ranks x 8 and 1 process x 16 see as many windows per optimizer step, in another order (and
# BatchNorm normalises over 8 windows, not 16). Measured here, 3 epochs: the mean val/loss over
# the epochs differed by 1.0 % (seed 42), 2.5 %, 8.6 % and 7.9 % (seeds 2, 1, 3); the final one
# alone by 4.5 %, 3.5 %, 26 % and 33 %: after 12 steps on a steeply falling loss the order alone
# moves the last epoch a lot. The mean of the curve, within 15 %, is what this test holds.
RELATIVE_TOLERANCE = 0.15
TIMEOUT_S = 240


@dataclass
class Launch:
    """A finished training command: its store, output and per-rank checksums."""

    store: str
    output: str
    checksums: dict[str, str]

    def client(self) -> mlflow.MlflowClient:
        """A client of this launch's tracking store."""
        return mlflow.MlflowClient(self.store)

    def runs(self) -> list:
        """Every run in the store."""
        client = self.client()
        ids = [e.experiment_id for e in client.search_experiments()]
        return client.search_runs(ids)

    def values(self, run_id: str, key: str) -> list[float]:
        """A metric's history, in step order."""
        history = self.client().get_metric_history(run_id, key)
        return [m.value for m in sorted(history, key=lambda m: m.step)]


def launch(command: list[str], folder: Path, store: str) -> Launch:
    """Run a training command in its own process group; fail with its output if it fails."""
    checksums = folder / "checksums"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "OMP_NUM_THREADS": "1",
        "SEISMIC_ML_DDP_CHECKSUM_DIR": str(checksums),
    }
    proc = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{command} still running after {TIMEOUT_S} s:\n{output[-6000:]}")
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{output[-6000:]}"
    found = {p.stem: p.read_text().strip() for p in sorted(checksums.glob("rank*.sha256"))}
    for path in checksums.glob("rank*.sha256"):
        path.unlink()  # the next launch in this folder writes its own
    return Launch(store, output, found)


def torchrun(*args: str) -> list[str]:
    """train-mag under torchrun with two CPU ranks on this machine."""
    return [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "seismic_ml", "train-mag", *args]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's working folder (its SQLite store's artifacts land in ./mlruns there)."""
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def two_ranks(tiny_dataset: str, folder: Path) -> Launch:
    """3 epochs on 2 ranks at a per-rank batch of 8, into a store of its own."""
    args = [*TINY, "--dataset", tiny_dataset, "--epochs", str(EPOCHS)]
    store = f"sqlite:///{folder / 'ddp.db'}"
    return launch(torchrun(*args, "--batch-size", str(PER_RANK_BATCH)), folder, store)


def test_two_ranks_make_exactly_one_run(two_ranks: Launch) -> None:
    (run,) = two_ranks.runs()
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.world_size"] == "2"
    assert params["train.batch_size"] == str(PER_RANK_BATCH)
    assert params["train.global_batch_size"] == str(2 * PER_RANK_BATCH)
    assert two_ranks.output.count("run id:") == 1  # rank 1 trains quietly


def test_weights_identical_on_both_ranks(two_ranks: Launch) -> None:
    assert sorted(two_ranks.checksums) == ["rank0", "rank1"]
    assert two_ranks.checksums["rank0"] == two_ranks.checksums["rank1"]


def test_validation_loss_falls_and_steps_are_global(two_ranks: Launch) -> None:
    (run,) = two_ranks.runs()
    val = two_ranks.values(run.info.run_id, "val/loss")
    assert len(val) == EPOCHS
    assert all(later < earlier for earlier, later in zip(val, val[1:], strict=False)), val
    assert len(two_ranks.values(run.info.run_id, "lr")) == EPOCHS * 4  # global optimizer steps


def test_two_ranks_match_one_process_at_twice_the_batch(
    two_ranks: Launch, tiny_dataset: str, folder: Path
) -> None:
    single_folder = folder / "single"
    single_folder.mkdir()
    args = [*TINY, "--dataset", tiny_dataset, "--epochs", str(EPOCHS)]
    command = [sys.executable, "-m", "seismic_ml", "train-mag", *args, "--batch-size", "16"]
    single = launch(command, single_folder, f"sqlite:///{single_folder / 'one.db'}")
    (one,), (two,) = single.runs(), two_ranks.runs()
    assert one.data.params["train.world_size"] == "1"
    assert one.data.params["train.global_batch_size"] == "16"
    for key in ("data.n_val_windows", "data.n_train_windows", "train.steps_per_epoch"):
        assert one.data.params[key] == two.data.params[key]  # whole splits, global steps
    assert not single.checksums  # the debug hook is for torchrun ranks only
    one_curve = single.values(one.info.run_id, "val/loss")
    two_curve = two_ranks.values(two.info.run_id, "val/loss")[:EPOCHS]
    print(f"val/loss per epoch: 1 process x 16 {one_curve}, 2 ranks x 8 {two_curve}")
    mean_one, mean_two = sum(one_curve) / EPOCHS, sum(two_curve) / EPOCHS
    assert mean_two == pytest.approx(mean_one, rel=RELATIVE_TOLERANCE)


def test_resume_under_torchrun_continues_the_run(two_ranks: Launch, folder: Path) -> None:
    (run,) = two_ranks.runs()
    resumed = launch(
        torchrun("--resume", run.info.run_id, "--epochs", "4"), folder, two_ranks.store
    )
    (after,) = resumed.runs()
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    val = resumed.values(run.info.run_id, "val/loss")
    assert len(val) == 4 and val[3] < val[0]
    steps = [m.step for m in resumed.client().get_metric_history(run.info.run_id, "lr")]
    assert sorted(steps) == list(range(16))  # steps continue, none logged twice
    assert resumed.checksums["rank0"] == resumed.checksums["rank1"]
