"""Per-phase pick thresholds tuned on the dev split: training logs them each epoch, the model
keeps the best epoch's in model_args.json, load_model exposes them, eval-phase scores the test
split at them and predict picks with them unless --threshold is given."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import mlflow
import numpy as np
import obspy
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml import model_files, pick_scores
from seismic_ml.cli.evaluation import eval_phase, predict
from seismic_ml.config import RunConfig
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import SeismicMLError
from seismic_ml.evaluation import metrics
from seismic_ml.models.configs import PhaseNetConfig
from seismic_ml.models.registry import build_model
from seismic_ml.tracking import model_io
from seismic_ml.tracking.loader import load_model
from seismic_ml.training.tasks import PhaseTask
from tests.conftest import tiny_run_config

PHASE_KEYS = ("p_threshold", "p_f1", "s_threshold", "s_f1")

# ---------------------------------------------------------------- the pure function

# windows: 0 and 1 picked within 0.5 s of their onset, 2 misses its onset by 1 s,
# 3 and 4 are picks in windows without an onset; 3 onsets in all.
ONSET = np.array([100.0, 100.0, 100.0, np.nan, np.nan])
PICK = np.array([105.0, 130.0, 200.0, 50.0, 60.0])
PROB = np.array([0.9, 0.95, 0.2, 0.8, 0.1])


def test_best_threshold_known_answer():
    # threshold 0.1: 5 picks, 2 hits -> F1 4/8; 0.2: 4/7; 0.8: 4/6; 0.9: 2 picks 2 hits -> 4/5;
    # 0.95: 1 pick 1 hit -> 2/4
    tuned = pick_scores.best_threshold(ONSET, PICK, PROB, 100.0)
    assert tuned == pick_scores.TunedThreshold(0.9, pytest.approx(0.8))
    # at 0.1 s tolerance window 1 (0.3 s off) misses: 0.95 -> 1 pick 0 hits; 0.9 -> 2/5 best
    tight = pick_scores.best_threshold(ONSET, PICK, PROB, 100.0, tolerance_s=0.1)
    assert tight.threshold == 0.9 and tight.f1 == pytest.approx(2 / 5)


def test_best_threshold_ties_go_to_the_lower_threshold():
    # hits at 0.3 and 0.9, false picks at 0.5 and 0.6: F1 2/3 at 0.3 and at 0.9, less between
    onset = np.array([10.0, 10.0, np.nan, np.nan])
    pick = np.array([10.0, 12.0, 500.0, 900.0])
    prob = np.array([0.9, 0.3, 0.5, 0.6])
    assert pick_scores.best_threshold(onset, pick, prob, 100.0).threshold == 0.3
    assert pick_scores.pick_scores(onset, pick, prob, 0.9, 0.5, 100.0)["f1"] == pytest.approx(2 / 3)


def test_best_threshold_without_any_hit_is_nan_and_a_peak_of_one_stays_below_one():
    miss = pick_scores.best_threshold([100.0, np.nan], [900.0, 5.0], [0.8, 0.7], 100.0)
    assert math.isnan(miss.threshold) and miss.f1 == 0.0
    empty = pick_scores.best_threshold([], [], [], 100.0)
    assert math.isnan(empty.threshold)
    certain = pick_scores.best_threshold([100.0, np.nan], [100.0, 5.0], [1.0, 0.7], 100.0)
    assert 0.7 < certain.threshold < 1.0 and certain.f1 == 1.0
    # NaN peaks (a phase the window has no curve for) are never picked
    partial = pick_scores.best_threshold([100.0, 100.0], [100.0, 100.0], [0.6, np.nan], 100.0)
    assert partial == pick_scores.TunedThreshold(0.6, pytest.approx(2 / 3))


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_is_the_maximum_of_pick_scores_over_every_threshold(seed: int):
    rng = np.random.default_rng(seed)
    n = 60
    onset = np.where(rng.random(n) < 0.7, rng.integers(500, 2500, n), np.nan)
    pick = np.where(rng.random(n) < 0.5, onset + rng.normal(0, 40, n), rng.integers(0, 3001, n))
    pick = np.nan_to_num(pick, nan=1000.0).round()
    prob = rng.choice(np.round(rng.uniform(0.01, 1.0, 20), 2), n)  # repeated peaks, 1.0 maybe
    tuned = pick_scores.best_threshold(onset, pick, prob, 100.0)
    grid = np.unique(np.concatenate([prob, np.linspace(0.001, 0.999, 999)]))  # all in (0, 1]
    f1 = np.array([pick_scores.pick_scores(onset, pick, prob, t, 0.5, 100.0)["f1"] for t in grid])
    assert tuned.f1 == pytest.approx(f1.max())
    lowest = grid[np.flatnonzero(np.isclose(f1, f1.max()))[0]]
    # the lowest peak that reaches the maximum: any threshold in (previous peak, it] picks alike
    assert tuned.threshold == pytest.approx(prob[prob >= lowest].min())


def test_tuned_pick_metrics_score_a_table_at_per_phase_thresholds():
    table = pd.DataFrame(
        {"true_p_sample": ONSET, "pred_p_sample": PICK, "pred_p_prob": PROB}
    ).assign(true_s_sample=ONSET, pred_s_sample=PICK, pred_s_prob=PROB)
    found = metrics.tuned_pick_metrics(table, 100.0, {"P": 0.9, "S": 0.1})
    assert found["p_threshold_tuned"] == 0.9 and found["s_threshold_tuned"] == 0.1
    assert found["p_f1_tuned_0.5s"] == pytest.approx(0.8)
    assert found["s_precision_tuned_0.5s"] == pytest.approx(2 / 5)
    assert found["s_recall_tuned_0.5s"] == pytest.approx(2 / 3)
    tuned = metrics.tune_thresholds(table, 100.0, "PS")
    assert tuned["P"] == tuned["S"] == pick_scores.best_threshold(ONSET, PICK, PROB, 100.0)


def test_phase_task_reports_threshold_and_f1_from_log_probabilities():
    # two windows of 1000 samples, labels NPS; P onsets at 300 and 600, S only in window 0 at 700
    targets = torch.zeros(2, 3, 1000)
    for window, channel, onset in ((0, 1, 300), (1, 1, 600), (0, 2, 700)):
        targets[window, channel] = torch.exp(-0.5 * ((torch.arange(1000) - onset) / 10.0) ** 2)
    probs = torch.full((2, 3, 1000), 0.01)
    probs[0, 1, 310], probs[1, 1, 100] = 0.6, 0.8  # P: a hit at 0.6, a miss (5 s off) at 0.8
    probs[0, 2, 700], probs[1, 2, 50] = 0.7, 0.2  # S: a hit at 0.7, a false pick at 0.2
    task = PhaseTask(tiny_run_config("phasenet"))
    found = task.metrics(torch.log(probs), targets)
    # P: 0.6 -> 2 picks, 1 hit, 2 onsets: F1 1/2; 0.8 -> 1 pick, no hit. S: 0.7 -> 1 of 1.
    assert found["p_threshold"] == pytest.approx(0.6) and found["p_f1"] == pytest.approx(0.5)
    assert found["s_threshold"] == pytest.approx(0.7) and found["s_f1"] == 1.0
    assert found["p_residual_median_s"] == pytest.approx(0.1)  # torch: the lower middle one


# ---------------------------------------------------------------- model_args.json


def test_model_args_hold_thresholds_only_when_tuned(tmp_path: Path):
    cfg = tiny_run_config("phasenet")
    model = build_model("phasenet", cfg.model)
    files = model_files.write_model_files(model, cfg, tmp_path / "a", {"P": 0.41, "S": 0.27})
    args = json.loads(files["model_args"].read_text())
    assert args["thresholds"] == {"P": 0.41, "S": 0.27}
    assert model_files.read_thresholds(files["model_args"]) == {"P": 0.41, "S": 0.27}
    plain = model_files.write_model_files(model, cfg, tmp_path / "b")
    assert "thresholds" not in json.loads(plain["model_args"].read_text())
    assert model_files.read_thresholds(plain["model_args"]) == {}


HOSTILE = [{"P": 7}, {"P": "0.3"}, {"P": 0.0}, {"S": 1.0}, {"P": True}, {"X": 0.3}, "0.3", [0.3]]


@pytest.mark.parametrize("value", HOSTILE, ids=[json.dumps(v) for v in HOSTILE])
def test_hostile_thresholds_are_refused_in_one_line(tmp_path: Path, value: object):
    path = tmp_path / model_files.ARGS_FILE
    path.write_text(json.dumps({"task": "phase", "thresholds": value}))
    with pytest.raises(SeismicMLError) as caught:
        model_files.read_thresholds(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model_args.json: thresholds must map")
    for junk in ('{"thresholds": {"P": NaN}}', "[1, 2]", "{not json"):
        path.write_text(junk)
        with pytest.raises(SeismicMLError, match="model_args.json"):
            model_files.read_thresholds(path)


# ---------------------------------------------------------------- a trained picker


@pytest.fixture(scope="module")
def trained(tiny_dataset: str) -> dict:
    """A phasenet trained just enough (fp32, seeded) to pick S, and often P, within 0.5 s."""
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    cfg = tiny_run_config(
        "phasenet",
        epochs=4,
        max_steps_per_epoch=8,
        batch_size=16,
        learning_rate=1e-2,
        precision="fp32",
    )
    result = train(cfg, MlflowRecorder("pick-thresholds"))
    return {"result": result, "run_id": result.run_id, "cfg": cfg}


def _best_epoch_thresholds(run_id: str) -> dict[str, float]:
    client = MlflowClient()
    best = int(client.get_run(run_id).data.metrics["best/epoch"])
    found = {}
    for phase in "PS":
        history = client.get_metric_history(run_id, f"val/{phase.lower()}_threshold")
        value = next(m.value for m in history if m.step == best)
        if 0 < value < 1:
            found[phase] = value
    return found


def test_training_logs_thresholds_per_epoch_and_keeps_the_best_epochs(trained):
    client = MlflowClient()
    for key in PHASE_KEYS:
        steps = [m.step for m in client.get_metric_history(trained["run_id"], f"val/{key}")]
        assert sorted(steps) == [1, 2, 3, 4], key
    expected = _best_epoch_thresholds(trained["run_id"])
    assert "S" in expected  # the picker learnt S within 0.5 s on the dev split
    logged = trained["result"].model_uri  # the one copy: the logged model's artifacts
    local = Path(mlflow.artifacts.download_artifacts(logged)) / "artifacts" / "model_args.json"
    assert json.loads(local.read_text())["thresholds"] == expected
    assert mlflow.models.get_model_info(logged).metadata["thresholds"] == expected
    assert load_model(trained["run_id"]).thresholds == expected


def _eval(*args: str):
    return CliRunner().invoke(eval_phase, list(args))


def _eval_run(output: str) -> mlflow.entities.Run:
    return MlflowClient().get_run(output.split("evaluation run: ")[1].split()[0])


def _predictions(run_id: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/predictions.csv")))


def test_eval_phase_scores_the_test_split_at_the_models_thresholds(trained):
    result = _eval("--run-id", trained["run_id"])
    assert result.exit_code == 0, result.output
    run = _eval_run(result.output)
    m, thresholds = run.data.metrics, load_model(trained["run_id"]).thresholds
    assert run.data.params["eval.tuned_thresholds_from"] == "model"
    table = _predictions(run.info.run_id)
    for phase, threshold in thresholds.items():
        key = phase.lower()
        assert m[f"test/{key}_threshold_tuned"] == pytest.approx(threshold)
        at = pick_scores.pick_scores(
            table[f"true_{key}_sample"],
            table[f"pred_{key}_sample"],
            table[f"pred_{key}_prob"],
            threshold,
            0.5,
            100.0,
        )
        for name in ("precision", "recall", "f1"):
            assert m[f"test/{key}_{name}_tuned_0.5s"] == pytest.approx(at[name])
        assert f"test/{key}_f1_0.5s" in m  # the fixed-threshold scores stay
    shown = ", ".join(f"{p} {t:.3g}" for p, t in sorted(thresholds.items()))
    assert f"pick thresholds: fixed 0.3; tuned {shown} (the model's" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "model", "tuned", "baseline"]
    row = next(line for line in result.output.splitlines() if line.startswith("s_f1_0.5s "))
    assert float(row.split()[2]) == pytest.approx(m["test/s_f1_tuned_0.5s"], abs=5e-4)


@pytest.fixture(scope="module")
def untuned_run(trained, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The trained weights logged as a run from before thresholds were stored."""
    cfg, model = trained["cfg"], trained["result"].model
    mlflow.set_experiment("pick-thresholds")
    with mlflow.start_run() as run:
        mlflow.log_params(cfg.to_params())
        folder = tmp_path_factory.mktemp("untuned")
        model_files.write_model_files(model, cfg, folder)
        mlflow.log_artifacts(str(folder), model_files.WEIGHTS_DIR)
    return run.info.run_id


