"""One name per dataset: every spelling of the same data is recorded under one canonical name."""

from __future__ import annotations

import pytest

from seismic_ml.cli.click_options import run_config_from_options
from seismic_ml.data.registry import canonical_name


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("synthetic", "synthetic:2000"),
        ("synthetic:2000", "synthetic:2000"),
        ("synthetic:2000:0", "synthetic:2000"),
        ("synthetic:200:3", "synthetic:200:3"),
        ("synthetic_mixed", "synthetic-mixed:2000"),
        ("synthetic-mixed:500:0", "synthetic-mixed:500"),
        ("ethz", "ETHZ"),
        ("/data/my_set", "/data/my_set"),
    ],
)
def test_every_spelling_has_one_canonical_name(given: str, recorded: str) -> None:
    assert canonical_name(given) == recorded
    assert canonical_name(recorded) == recorded


def test_the_cli_config_records_the_canonical_name_also_by_default() -> None:
    assert run_config_from_options("amag_v2", {}).data.dataset == "synthetic:2000"
    given = run_config_from_options("amag_v2", {"dataset": "synthetic:200:0"})
    assert given.data.dataset == "synthetic:200"
