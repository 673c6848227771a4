"""Every option value is checked against its stated range before anything runs, and a network's
size is bounded wherever its config comes from (options, a run's params, a registered model)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import psutil
import pytest
import torch
from click.testing import CliRunner
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from seismic_ml.cli import cli
from seismic_ml.config import DataConfig, RunConfig, TrainConfig, check_device_present
from seismic_ml.config_fields import allowed_text, field_problem, field_type
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models import registry
from seismic_ml.models.configs import AmagV2Config
from seismic_ml.models.registry import MODELS, build_model, count_parameters, get_spec
from seismic_ml.tuning.space import build_search_space

EXPERIMENT = "option-values-never-created"

# (command line after the subcommand, the one line expected on stderr after "Error: ")
BAD_VALUES = [
    (["--epochs", "0"], "--epochs=0 is outside its range 1 <= x <= 10000"),
    (["--epochs", "-1"], "--epochs=-1 is outside its range 1 <= x <= 10000"),
    (["--learning-rate", "nan"], "--learning-rate=nan is outside its range 0 < x <= 10"),
    (["--learning-rate", "inf"], "--learning-rate=inf is outside its range 0 < x <= 10"),
    (["--learning-rate", "-inf"], "--learning-rate=-inf is outside its range 0 < x <= 10"),
    (["--learning-rate", "0"], "--learning-rate=0.0 is outside its range 0 < x <= 10"),
    (["--batch-size", "0"], "--batch-size=0 is outside its range 1 <= x <= 16384"),
    (["--warmup-epochs", "nan"], "--warmup-epochs=nan is outside its range 0 <= x <= 10000"),
    (["--weight-decay", "-1"], "--weight-decay=-1.0 is outside its range 0 <= x <= 1"),
    (["--weight-decay", "nan"], "--weight-decay=nan is outside its range 0 <= x <= 1"),
    (
        ["--scheduler-patience", "-3"],
        "--scheduler-patience=-3 is outside its range 0 <= x <= 10000",
    ),
    (["--scheduler-factor", "1"], "--scheduler-factor=1.0 is outside its range 0 < x < 1"),
    (["--scheduler-threshold", "inf"], "--scheduler-threshold=inf is outside its range 0 <= x < 1"),
    (["--early-stopping-patience", "-1"], "--early-stopping-patience=-1 is outside its range"),
    (["--grad-clip", "-1"], "--grad-clip=-1.0 is outside its range 0 <= x <= 1000000"),
    (["--grad-clip", "nan"], "--grad-clip=nan is outside its range 0 <= x <= 1000000"),
    (["--seed", "-1"], "--seed=-1 is outside its range 0 <= x <= 4294967295"),
    (["--seed", "4294967296"], "--seed=4294967296 is outside its range 0 <= x <= 4294967295"),
    (["--device", "nonsense"], "--device='nonsense' is not auto, cpu, cuda, cuda:N or mps"),
    (["--device", "cuda:x"], "--device='cuda:x' is not auto, cpu, cuda, cuda:N or mps"),
    (["--device", "cuda:99"], "--device='cuda:99' is not on this machine: it has "),
    (["--num-workers", "-1"], "--num-workers=-1 is outside its range 0 <= x <= 256"),
    (["--max-steps-per-epoch", "-3"], "--max-steps-per-epoch=-3 is outside its range 0 <= x"),
    (["--max-traces", "-5"], "--max-traces=-5 is outside its range 0 <= x <= 100000000"),
    (["--label-sigma", "0"], "--label-sigma=0 is outside its range 1 <= x <= 1000"),
    (["--memory-budget", "150%"], "--memory-budget='150%' is not a memory size"),
    (["--filter-factor", "0"], "--filter-factor=0 is outside its range 1 <= x <= 16"),
    (["--filter-factor", "100000"], "--filter-factor=100000 is outside its range 1 <= x <= 16"),
    (["--lstm-hidden", "100000000"], "--lstm-hidden=100000000 is outside its range 1 <= x <= 2048"),
    (["--lstm-layers", "9"], "--lstm-layers=9 is outside its range 1 <= x <= 8"),
    (["--attention-heads", "3"], "--attention-heads=3 must divide 2 * --lstm-hidden = 256"),
    (["--dropout", "1"], "--dropout=1.0 is outside its range 0 <= x < 1"),
    (["--dropout", "nan"], "--dropout=nan is outside its range 0 <= x < 1"),
    (
        ["--lstm-hidden", "2048", "--lstm-layers", "8"],
        "model amag_v2 with lstm_hidden=2048, lstm_layers=8 would have 808,439,074 parameters "
        "(3.2 GB of float32 weights), over the limit of ",
    ),
    (
        ["--model-type", "eqtransformer_mag", "--transformer-d-model", "100"],
        "--transformer-nhead=8 must divide --transformer-d-model = 100",
    ),
    (["--model-type", "eqtransformer_mag", "--cnn-blocks", "0"], "--cnn-blocks=0 is outside"),
]
PHASE_BAD_VALUES = [
    (["--model-type", "phasenet_lstm", "--lstm-hidden-size", "-1"], "--lstm-hidden-size=-1 is"),
    (["--model-type", "phasenet_lstm", "--lstm-num-layers", "0"], "--lstm-num-layers=0 is"),
    (["--model-type", "phasenet_conv_lstm", "--convlstm-kernel-size", "4"], "=4 is not odd"),
    (["--model-type", "phasenet_conv_lstm", "--convlstm-chunk", "13"], "=13 is outside"),
    (["--model-type", "phasenet_conv_lstm", "--convlstm-hidden", "0"], "=0 is outside"),
    (["--filter-factor", "17"], "--filter-factor=17 is outside its range 1 <= x <= 16"),
    (["--learning-rate", "nan"], "--learning-rate=nan is outside its range 0 < x <= 10"),
]


def run_count() -> int:
    """Runs in the test store, in every experiment, deleted ones included."""
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return len(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=50_000))


def refused_in_one_line(args: list[str]) -> str:
    """Invoke the CLI; assert exit 2, one line, no traceback, no run; return that line."""
    before = run_count()
    result = CliRunner().invoke(cli, [*args, "--experiment", EXPERIMENT])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.strip() == lines[0]
    assert run_count() == before
    assert MlflowClient().get_experiment_by_name(EXPERIMENT) is None
    return lines[0]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=lambda v: " ".join(v)[:40])
def test_bad_training_value_is_one_line_exit_2_and_no_run(args: list[str], message: str) -> None:
    line = refused_in_one_line(["train-mag", *args])
    assert line.startswith(f"Error: {message}"), line


@pytest.mark.parametrize(("args", "message"), PHASE_BAD_VALUES, ids=lambda v: " ".join(v)[:40])
def test_bad_phase_training_value_is_one_line_exit_2(args: list[str], message: str) -> None:
    line = refused_in_one_line(["train-phase", *args])
    assert message in line, line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_absent_cuda_device_is_a_usage_error(device: str) -> None:
    line = refused_in_one_line(["train-mag", "--device", device])
    assert f"--device='{device}' is not on this machine: it has no CUDA device" in line


def test_cuda_index_past_the_last_device_names_the_ones_there(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device_present("cuda:1")
    with pytest.raises(BadOptionValue, match="it has only cuda:0 to cuda:1; use auto"):
        check_device_present("cuda:2")


def test_bad_tune_value_is_refused_before_any_study_or_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--model-type", "amag_v2", "--learning-rate", "nan", "--n-trials", "1"]
    line = refused_in_one_line(args)
    assert line == "Error: --learning-rate=nan is outside its range 0 < x <= 10"
    assert not (tmp_path / "optuna.db").exists()


def test_tune_task_and_model_type_that_disagree_is_a_usage_error() -> None:
    line = refused_in_one_line(["tune", "--task", "phase", "--model-type", "amag_v2"])
    assert line == "Error: --model-type='amag_v2' is a magnitude model, not --task='phase'"


def test_tune_without_task_or_model_type_is_a_usage_error() -> None:
    line = refused_in_one_line(["tune"])
    assert line == "Error: --task and --model-type: give --task (phase or mag) or --model-type"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "nan"], "--timeout=nan is outside its range 0 <= x <= 31536000"),
        (["--n-trials", "-1"], "--n-trials=-1 is outside its range 0 <= x <= 1000000"),
        (["--max-epochs-per-trial", "0"], "--max-epochs-per-trial=0 is outside its range"),
        (["--storage-outage-limit", "2d"], "--storage-outage-limit=172800.0 is outside its"),
        (["--pruner-warmup-steps", "10001"], "--pruner-warmup-steps=10001 is outside its"),
    ],
)
def test_bad_tune_option_is_one_line_exit_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = refused_in_one_line(["tune", "--model-type", "amag_v2", *args])
    assert line.startswith(f"Error: {message}"), line
    assert not (tmp_path / "optuna.db").exists()


def config_classes() -> list[type]:
    """Every config class whose fields become options."""
    return [DataConfig, TrainConfig, *(spec.config_cls for spec in MODELS.values())]


FREE_TEXT = {"dataset", "magnitude_type"}  # names a data registry or a metadata value checks


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_every_option_states_what_it_accepts_and_its_default_fits(cls: type) -> None:
    for f in dataclasses.fields(cls):
        kind = field_type(cls, f.name)
        if kind in (int, float):
            assert f.metadata.get("range") is not None, f"{cls.__name__}.{f.name}"
        elif kind is str and f.name not in FREE_TEXT:
            assert allowed_text(f.metadata), f"{cls.__name__}.{f.name}"
        assert field_problem(cls, f.name, f.default) is None, f.name
    cls().validate()


def test_a_shared_option_accepts_the_same_values_in_every_model() -> None:
    seen: dict[str, str] = {}
    for cls in config_classes():
        for f in dataclasses.fields(cls):
            assert seen.setdefault(f.name, allowed_text(f.metadata)) == allowed_text(f.metadata)


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_model_defaults_and_search_spaces_lie_inside_the_ranges(model_type: str) -> None:
    spec = get_spec(model_type)
    for name, value in spec.train_defaults.items():
        assert field_problem(TrainConfig, name, value) is None, name
    for name, param in build_search_space(model_type).params.items():
        cls = {"model": spec.config_cls, "data": DataConfig, "train": TrainConfig}[param.section]
        values = param.choices or (param.low, param.high)
        kind = field_type(cls, name)
        for value in values:
            assert field_problem(cls, name, kind(value)) is None, (name, value)


@pytest.mark.parametrize("command", ["train-mag", "train-phase", "tune"])
def test_help_shows_every_options_range(command: str) -> None:
    ctx = cli.commands[command].make_context(command, [], resilient_parsing=True)
    fields = {
        f.name: allowed_text(f.metadata)
        for cls in config_classes()
        for f in dataclasses.fields(cls)
        if allowed_text(f.metadata) and not f.metadata.get("choices")
    }
    shown = 0
    for param in cli.commands[command].params:
        if param.name in fields:
            assert fields[param.name] in param.get_help_record(ctx)[1], param.name
            shown += 1
    assert shown >= 20
    text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
    assert "[0 < x <= 10" in text and "[0 <= x <= 4294967295" in text


def test_help_stays_light() -> None:
    """The ranges come from the configs alone: --help still imports no torch (fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom seismic_ml.cli.main import cli\n"
        "cli.main(['train-mag', '--help'], standalone_mode=False)\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


ABSURD = AmagV2Config(filter_factor=16, lstm_hidden=2048, lstm_layers=8, attention_heads=64)


def test_too_large_network_is_refused_in_one_line_quickly_without_allocating(monkeypatch) -> None:
    memory = psutil.virtual_memory()._replace(available=64 * 2**30)  # the limit is the project's
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    build_model("amag_v2", AmagV2Config())  # the module is imported: time only the refusal
    rss = psutil.Process().memory_info().rss
    start = time.perf_counter()
    with pytest.raises(SeismicMLError) as info:
        build_model("amag_v2", ABSURD)
    elapsed = time.perf_counter() - start
    grown = psutil.Process().memory_info().rss - rss
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "model amag_v2 with filter_factor=16, lstm_hidden=2048, lstm_layers=8, attention_heads=64 "
        "would have "
    )
    assert message.endswith(": refusing to build it")
    assert "over the limit of 200,000,000 parameters (0.8 GB, the project's limit)" in message
    assert elapsed < 1.0 and grown < 50 * 2**20, (elapsed, grown)


