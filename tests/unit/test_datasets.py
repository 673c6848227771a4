"""Dataset registry and task pipelines on real seisbench objects."""

from pathlib import Path

import numpy as np
import pytest
import seisbench.data as sbd
from click.testing import CliRunner

from seismic_ml.cli import cli
from seismic_ml.data import pipelines
from seismic_ml.data.registry import (
    get_split,
    load_dataset,
    phase_of_column,
    pick_columns,
)
from seismic_ml.errors import SeismicMLError


def write_dataset(folder: Path, rows: list[dict], n_samples: int = 6000) -> Path:
    """A small dataset in seisbench's format with the given metadata rows."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    with sbd.WaveformDataWriter(folder / "metadata.csv", folder / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": 100,
            "measurement": "velocity",
            "unit": "counts",
        }
        for i, row in enumerate(rows):
            data = rng.normal(size=(3, n_samples)).astype(np.float32)
            writer.add_trace({"trace_name": f"tr{i}", "trace_sampling_rate_hz": 100, **row}, data)
    return folder


def mixed_rows() -> list[dict]:
    """Pg/Sn columns, a trace without picks, one without magnitude, ML and MW types."""
    rows = []
    for i in range(12):
        rows.append(
            {
                "split": ["train", "dev", "test"][i % 3],
                "trace_Pg_arrival_sample": 1000.0 + 10 * i if i % 4 else np.nan,
                "trace_Sn_arrival_sample": 1800.0 + 10 * i if i % 4 else np.nan,
                "source_magnitude": 2.0 + 0.1 * i if i % 5 else np.nan,
                "source_magnitude_type": "ML" if i % 2 else "MW",
            }
        )
    return rows


@pytest.mark.parametrize(
    "column, phase",
    [
        ("trace_P_arrival_sample", "P"),
        ("trace_Pg_arrival_sample", "P"),
        ("trace_Pn_arrival_sample", "P"),
        ("trace_P1_arrival_sample", "P"),
        ("trace_p_arrival_sample", "P"),
        ("trace_sP_arrival_sample", "P"),
        ("trace_S_arrival_sample", "S"),
        ("trace_Sg_arrival_sample", "S"),
        ("trace_Sn_arrival_sample", "S"),
        ("trace_s_arrival_sample", "S"),
        ("trace_SmS_arrival_sample", "S"),
        ("trace_name", None),
        ("trace_coda_end_sample", None),
    ],
)
def test_pick_columns_map_to_p_or_s(column: str, phase: str | None) -> None:
    assert phase_of_column(column) == phase


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(SeismicMLError, match="unknown dataset 'NOPE'.*synthetic.*ETHZ"):
        load_dataset("NOPE")


def test_empty_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SeismicMLError, match="missing metadata.csv and waveforms.hdf5"):
        load_dataset(str(tmp_path))


def test_uncached_seisbench_dataset_offline_is_a_clear_error_without_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seisbench

    monkeypatch.setattr(seisbench, "cache_root", tmp_path)
    with pytest.raises(SeismicMLError) as info:
        load_dataset("ETHZ")
    message = str(info.value)
    assert "ETHZ" in message and "SEISBENCH_CACHE_ROOT" in message and "sbd.ETHZ()" in message
    assert not list(tmp_path.rglob("*.partial"))
    assert not (tmp_path / "datasets" / "ethz").exists()


def test_directory_dataset_loads_at_100_hz_zne(tmp_path: Path) -> None:
    dataset = load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    assert len(dataset) == 12
    assert dataset.get_waveforms(0).shape == (3, 6000)
    assert pick_columns(dataset.metadata) == {
        "trace_Pg_arrival_sample": "P",
        "trace_Sn_arrival_sample": "S",
    }


def test_synthetic_name_builds_into_the_cache_deterministically(tiny_dataset: str) -> None:
    first = load_dataset(tiny_dataset)
    again = load_dataset(tiny_dataset)
    assert len(first) == 200
    np.testing.assert_array_equal(first.get_waveforms(5), again.get_waveforms(5))
    other_seed = load_dataset("synthetic:200:1")
    assert not np.array_equal(first.get_waveforms(5), other_seed.get_waveforms(5))


def test_split_without_split_column_is_seeded(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "split"} for row in mixed_rows() * 3]
    dataset = load_dataset(str(write_dataset(tmp_path / "nosplit", rows)))
    sizes = [len(get_split(dataset, s)) for s in ("train", "dev", "test")]
    assert sum(sizes) == 36 and sizes[0] > sizes[2] > 0
    with pytest.raises(SeismicMLError, match="unknown split 'val'"):
        get_split(dataset, "val")


def test_magnitude_subset_drops_nan_magnitudes_and_missing_p(tmp_path: Path) -> None:
    dataset = load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    subset = pipelines.magnitude_subset(dataset)
    kept = subset.metadata
    assert kept["source_magnitude"].notna().all()
    assert kept["trace_Pg_arrival_sample"].notna().all()
    assert len(kept) == sum(1 for i in range(12) if i % 4 and i % 5)
    ml_only = pipelines.magnitude_subset(dataset, "ml")
    assert set(ml_only.metadata["source_magnitude_type"]) == {"ML"}
    with pytest.raises(SeismicMLError, match="of type MB"):
        pipelines.magnitude_subset(dataset, "MB")


def test_magnitude_windows_hold_p_inside_and_target_the_magnitude(tmp_path: Path) -> None:
    dataset = pipelines.magnitude_subset(
        load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    )
    generator = pipelines.magnitude_train_generator(dataset, windowlen=3001)
    for i in range(len(generator)):
        sample = generator[i]
        assert sample["X"].shape == (3, 3001)
        assert sample["y"] == pytest.approx(dataset.metadata["source_magnitude"].iloc[i])


def test_eval_windows_are_deterministic_and_place_p_in_range(tmp_path: Path) -> None:
    dataset = load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    a = pipelines.eval_windows(dataset.metadata, 3001, 7, pipelines.P_OFFSET_RANGE)
    b = pipelines.eval_windows(dataset.metadata, 3001, 7, pipelines.P_OFFSET_RANGE)
    assert a.equals(b)
    p = dataset.metadata["trace_Pg_arrival_sample"].to_numpy()
    has_p = np.isfinite(p)
    offset = p[has_p] - a["start_sample"].to_numpy()[has_p]
    assert ((offset >= 100) & (offset < 1000)).all()
    c = pipelines.eval_windows(dataset.metadata, 3001, 8, pipelines.P_OFFSET_RANGE)
    assert not a.equals(c)


def test_phase_labels_follow_the_model_order_and_sigma(tmp_path: Path) -> None:
    dataset = load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    for labels in ("NPS", "PSN"):
        generator = pipelines.phase_eval_generator(dataset, labels, 3001, sigma=20, seed=0)
        sample = generator[1]
        y = sample["y"]
        assert y.shape == (3, 3001)
        np.testing.assert_allclose(y.sum(axis=0), 1.0, atol=1e-5)
        p_curve = y[labels.index("P")]
        s_curve = y[labels.index("S")]
        assert p_curve.max() > 0.99 and s_curve.max() > 0.99
        assert (s_curve.argmax() - p_curve.argmax()) == 800
        width = (p_curve > np.exp(-0.5)).sum()
        assert 2 * 20 - 2 <= width <= 2 * 20 + 2


def test_trace_without_picks_is_labelled_noise(tmp_path: Path) -> None:
    dataset = load_dataset(str(write_dataset(tmp_path / "d", mixed_rows())))
    generator = pipelines.phase_eval_generator(dataset, "NPS", 3001, sigma=20, seed=0)
    noise = generator[0]["y"]
    np.testing.assert_allclose(noise[0], 1.0)
    assert np.abs(generator[0]["X"]).max() > 0


def test_metadata_without_pick_columns_is_a_clear_error(tmp_path: Path) -> None:
    rows = [{"split": "train", "source_magnitude": 2.0} for _ in range(4)]
    dataset = load_dataset(str(write_dataset(tmp_path / "nopicks", rows)))
    with pytest.raises(SeismicMLError, match="no pick columns"):
        pipelines.phase_train_generator(dataset, "NPS", 3001, 30)
    with pytest.raises(SeismicMLError, match="no P pick column"):
        pipelines.magnitude_subset(dataset)


def test_data_inspect_prints_summary_and_writes_figure(tiny_dataset: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "inspect", "--dataset", tiny_dataset,
                                      "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dataset synthetic:200: 200 traces" in result.output
    assert "split: train" in result.output and "magnitude:" in result.output
    assert "trace_P_arrival_sample -> P" in result.output
    figures = list(tmp_path.glob("*.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 10_000


def test_cli_unknown_dataset_is_one_line_and_nonzero(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "inspect", "--dataset", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: unknown dataset")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_every_data_option_reaches_the_task_datasets(tiny_dataset: str) -> None:
    """dataset, max_traces, label_sigma (phase) and magnitude_type (magnitude) each take effect."""
    import dataclasses

    from seismic_ml.config import DataConfig, with_model_defaults
    from seismic_ml.models.registry import build_model
    from seismic_ml.training.tasks import make_task
    from tests.conftest import tiny_run_config

    assert {f.name for f in dataclasses.fields(DataConfig)} == {
        "dataset",
        "max_traces",
        "label_sigma",
        "magnitude_type",
        "memory_budget",
    }  # fmt: skip  (memory_budget: tests/unit/test_batches.py)
    dataset = load_dataset(tiny_dataset)

    def task_sets(model_type: str, **data):
        cfg = with_model_defaults(tiny_run_config(model_type))
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))
        return make_task(cfg).datasets(dataset, build_model(cfg.model_type, cfg.model))

    full_train, _ = task_sets("phasenet")
    capped_train, capped_dev = task_sets("phasenet", max_traces=5)
    assert len(capped_train) == 5 and len(capped_dev) == 5 < len(full_train)

    def label_width(sigma: int) -> int:
        _, dev = task_sets("phasenet", label_sigma=sigma)
        y = next(y for y in dev[list(range(len(dev)))]["y"] if y[1].max() > 0.99)
        return int((y[1] > np.exp(-0.5)).sum())

    assert label_width(10) < label_width(40)

    train_all, _ = task_sets("amag_v2")
    train_ml, _ = task_sets("amag_v2", magnitude_type="ML")
    assert len(train_ml) == len(train_all) > 0
    with pytest.raises(SeismicMLError, match="of type MW"):
        task_sets("amag_v2", magnitude_type="MW")
