"""Model architectures: shapes, gradients, round trips, options, validation, losses."""

from __future__ import annotations

import dataclasses
import io
import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import obspy
import pytest
import seisbench.models as sbm
import seisbench.util as sbu
import torch

from seismic_ml.errors import SeismicMLError
from seismic_ml.models import phasenet_conv_lstm
from seismic_ml.models.configs import (
    AmagV2Config,
    EQTransformerMagConfig,
    PhaseNetConfig,
    PhaseNetConvLSTMConfig,
    PhaseNetLSTMConfig,
    PhaseNetMagConfig,
)
from seismic_ml.models.magnitude import AmplitudeNormalizer, magnitude_loss, split_output
from seismic_ml.models.registry import MODELS, build_model, get_spec, model_types

PHASE_MODELS = model_types("phase")
MAG_MODELS = model_types("magnitude")
MODELS_TABLE = Path(__file__).parents[2] / "README.md"

# Small but non-default-shaped configs that keep the shape/gradient/round-trip tests fast.
SMALL = {
    "phasenet": PhaseNetConfig(),
    "phasenet_lstm": PhaseNetLSTMConfig(lstm_hidden_size=16),
    "phasenet_conv_lstm": PhaseNetConvLSTMConfig(convlstm_hidden=8),
    "phasenet_mag": PhaseNetMagConfig(),
    "eqtransformer_mag": EQTransformerMagConfig(
        transformer_d_model=32, transformer_nhead=4, transformer_dim_feedforward=64
    ),
    "amag_v2": AmagV2Config(lstm_hidden=16, attention_heads=2),
}


def build(model_type: str, config, seed: int = 0) -> torch.nn.Module:
    """Build with a fixed seed so two builds of one config have the same weights."""
    torch.manual_seed(seed)
    return build_model(model_type, config)


def waveforms(model: torch.nn.Module, batch: int = 2, amplitude: float = 1.0) -> torch.Tensor:
    """A fixed random batch of the model's input length (counts-like when amplitude is large)."""
    generator = torch.Generator().manual_seed(123)
    return amplitude * torch.randn(batch, 3, model.in_samples, generator=generator)


def amplitude_for(model_type: str) -> float:
    """Magnitude models see raw counts; phase models normalised input."""
    return 1000.0 if get_spec(model_type).task == "magnitude" else 1.0


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small(model_type: str, **changes):
    return dataclasses.replace(SMALL[model_type], **changes)


# --- forward, backward, round trips -------------------------------------------------------


