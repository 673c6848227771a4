"""The CLI starts light: its import and every --help leave torch, MLflow and seisbench unloaded.

Each check runs in a fresh interpreter (this test session has long imported them all) and asserts
which modules got imported, never how long it took.
"""

import subprocess
import sys

import pytest

HEAVY = ("torch", "mlflow", "seisbench", "pandas", "obspy")

_LOADED = f"""
import sys
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""

_EVERY_HELP = """
import click
from seismic_ml.cli.main import cli

def paths(command, prefix):
    yield prefix
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, [*prefix, name])

for path in [*paths(cli, []), ["--version"]]:
    args = path if path == ["--version"] else [*path, "--help"]
    code = cli.main(args, prog_name="seismic-ml", standalone_mode=False)
    assert code == 0, (args, code)
"""


def loaded_after(code: str) -> str:
    """The heavy modules imported once code has run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", code + _LOADED], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "module", ["seismic_ml.cli.main", "seismic_ml.config", "seismic_ml.models.registry"]
)
def test_importing_leaves_the_heavy_libraries_unloaded(module: str) -> None:
    assert loaded_after(f"import {module}") == "[]"


def test_every_help_and_the_version_leave_the_heavy_libraries_unloaded() -> None:
    assert loaded_after(_EVERY_HELP) == "[]"


def test_python_dash_m_subcommand_help_leaves_the_heavy_libraries_unloaded() -> None:
    code = "import runpy, sys\nsys.argv = ['seismic-ml', 'train-mag', '--help']\n"
    code += "try:\n    runpy.run_module('seismic_ml', run_name='__main__')\n"
    code += "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
    assert loaded_after(code) == "[]"


@pytest.mark.parametrize("quiet, level", [([], "WARNING"), (["--quiet"], "ERROR")])
def test_mlflow_imported_after_the_cli_starts_keeps_its_info_lines_quiet(quiet, level) -> None:
    """mlflow configures its loggers on import, inside a command: they must stay quiet."""
    code = f"""
import logging, os
os.environ.pop("MLFLOW_LOGGING_LEVEL", None)
from seismic_ml.cli.main import cli
cli.main([*{quiet!r}, "data", "--help"], standalone_mode=False)
import mlflow
print(logging.getLevelName(logging.getLogger("mlflow").getEffectiveLevel()))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == level, done.stdout + done.stderr