def test_eval_phase_tunes_on_the_dev_split_for_a_model_without_thresholds(untuned_run):
    assert load_model(untuned_run).thresholds == {}
    on_dev = _eval("--run-id", untuned_run, "--split", "dev")
    assert on_dev.exit_code == 0, on_dev.output
    assert "the model has no tuned pick thresholds: tuned them on the dev split" in on_dev.output
    dev_run = _eval_run(on_dev.output)
    assert dev_run.data.params["eval.tuned_thresholds_from"] == "dev"
    dev, m = _predictions(dev_run.info.run_id), dev_run.data.metrics
    columns = ("true_s_sample", "pred_s_sample", "pred_s_prob")
    best = pick_scores.best_threshold(*(dev[c] for c in columns), 100.0)
    assert m["test/s_threshold_tuned"] == pytest.approx(best.threshold)
    assert m["test/s_f1_tuned_0.5s"] == pytest.approx(best.f1)
    assert best.f1 >= m["test/s_f1_0.5s"]  # no threshold, the fixed 0.3 included, does better
    on_test = _eval("--run-id", untuned_run)
    assert on_test.exit_code == 0, on_test.output
    test_metrics = _eval_run(on_test.output).data.metrics
    assert test_metrics["test/s_threshold_tuned"] == pytest.approx(best.threshold)