@pytest.mark.parametrize("model_type", list(MODELS))
def test_forward_backward_shapes_and_finite_grads(model_type):
    model = build(model_type, SMALL[model_type])
    x = waveforms(model, amplitude=amplitude_for(model_type))
    out = model(x)
    if model_type in PHASE_MODELS:
        assert out.shape == (2, 3, 3001)
        assert torch.allclose(out.sum(dim=1), torch.ones(2, 3001), atol=1e-5)
        loss = -(out.clamp_min(1e-8).log()).mean()
    else:
        assert out.shape == (2,)
        loss = magnitude_loss("mse", out, torch.tensor([2.0, 3.0]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("model_type", MAG_MODELS)
def test_gaussian_nll_models_output_magnitude_and_log_sigma(model_type):
    model = build(model_type, small(model_type, loss="gaussian_nll"))
    assert model.predicts_uncertainty
    out = model(waveforms(model, amplitude=1000.0))
    assert out.shape == (2, 2)
    magnitude_loss("gaussian_nll", out, torch.tensor([1.0, 4.0])).backward()
    mags, sigma = split_output(out)
    assert mags.shape == (2,) and (sigma > 0).all()


@pytest.mark.parametrize("model_type", MAG_MODELS)
def test_magnitude_model_attributes(model_type):
    model = build(model_type, SMALL[model_type])
    assert model.sampling_rate == 100.0
    assert model.component_order == "ZNE"
    assert model.predicts_uncertainty is False
    assert model.in_samples == (3000 if model_type == "eqtransformer_mag" else 3001)


def test_eqtransformer_mag_attributes():
    model = build("eqtransformer_mag", SMALL["eqtransformer_mag"])
    assert (model.phases, model.n_class, model.in_samples) == ("PS", 1, 3000)


@pytest.mark.parametrize("model_type", list(MODELS))
def test_state_dict_and_pickle_round_trip(model_type):
    config = SMALL[model_type]
    model = build(model_type, config, seed=0)
    x = waveforms(model, amplitude=amplitude_for(model_type))
    model.train()
    model(x)  # moves the BatchNorm running statistics away from their initial values
    model.eval()
    fresh = build(model_type, config, seed=1)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    unpickled = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(fresh(x), expected)
        assert torch.equal(unpickled(x), expected)


@pytest.mark.parametrize(
    "model_type, config",
    [
        ("phasenet", PhaseNetConfig(filter_factor=2)),
        ("phasenet_lstm", PhaseNetLSTMConfig(lstm_hidden_size=8, lstm_bidirectional=False)),
        ("phasenet_conv_lstm", PhaseNetConvLSTMConfig(convlstm_hidden=8, convlstm_chunk=4)),
    ],
)
def test_phase_model_seisbench_save_load(model_type, config, tmp_path):
    model = build(model_type, config).eval()
    model.save(tmp_path)
    loaded = type(model).load(tmp_path).eval()
    x = waveforms(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_phasenet_is_seisbench_phasenet():
    reference = sbm.PhaseNet().eval()
    model = build("phasenet", PhaseNetConfig()).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = waveforms(model)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        assert torch.equal(model(x, logits=True), reference(x, logits=True))
    assert model.labels == "NPS" and model.in_samples == 3001 and model.sampling_rate == 100


# --- seisbench annotate / classify ---------------------------------------------------------


def synthetic_stream(seconds: int = 60, rate: float = 100.0) -> obspy.Stream:
    rng = np.random.default_rng(0)
    start = obspy.UTCDateTime(2024, 1, 1)
    traces = [
        obspy.Trace(
            rng.normal(size=int(seconds * rate)).astype(np.float32),
            header={"network": "XX", "station": "STA", "channel": f"HH{c}", "sampling_rate": rate},
        )
        for c in "ZNE"
    ]
    for trace in traces:
        trace.stats.starttime = start
    return obspy.Stream(traces)


@pytest.mark.parametrize("model_type", PHASE_MODELS)
def test_annotate_and_classify_on_stream(model_type):
    model = build(model_type, SMALL[model_type])
    stream = synthetic_stream()
    annotations = model.annotate(stream)
    name = type(model).__name__
    assert sorted(tr.stats.channel for tr in annotations) == [f"{name}_{p}" for p in "NPS"]
    for trace in annotations:
        assert trace.stats.sampling_rate == 100.0
        assert trace.stats.npts == 6000
        assert np.all((trace.data >= 0) & (trace.data <= 1))
    output = model.classify(stream, P_threshold=0.01, S_threshold=0.01)
    assert isinstance(output.picks, sbu.PickList)
    assert {pick.phase for pick in output.picks} <= {"P", "S"}


# --- every option has an effect -----------------------------------------------------------


def alternatives(config, f: dataclasses.Field) -> list:
    """Valid non-default values for one field; every one must change the model."""
    default = getattr(config, f.name)
    if f.metadata.get("choices"):
        return [c for c in f.metadata["choices"] if c != default]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        candidates = [2 * default, default + 2, default + 1] if default else [8, 16]
    elif isinstance(default, float):
        candidates = [2 * default, default / 2] if default else [0.3]
    else:
        pytest.fail(f"no alternative value rule for {f.name}={default!r}")
    for value in candidates:
        try:
            dataclasses.replace(config, **{f.name: value}).validate()
        except SeismicMLError:
            continue
        return [value]
    pytest.fail(f"no valid alternative for {f.name}")


def fingerprint(model_type: str, config) -> tuple:
    """Parameter count, eval and seeded train outputs, and (magnitude) the loss on a target."""
    model = build(model_type, config)
    x = waveforms(model, amplitude=amplitude_for(model_type))
    with torch.no_grad():
        evaluated = model.eval()(x)
        torch.manual_seed(1)
        trained = model.train()(x)
    loss = None
    if get_spec(model_type).task == "magnitude":
        loss = magnitude_loss(config.loss, evaluated, torch.full((2,), 4.0)).item()
    return n_params(model), evaluated, trained, loss


@cache
def default_fingerprint(model_type: str) -> tuple:
    return fingerprint(model_type, get_spec(model_type).config_cls())


def same(a: tuple, b: tuple) -> bool:
    if a[0] != b[0] or a[1].shape != b[1].shape or a[3] != b[3]:
        return False
    return torch.allclose(a[1], b[1]) and torch.allclose(a[2], b[2])


OPTION_CASES = [
    (name, f.name) for name, spec in MODELS.items() for f in dataclasses.fields(spec.config_cls)
]


@pytest.mark.parametrize("model_type, field_name", OPTION_CASES)
def test_every_option_changes_the_model(model_type, field_name):
    config = get_spec(model_type).config_cls()
    f = next(f for f in dataclasses.fields(config) if f.name == field_name)
    assert f.metadata.get("help"), f"{field_name} has no help text"
    for value in alternatives(config, f):
        changed = fingerprint(model_type, dataclasses.replace(config, **{field_name: value}))
        assert not same(changed, default_fingerprint(model_type)), f"{field_name}={value!r}"


def test_lstm_options_change_parameter_count():
    def count(**kw) -> int:
        return n_params(build("phasenet_lstm", PhaseNetLSTMConfig(**kw)))

    assert count(lstm_bidirectional=False) < count()
    assert count(lstm_num_layers=2) > count()
    assert count(lstm_hidden_size=128) == count()  # 0 means the 128-channel bottleneck width


def test_conv_lstm_carries_state_across_chunks():
    cell = phasenet_conv_lstm.ChunkedConvLSTM(channels=4, hidden=3, kernel_size=3, chunk=3)
    x = torch.randn(1, 4, 12)
    early, late = x.clone(), x.clone()
    early[:, :, 0] += 5.0
    late[:, :, -1] += 5.0
    with torch.no_grad():
        base, out_early, out_late = cell(x), cell(early), cell(late)
    # The kernel cannot reach across chunks, so only the carried state links them.
    assert not torch.allclose(out_early[:, :, 9:], base[:, :, 9:])
    assert torch.equal(out_late[:, :, :9], base[:, :, :9])


# --- amplitude information reaches the magnitude --------------------------------------------


class ZeroLogScale(torch.nn.Module):
    """Wraps a normaliser and hides the removed amplitude scale from the head."""

    def __init__(self, normalizer: torch.nn.Module) -> None:
        super().__init__()
        self.normalizer = normalizer

    def forward(self, x):
        normalised, log_scale = self.normalizer(x)
        return normalised, torch.zeros_like(log_scale)


@pytest.mark.parametrize("model_type", MAG_MODELS)
def test_magnitude_depends_on_amplitude_through_log_scale(model_type):
    model = build(model_type, SMALL[model_type]).eval()
    x = waveforms(model, amplitude=1000.0)
    with torch.no_grad():
        assert not torch.allclose(model(10 * x), model(x), atol=1e-3)
        model.normalizer = ZeroLogScale(model.normalizer)
        assert torch.allclose(model(10 * x), model(x), atol=1e-4)


@pytest.mark.parametrize("norm", ["std", "peak"])
def test_amplitude_normalizer(norm):
    x = torch.zeros(2, 3, 100)
    x[0, 0, 10] = 5.0
    x[1] = 7.0 + 100.0 * torch.randn(3, 100)
    normalised, log_scale = AmplitudeNormalizer(norm)(x)
    demeaned = x - x.mean(dim=-1, keepdim=True)
    if norm == "std":
        expected = demeaned.flatten(1).std(dim=1)
    else:
        expected = demeaned.flatten(1).abs().amax(dim=1)
    assert log_scale.shape == (2, 1)
    assert torch.allclose(log_scale[:, 0], torch.log10(expected), atol=1e-5)
    assert torch.allclose(normalised.mean(dim=-1), torch.zeros(2, 3), atol=1e-5)
    assert torch.isfinite(AmplitudeNormalizer(norm)(torch.zeros(1, 3, 10))[1]).all()


# --- validation ------------------------------------------------------------------------------

POSITIVE_CASES = [
    (name, f.name)
    for name, spec in MODELS.items()
    for f in dataclasses.fields(spec.config_cls)
    if f.metadata.get("range") is not None and f.metadata["range"].low >= 1
]
assert len(POSITIVE_CASES) >= 15  # every size of every model is declared positive


def flag(name: str) -> str:
    """The option as the errors spell it."""
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("model_type, field_name", POSITIVE_CASES)
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_rejected(model_type, field_name, value):
    config = get_spec(model_type).config_cls(**{field_name: value})
    with pytest.raises(SeismicMLError, match=f"{flag(field_name)}={value} is outside its range"):
        build_model(model_type, config)


@pytest.mark.parametrize(
    "model_type, changes, message",
    [
        (
            "eqtransformer_mag",
            {"transformer_d_model": 100},
            "--transformer-nhead=8 must divide --transformer-d-model = 100",
        ),
        (
            "amag_v2",
            {"lstm_hidden": 3, "attention_heads": 4},
            "--attention-heads=4 must divide 2 * --lstm-hidden = 6",
        ),
        ("phasenet_lstm", {"lstm_hidden_size": -1}, "--lstm-hidden-size=-1 is outside"),
        ("phasenet_conv_lstm", {"convlstm_kernel_size": 4}, "--convlstm-kernel-size=4 is not odd"),
        ("phasenet_conv_lstm", {"convlstm_chunk": 13}, "--convlstm-chunk=13 is outside"),
        ("phasenet_mag", {"norm": "rms"}, "std, peak"),
        ("amag_v2", {"loss": "l1"}, "mse, huber, gaussian_nll"),
        ("eqtransformer_mag", {"dropout": 1.0}, "dropout"),
        ("amag_v2", {"dropout": -0.1}, "dropout"),
    ],
)
def test_invalid_combinations_are_rejected(model_type, changes, message):
    config = get_spec(model_type).config_cls(**changes)
    with pytest.raises(SeismicMLError, match=re.escape(message)):
        config.validate()


def test_unknown_model_type_lists_valid_names():
    with pytest.raises(SeismicMLError) as error:
        get_spec("phasenet_transformer")
    assert all(name in str(error.value) for name in MODELS)


def test_build_model_rejects_another_models_config():
    with pytest.raises(SeismicMLError, match="phasenet_lstm"):
        build_model("phasenet_lstm", PhaseNetConfig())


# --- losses -----------------------------------------------------------------------------------


def test_magnitude_loss_hand_computed():
    target = torch.tensor([3.0, 1.0])
    output = torch.tensor([1.0, 1.2])  # residuals 2.0 and 0.2
    assert magnitude_loss("mse", output, target).item() == pytest.approx((4.0 + 0.04) / 2)
    # Huber, delta 0.5: 0.5 * (2 - 0.25) for the outlier, 0.5 * 0.2**2 inside the delta.
    assert magnitude_loss("huber", output, target).item() == pytest.approx((0.875 + 0.02) / 2)
    with_sigma = torch.tensor([[1.0, 0.0], [1.2, math.log(2.0)]])
    # 0.5 * (log var + r**2 / var): var 1 -> 0.5 * 4; var 4 -> 0.5 * (log 4 + 0.04 / 4).
    expected = (0.5 * 4.0 + 0.5 * (math.log(4.0) + 0.01)) / 2
    assert magnitude_loss("gaussian_nll", with_sigma, target).item() == pytest.approx(expected)


def test_magnitude_loss_rejects_mismatched_outputs_and_unknown_names():
    with pytest.raises(SeismicMLError, match="gaussian_nll needs"):
        magnitude_loss("gaussian_nll", torch.zeros(2), torch.zeros(2))
    with pytest.raises(SeismicMLError, match="mse needs"):
        magnitude_loss("mse", torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(SeismicMLError, match="unknown magnitude loss"):
        magnitude_loss("l1", torch.zeros(2), torch.zeros(2))


# --- default sizes and the README table -----------------------------------------------------


def test_amag_v2_default_size():
    assert 800_000 <= n_params(build("amag_v2", AmagV2Config())) <= 1_600_000


def test_models_table_matches_built_models():
    table = MODELS_TABLE.read_text()
    for model_type, spec in MODELS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{model_type}`"))
        model = build(model_type, spec.config_cls())
        assert f"| {n_params(model):,} |" in row, model_type
        assert f"| {model.in_samples} |" in row, model_type
        for f in dataclasses.fields(spec.config_cls):
            assert f"`{f.name}`" in row, (model_type, f.name)