def test_parameter_count_needs_no_memory_even_for_values_past_the_ranges() -> None:
    """The meta build alone: filter_factor=100000 counts quadrillions of parameters in no RAM."""
    rss = psutil.Process().memory_info().rss
    count = count_parameters(get_spec("amag_v2"), AmagV2Config(filter_factor=100_000))
    assert count > 10**15
    assert psutil.Process().memory_info().rss - rss < 50 * 2**20


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_counted_parameters_match_the_built_network_and_leave_the_seed_alone(
    model_type: str,
) -> None:
    spec = get_spec(model_type)
    torch.manual_seed(0)
    plain = spec.build(spec.config_cls())
    torch.manual_seed(0)
    counted = count_parameters(spec, spec.config_cls())
    built = build_model(model_type, spec.config_cls())
    assert counted == sum(p.numel() for p in built.parameters())
    for (name, a), b in zip(plain.state_dict().items(), built.state_dict().values()):
        assert torch.equal(a, b), name


def test_little_free_memory_lowers_the_limit(monkeypatch) -> None:
    memory = psutil.virtual_memory()._replace(available=16 * 2**20)  # a quarter: 2**20 floats
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    assert registry.parameter_limit() == (2**20, "25% of the memory available")
    with pytest.raises(SeismicMLError, match=r"over the limit of 1,048,576 parameters \(0.0 GB"):
        build_model("amag_v2", AmagV2Config())  # 1,176,610 parameters
    build_model("phasenet", get_spec("phasenet").config_cls())  # 268,443


