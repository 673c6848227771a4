"""The export command: a logged model in seisbench's format or as ONNX (registered in main.py)."""

from __future__ import annotations

from pathlib import Path

import click

from seismic_ml.cli.click_options import FriendlyCommand

__all__ = ["export"]

FORMATS = ("seisbench", "onnx")  # seismic_ml.export.FORMATS (not imported: the CLI starts light)


@click.command("export", cls=FriendlyCommand)
@click.option(
    "--model-uri",
    "--model_uri",
    "model_uri",
    required=True,
    help="the model: a run id, runs:/ID/model, models:/NAME/VERSION or models:/NAME@ALIAS",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="seisbench: PATH.json + PATH.pt for seisbench's Model.load(PATH); onnx: one .onnx file",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="where to write: a base path for seisbench (.json and .pt are added), a file for onnx",
)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="upload the files to the model's training run and tag it seismic_ml.export.FORMAT",
)
def export(model_uri: str, fmt: str, out: Path, record: bool) -> None:
    """Write a logged model for use outside this project, checked against the model."""
    from seismic_ml.export import export_model
    from seismic_ml.tracking.loader import load_model
    from seismic_ml.tracking.store import require_store

    require_store()  # never creates an empty store
    trained = load_model(model_uri)
    exported = export_model(trained, fmt, out)
    files = " and ".join(str(p) for p in exported.files)
    click.echo(f"wrote {files} ({fmt} format; {exported.checked})", err=True)
    click.echo(f"load: {exported.loader}", err=True)
    if record:
        from seismic_ml.tracking.exports import record_export

        recorded = record_export(trained, exported)
        click.echo(
            f"recorded on run {trained.run_id}: tag {recorded.tag}, "
            f"artifacts {recorded.artifact_dir}",
            err=True,
        )
