"""Every model's hyperparameters (a Config dataclass) and its tuning entries, without torch.

The CLI builds its options from these classes, so they live apart from the networks: importing
this module (and the registry) costs no torch, and `seismic-ml --help` stays fast. Each field is
a constructor argument of the same name of the model's network class (registry.py), so the
network is `cls(**asdict(config))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seismic_ml.config_fields import Check, ConfigBase, Range, Spelling, option
from seismic_ml.errors import BadOptionValue

LOSSES = ("mse", "huber", "gaussian_nll")
NORMS = ("std", "peak")
# Time samples left at the bottleneck of a 3001-sample window (four stride-4 stages, as padded).
BOTTLENECK_SAMPLES = 12

# What each hyperparameter accepts. Each range reaches a few times past the largest value the
# models table or a search space uses; the product of several (a wide and deep network) is
# bounded apart, by the parameter count registry.build_model checks before allocating.
FILTER_FACTOR = Range(1, 16)  # conv width multiplier: 1 by default, {1, 2, 4} searched
DROPOUT = Range(0, 1, high_open=True)
WIDTH = Range(1, 2048)  # hidden units or channels: 128 by default, at most 256 searched
LAYERS = Range(1, 8)  # stacked recurrent layers: 1 or 2 by default
HEADS = Range(1, 64)  # attention heads: 4 or 8 by default
ODD = Check(lambda k: k % 2 == 1, "odd")


def filter_factor_option(layers: str = "every U-Net layer (PhaseNetWC)") -> Any:
    """The filter_factor field every model has: an integer multiplier of its conv widths."""
    return option(1, f"multiply the filters of {layers}", range=FILTER_FACTOR)


def dropout_option(where: str, default: float) -> Any:
    """The dropout field of the magnitude models: a probability below 1."""
    return option(default, f"dropout in {where}", range=DROPOUT)


def must_divide(spell: Spelling, part: str, parts: int, whole: str, width: int) -> None:
    """Raise BadOptionValue unless parts (the value of field part) divides width."""
    if width % parts:
        raise BadOptionValue(f"{spell(part)}={parts} must divide {whole} = {width}")


@dataclass
class MagnitudeConfig(ConfigBase):
    """Options every magnitude model has: its training loss and its amplitude normalisation."""

    loss: str = option(
        "mse", "training loss; gaussian_nll also predicts log(sigma)", choices=LOSSES
    )
    norm: str = option("std", "divide each trace by its std or its peak amplitude", choices=NORMS)

    @property
    def predicts_uncertainty(self) -> bool:
        """True when the model outputs (magnitude, log sigma) per trace."""
        return self.loss == "gaussian_nll"


# Each SEARCH_SPACE holds the tuning entries beside the options they search (the shared ones
# live in tuning/space.py).

# --- phasenet --------------------------------------------------------------------------------


@dataclass
class PhaseNetConfig(ConfigBase):
    """Hyperparameters of seisbench's PhaseNet."""

    filter_factor: int = filter_factor_option()


PHASENET_SEARCH_SPACE: dict[str, dict] = {}

# --- phasenet_lstm ---------------------------------------------------------------------------


@dataclass
class PhaseNetLSTMConfig(ConfigBase):
    """Hyperparameters of PhaseNet with an LSTM bottleneck."""

    filter_factor: int = filter_factor_option()
    lstm_hidden_size: int = option(
        0, "LSTM hidden units (0: the bottleneck channel width)", range=Range(0, WIDTH.high)
    )
    lstm_num_layers: int = option(1, "stacked LSTM layers", range=LAYERS)
    lstm_bidirectional: bool = option(True, "run the LSTM in both time directions")


PHASENET_LSTM_SEARCH_SPACE: dict[str, dict] = {
    "lstm_hidden_size": {"type": "categorical", "choices": [0, 64, 128, 256]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
}

# --- phasenet_conv_lstm ----------------------------------------------------------------------


@dataclass
class PhaseNetConvLSTMConfig(ConfigBase):
    """Hyperparameters of PhaseNet with a convolutional LSTM bottleneck."""

    filter_factor: int = filter_factor_option()
    convlstm_hidden: int = option(64, "ConvLSTM hidden (and cell) channels", range=WIDTH)
    convlstm_kernel_size: int = option(
        3, "ConvLSTM gate kernel size", range=Range(1, 11), check=ODD
    )
    convlstm_chunk: int = option(
        3, "bottleneck samples per ConvLSTM step", range=Range(1, BOTTLENECK_SAMPLES)
    )


PHASENET_CONV_LSTM_SEARCH_SPACE: dict[str, dict] = {
    "convlstm_hidden": {"type": "categorical", "choices": [32, 64, 128]},
}

# --- phasenet_mag ----------------------------------------------------------------------------


@dataclass
class PhaseNetMagConfig(MagnitudeConfig):
    """Hyperparameters of the PhaseNet-style magnitude regressor."""

    filter_factor: int = filter_factor_option()
    dropout: float = dropout_option("the regression head", 0.1)


PHASENET_MAG_SEARCH_SPACE: dict[str, dict] = {}

# --- eqtransformer_mag -----------------------------------------------------------------------


@dataclass
class EQTransformerMagConfig(MagnitudeConfig):
    """Hyperparameters of the EQTransformer-style magnitude regressor."""

    filter_factor: int = filter_factor_option("every convolution of the encoder and CNN blocks")
    cnn_blocks: int = option(
        5, "residual CNN blocks after the conv+pool encoder", range=Range(1, 32)
    )
    lstm_blocks: int = option(2, "BiLSTM blocks", range=LAYERS)
    transformer_d_model: int = option(128, "transformer model width", range=WIDTH)
    transformer_nhead: int = option(8, "transformer attention heads", range=HEADS)
    transformer_num_encoder_layers: int = option(
        4, "transformer encoder layers", range=Range(1, 32)
    )
    transformer_dim_feedforward: int = option(
        512, "transformer feed-forward width", range=Range(1, 8192)
    )
    dropout: float = dropout_option("the CNN, LSTM, transformer and head", 0.1)

    def check_together(self, spell: Spelling) -> None:
        """The attention heads divide the model width."""
        must_divide(
            spell,
            "transformer_nhead",
            self.transformer_nhead,
            spell("transformer_d_model"),
            self.transformer_d_model,
        )


EQTRANSFORMER_MAG_SEARCH_SPACE: dict[str, dict] = {
    "transformer_d_model": {"type": "categorical", "choices": [64, 128, 256]},
    "transformer_nhead": {"type": "categorical", "choices": [2, 4, 8]},
}

# --- amag_v2 ---------------------------------------------------------------------------------


@dataclass
class AmagV2Config(MagnitudeConfig):
    """Hyperparameters of MagnitudeNet (amag_v2)."""

    filter_factor: int = filter_factor_option("every convolution stage")
    lstm_hidden: int = option(128, "BiLSTM hidden units per direction", range=WIDTH)
    lstm_layers: int = option(2, "stacked BiLSTM layers", range=LAYERS)
    attention_heads: int = option(4, "self-attention heads", range=HEADS)
    dropout: float = dropout_option("the encoder, LSTM, attention and head", 0.2)

    def check_together(self, spell: Spelling) -> None:
        """The attention heads divide the BiLSTM's output width, 2 * lstm_hidden."""
        width = f"2 * {spell('lstm_hidden')}"
        must_divide(spell, "attention_heads", self.attention_heads, width, 2 * self.lstm_hidden)


AMAG_V2_SEARCH_SPACE: dict[str, dict] = {
    "lstm_hidden": {"type": "categorical", "choices": [64, 128, 256]},
}