def valid_params(model_type: str = "amag_v2") -> dict[str, str]:
    """The params a healthy run of model_type logs."""
    return RunConfig(model_type, get_spec(model_type).config_cls()).to_params()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("model.filter_factor", "100000", "model.filter_factor=100000 is outside its range 1 <= x"),
        ("model.lstm_hidden", "-1", "model.lstm_hidden=-1 is outside its range 1 <= x <= 2048"),
        ("train.learning_rate", "nan", "train.learning_rate=nan is outside its range 0 < x <= 10"),
        ("train.seed", "-1", "train.seed=-1 is outside its range"),
        ("train.device", "nonsense", "train.device='nonsense' is not auto, cpu, cuda"),
        ("data.max_traces", "-5", "data.max_traces=-5 is outside its range"),
        ("model.attention_heads", "3", "model.attention_heads=3 must divide 2 * model.lstm_hidden"),
        ("model.lstm_layers", "many", "model.lstm_layers: cannot read 'many' as int"),
    ],
)
def test_hostile_params_are_refused_in_one_line(key: str, value: str, message: str) -> None:
    with pytest.raises(SeismicMLError) as info:
        RunConfig.from_params({**valid_params(), key: value})
    assert str(info.value).startswith(f"the run's params are refused: {message}"), info.value
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, BadOptionValue)  # the store's fault, not the command line's


