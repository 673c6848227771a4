"""Write a benchmark run as JSON and as Markdown tables."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from common import Figure, Section

COLUMNS = ("figure", "median", "reference", "reference median", "ratio", "target", "met")


def number(value: float | None) -> str:
    """A figure for the table: 3 significant digits, '-' when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def met_cell(met: bool | None) -> str:
    """yes, **no** or -."""
    return "-" if met is None else ("yes" if met else "**no**")


def row(figure: Figure) -> str:
    """One table row."""
    name = f"{figure.name} ({figure.note})" if figure.note else figure.name
    ratio = "-" if figure.ratio is None else f"{figure.ratio:.2f}x"
    cells = [
        name,
        f"{number(figure.value)} {figure.unit}",
        figure.reference or "-",
        number(figure.reference_value) if figure.reference else "-",
        ratio,
        figure.target or "-",
        met_cell(figure.met),
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def section_markdown(section: Section) -> list[str]:
    """A section's heading, table and notes."""
    lines = [f"## {section.title}", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    lines += [row(f) for f in section.figures]
    lines += ["", *[f"- {note}" for note in section.notes], ""]
    return lines


def header_markdown(header: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The bullet list that says when and where the figures were measured."""
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    flags = ", ".join(header["cpu_flags"]) or "none of avx2, avx512f, avx512_bf16, amx_bf16"
    return [
        "# Benchmark results (`make bench`)",
        "",
        f"- date: {header['date']}; seismic_ml commit {header['seismic_ml_commit']}",
        f"- machine: {header['cpu']}, {header['cores']} cores, {header['memory_gb']} GiB, "
        f"torch threads {header['torch_threads']}, GPU: {header['gpu']}",
        f"- CPU flags that matter: {flags}",
        f"- versions: {versions}",
        f"- load average: {header['load_average_start']} at the start, "
        f"{header.get('load_average_end', '-')} at the end; "
        f"wall time {header.get('wall_s', 0):.0f} s; seisbench cache {header['seisbench_cache']}",
        f"- repeats {settings['repeats']}{' (--quick)' if settings['quick'] else ''}; "
        "each figure is the median over repeats, each ratio the median of per-repeat ratios "
        "of two sides measured back to back",
        "",
    ]


def finite(value: Any) -> Any:
    """The value with every NaN or infinity replaced by None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write(folder: Path, header: dict, settings: dict, sections: list[Section]) -> list[Path]:
    """bench.json and bench.md in folder; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"header": header, "settings": settings, "sections": [s.to_dict() for s in sections]}
    json_path, md_path = folder / "bench.json", folder / "bench.md"
    text = json.dumps(finite(data), indent=2, default=str, allow_nan=False)
    json_path.write_text(text + "\n")
    lines = header_markdown(header, settings)
    for section in sections:
        lines += section_markdown(section)
    md_path.write_text("\n".join(lines).rstrip() + "\n")
    return [json_path, md_path]