# ---------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic earthquake trace at one station, as miniSEED."""
    dataset = load_dataset("synthetic:200")
    row = int(np.flatnonzero(dataset.metadata["trace_category"] == "earthquake")[0])
    waveform, meta = dataset.get_sample(row)
    start = obspy.UTCDateTime(meta["trace_start_time"])
    stream = obspy.Stream()
    for data, comp in zip(waveform, "ZNE"):
        header = {"network": "SY", "station": meta["station_code"], "channel": f"HH{comp}"}
        header.update({"sampling_rate": 100.0, "starttime": start})
        stream += obspy.Trace(data.astype(np.int32), header=header)
    path = tmp_path_factory.mktemp("thresholds") / "event.mseed"
    stream.write(str(path), format="MSEED")
    return path


def _logged_picker(folder: Path, thresholds: dict | None, hostile: object = None) -> str:
    """An untrained phasenet (P and S peaks near 1/3) logged with the given thresholds."""
    torch.manual_seed(0)
    cfg = RunConfig("phasenet", PhaseNetConfig())
    model = build_model("phasenet", cfg.model).eval()
    mlflow.set_experiment("pick-thresholds")
    with mlflow.start_run() as run:
        mlflow.log_params(cfg.to_params())
        files = model_files.write_model_files(model, cfg, folder, thresholds)
        if hostile is not None:
            args = json.loads(files["model_args"].read_text())
            files["model_args"].write_text(json.dumps({**args, "thresholds": hostile}))
        mlflow.log_artifacts(str(folder), model_files.WEIGHTS_DIR)
    return run.info.run_id


