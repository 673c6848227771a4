"""The seismic-ml command line: the only package that imports click."""

from seismic_ml.cli.main import cli, main

__all__ = ["cli", "main"]