def test_a_run_of_in_range_sizes_that_multiply_up_is_refused_by_every_loader(
    tmp_path: Path,
) -> None:
    """A stored run whose params each fit but whose network would not: load_model and eval."""
    from seismic_ml.model_files import load_model_files
    from seismic_ml.tracking.loader import load_model

    params = RunConfig("amag_v2", ABSURD).to_params()
    client = MlflowClient()
    experiment = client.create_experiment("option-values-hostile")
    run_id = client.create_run(experiment).info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"never read")
    client.log_artifact(run_id, str(weights), "weights")
    client.set_terminated(run_id)
    with pytest.raises(SeismicMLError, match="refusing to build it"):
        load_model(run_id)
    args = {"task": "magnitude", "model_type": "amag_v2", "model_args": dataclasses.asdict(ABSURD)}
    (tmp_path / "model_args.json").write_text(json.dumps(args))
    with pytest.raises(SeismicMLError, match="refusing to build it"):
        load_model_files(tmp_path / "model_args.json", weights)  # what the pyfunc does
    result = CliRunner().invoke(cli, ["eval-mag", "--run-id", run_id])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].endswith("refusing to build it"), result.output


def test_every_hostile_field_type_is_refused_by_the_python_api() -> None:
    """Types as well as ranges: a bool is no count, a string no number."""
    for bad in ({"epochs": True}, {"epochs": "3"}, {"learning_rate": "1e-3"}, {"seed": 1.5}):
        with pytest.raises(BadOptionValue, match=next(iter(bad)).replace("_", "-")):
            TrainConfig(**bad).validate()
