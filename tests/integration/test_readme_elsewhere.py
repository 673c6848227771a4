"""Every example of the README section "Using a registered model elsewhere" runs as written.

The section's fenced blocks are taken from README.md (from its heading to the next heading) and
run in order, in a folder holding `event.mseed`, against a tiny picker trained here and
registered as `seismic-picker@champion` in a temporary SQLite store (no server, no network):

- `seismic-ml ...` lines run through the CLI in this process, as written;
- the Python block that loads the pyfunc runs in a fresh interpreter (`python -I`) where the
  installed seismic_ml cannot be imported (the blocking import hook of `tests/outside.py`): the
  cheaper equivalent of the `python -m venv clean && pip install mlflow torch` line, which needs
  the network and is not run;
- the `mlflow models serve --env-manager virtualenv` line (pyenv, the network, minutes) is not
  run: the request block runs with `requests.post` answered by MLflow's own scoring function
  (`mlflow.pyfunc.scoring_server.invocations`, what the server calls for POST /invocations) on
  the registered model loaded with `mlflow.pyfunc.load_model`;
- every other Python block runs in this process.

A command line the test does not know is a failure, so a new example cannot go unchecked.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from seismic_ml.cli import cli
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.outside import BLOCK_SEISMIC_ML
from tests.unit.test_predict import event_file

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### Using a registered model elsewhere"
URI = "models:/seismic-picker@champion"
# Shown, not run: what checks them instead is in the module docstring.
NOT_RUN = {
    ("python", "-m", "venv"): "the pyfunc block in a python -I where seismic_ml is blocked",
    ("mlflow", "models", "serve"): "the request block answered by MLflow's scoring function",
}


def readme_blocks(text: str, heading: str = HEADING) -> list[tuple[str, str]]:
    """(language, code) of each fenced block between the heading and the next heading."""
    start = text.index(heading + "\n") + len(heading)
    following = re.search(r"^#{1,3} ", text[start:], flags=re.MULTILINE)
    section = text[start : start + following.start()] if following else text[start:]
    return re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with event.mseed and a registered seismic-picker@champion in its own store."""
    work = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(event_file(tmp_path_factory)["path"], work / "event.mseed")
    store = f"sqlite:///{work / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(store)
        options = MlflowRecorder("elsewhere", register_as="seismic-picker", alias="champion")
        train(tiny_run_config("phasenet", epochs=1), options)
        yield work
        mlflow.set_tracking_uri(None)


def run_shell(block: str) -> list[str]:
    """Run a bash block's commands (seismic-ml through its CLI); what each was checked by."""
    done = []
    for line in filter(None, (x.strip() for x in block.splitlines())):
        argv = shlex.split(line, comments=True)
        if argv[0] == "seismic-ml":
            result = CliRunner().invoke(cli, argv[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
            done.append(line)
            continue
        reason = next((why for head, why in NOT_RUN.items() if tuple(argv[:3]) == head), None)
        assert reason, f"README command the test does not know how to check: {line}"
        done.append(f"{line} (checked by {reason})")
    return done


def run_outside(code: str, folder: Path) -> str:
    """Run a Python block in a fresh interpreter where the installed seismic_ml is blocked."""
    script = folder / "outside.py"
    tail = "\nprint('BLOCKED:', blocked)\nprint('FROM:', sys.modules['seismic_ml'].__file__)\n"
    script.write_text(BLOCK_SEISMIC_ML + code + tail)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
    }
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    done = subprocess.run(
        [sys.executable, "-I", str(script)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]
    assert "BLOCKED: blocked: seismic_ml" in done.stdout
    assert re.search(r"FROM: .*[/\\]code[/\\]seismic_ml[/\\]__init__\.py", done.stdout)
    return done.stdout


def scoring_requests(uri: str) -> types.ModuleType:
    """A `requests` whose post() answers /invocations as `mlflow models serve` would."""
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(uri)
    schema = model.metadata.get_input_schema()

    def post(url: str, json: dict) -> types.SimpleNamespace:
        assert url.endswith("/invocations"), url
        answer = scoring_server.invocations(_dumps(json), "application/json", model, schema)
        assert answer.status == 200, answer.response
        return types.SimpleNamespace(json=lambda: _loads(answer.response))

    return types.SimpleNamespace(post=post)


_dumps, _loads = json.dumps, json.loads


def run_here(code: str, requests: types.ModuleType | None = None) -> str:
    """Run a Python block in this process (requests: what `import requests` gives); its output."""
    out = io.StringIO()
    modules = {"requests": requests} if requests else {}
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        for name, module in modules.items():
            patch.setitem(sys.modules, name, module)
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    return out.getvalue()


def test_the_section_has_every_kind_of_example():
    blocks = readme_blocks(README.read_text())
    code = "\n".join(body for _, body in blocks)
    for needed in ("mlflow.pyfunc.load_model", "--env-manager virtualenv", "requests.post",
                   "--format seisbench", "sbm.PhaseNet.load", "--format onnx",
                   "ort.InferenceSession", "--format quakeml", "obspy.read_events"):  # fmt: skip
        assert needed in code, needed
    assert {lang for lang, _ in blocks} == {"bash", "python"}


def test_every_example_runs_as_written(folder):
    checked = []
    for lang, code in readme_blocks(README.read_text()):
        if lang == "bash":
            checked += run_shell(code)
        elif "mlflow.pyfunc.load_model" in code:
            output = run_outside(code, folder)
            assert "probability" in output  # the picks table was printed
            checked.append("pyfunc outside")
        elif "requests.post" in code:
            output = run_here(code, scoring_requests(URI))
            assert "'window'" in output or output.strip() == "[]"
            checked.append("request")
        else:
            run_here(code)
            checked.append(code.splitlines()[0])
    assert (folder / "picker.json").is_file() and (folder / "picker.onnx").is_file()
    assert (folder / "picks.xml").is_file()
    assert len(checked) >= 9, checked