def _predict(*args: object):
    return CliRunner().invoke(predict, [str(a) for a in args])


def test_predict_picks_at_the_models_thresholds_unless_threshold_is_given(event, tmp_path):
    run_id = _logged_picker(tmp_path, {"P": 0.05, "S": 0.9})
    tuned = _predict("--model-uri", f"runs:/{run_id}/model", event)
    assert tuned.exit_code == 0, tuned.output
    assert "note: pick thresholds: P 0.05, S 0.9 (tuned on the model's dev split)" in tuned.stderr
    picks = pd.read_csv(io.StringIO(tuned.stdout))
    assert set(picks["phase"]) == {"P"}  # no S peak of an untrained picker reaches 0.9
    assert picks["probability"].min() >= 0.05
    given = _predict("--model-uri", f"runs:/{run_id}/model", event, "--threshold", 0.05)
    assert given.exit_code == 0, given.output
    assert "note: pick thresholds: P 0.05, S 0.05 (--threshold)" in given.stderr
    assert set(pd.read_csv(io.StringIO(given.stdout))["phase"]) == {"P", "S"}


def test_predict_with_a_model_without_thresholds_says_it_uses_the_default(event, tmp_path):
    run_id = _logged_picker(tmp_path, None)
    result = _predict("--model-uri", run_id, event)
    assert result.exit_code == 0, result.output
    assert "pick thresholds: P 0.3, S 0.3 (default: the model has none tuned)" in result.stderr


def test_predict_with_the_trained_picker_uses_its_best_epoch_thresholds(trained, event):
    result = _predict("--model-uri", trained["run_id"], event)
    assert result.exit_code == 0, result.output
    expected = _best_epoch_thresholds(trained["run_id"])
    picks = pd.read_csv(io.StringIO(result.stdout))
    for phase, threshold in expected.items():
        assert f"{phase} {threshold:.3g}" in result.stderr
        assert (picks.loc[picks["phase"] == phase, "probability"] >= round(threshold, 4)).all()


@pytest.mark.parametrize("hostile", [{"P": 7}, {"S": "high"}, "0.3"], ids=["7", "string", "flat"])
def test_predict_refuses_a_model_with_hostile_thresholds_in_one_line(
    event, tmp_path, hostile, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # as `seismic-ml` sets
    run_id = _logged_picker(tmp_path, None, hostile)
    result = _predict("--model-uri", run_id, event, "--threshold", 0.5)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "model_args.json: thresholds must map P and/or S" in lines[0]
    assert "Traceback" not in result.output
    with pytest.raises(SeismicMLError, match="between 0 and 1"):
        load_model(run_id)


def test_magnitude_models_have_no_thresholds(tiny_dataset: str):
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    result = train(tiny_run_config("amag_v2"), MlflowRecorder("pick-thresholds", log_model=False))
    args = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/weights/model_args.json"))
    assert "thresholds" not in args
    assert load_model(result.run_id).thresholds == {}
    assert not [k for k in result.history[0] if "threshold" in k]
    assert RunConfig.from_params(model_io.get_run(result.run_id).data.params).task == "magnitude"
