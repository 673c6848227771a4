"""The MLflow UI lists our training runs: `mlflow ui` over a store with two runs, headless Chromium.

Chromium (Debian's `chromium`) is needed; without it the test skips, unless
SEISMIC_ML_REQUIRE_TOOLS=1 (CI) makes it fail. `make ui-check` runs this file alone.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_run_config
from tests.processes import free_port, stop_group, wait_answering

pytestmark = pytest.mark.integration

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# MLflow 3.17's UI opens an experiment in its GenAI view (traces, token usage) for a browser that
# never chose otherwise, whatever the experiment's tags; this is its "Model training" switch.
TRAINING_VIEW = "?workflowType=machine_learning"
UI_START_S = 60.0
SHOT_SIZE = (1400, 900)


@pytest.fixture
def browser() -> str:
    """The headless browser; skips (fails under SEISMIC_ML_REQUIRE_TOOLS=1) without one."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("SEISMIC_ML_REQUIRE_TOOLS") == "1":
            pytest.fail(message + " (SEISMIC_ML_REQUIRE_TOOLS=1)")
        pytest.skip(message)
    return found


@pytest.fixture
def store_with_two_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dataset: str
) -> Iterator[tuple[str, str, list[str]]]:
    """A fresh SQLite store holding two finished training runs: (uri, experiment id, names)."""
    uri = f"sqlite:///{tmp_path / 'ui.db'}"
    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    options = MlflowRecorder(experiment="ui-check", log_model=False)
    runs = [
        MlflowClient().get_run(train(tiny_run_config(m, max_steps_per_epoch=1), options).run_id)
        for m in ("amag_v2", "phasenet_mag")
    ]
    try:
        yield uri, runs[0].info.experiment_id, [r.info.run_name for r in runs]
    finally:
        mlflow.set_tracking_uri(before)


@contextmanager
def mlflow_ui(store_uri: str, log_path: Path) -> Iterator[str]:
    """`mlflow ui` on a free loopback port, up and answering; its process group ends after.

    One worker: its default four start in about 20 s on two cores, one in about 6 s.
    """
    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [MLFLOW, "ui", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, proc, log_path, timeout=UI_START_S)
        yield url
    finally:
        stop_group(proc)


def browse(browser: str, url: str, profile: Path, *args: str) -> str:
    """Headless Chromium on url with a fresh profile, scripts run; its stdout."""
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--virtual-time-budget=20000", *args, url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def page_text(dom: str) -> str:
    """The visible text of a dumped DOM, whitespace collapsed."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_experiment_page_lists_both_training_runs(
    browser: str, store_with_two_runs: tuple[str, str, list[str]], tmp_path: Path
) -> None:
    uri, experiment_id, names = store_with_two_runs
    assert len(set(names)) == 2
    shot = tmp_path / "experiment.png"
    with mlflow_ui(uri, tmp_path / "ui.log") as url:
        page = f"{url}/#/experiments/{experiment_id}{TRAINING_VIEW}"
        text = page_text(browse(browser, page, tmp_path / "profile", "--dump-dom"))
        size = f"--window-size={SHOT_SIZE[0]},{SHOT_SIZE[1]}"
        browse(browser, page, tmp_path / "profile-shot", f"--screenshot={shot}", size)
    assert f"Runs - Experiment {experiment_id}" in text, text[:2000]
    for name in names:
        assert name in text, text[:2000]
    assert "2 matching runs" in text
    assert "Token Usage" not in text  # not the GenAI overview
    assert png_size(shot) == SHOT_SIZE
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
