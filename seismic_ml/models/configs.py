"""Every model's hyperparameters (a Config dataclass) and its tuning entries, without torch.

The CLI builds its options from these classes, so they live apart from the networks: importing
this module (and the registry) costs no torch, and `seismic-ml --help` stays fast. Each network
module (phasenet.py, amag_v2.py, ...) imports its config from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from seismic_ml.errors import SeismicMLError
from seismic_ml.options import ConfigBase, option

LOSSES = ("mse", "huber", "gaussian_nll")
NORMS = ("std", "peak")
# Time samples left at the bottleneck of a 3001-sample window (three stride-4 stages, as padded).
BOTTLENECK_SAMPLES = 12


def filter_factor_option(layers: str = "every U-Net layer (PhaseNetWC)") -> Any:
    """The filter_factor field every model has: an integer multiplier of its conv widths."""
    return option(1, f"multiply the filters of {layers}", positive=True)


def check_dropout(value: float) -> None:
    """Raise SeismicMLError unless 0 <= dropout < 1."""
    if not 0 <= value < 1:
        raise SeismicMLError(f"dropout must be in [0, 1), got {value}")


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
    lstm_hidden_size: int = option(0, "LSTM hidden units (0: the bottleneck channel width)")
    lstm_num_layers: int = option(1, "stacked LSTM layers", positive=True)
    lstm_bidirectional: bool = option(True, "run the LSTM in both time directions")

    def validate(self) -> None:
        """Check field metadata, then that the hidden size is 0 (auto) or positive."""
        super().validate()
        if self.lstm_hidden_size < 0:
            raise SeismicMLError(
                f"lstm_hidden_size must be 0 (auto) or positive, got {self.lstm_hidden_size}"
            )


PHASENET_LSTM_SEARCH_SPACE: dict[str, dict] = {
    "lstm_hidden_size": {"type": "categorical", "choices": [0, 64, 128, 256]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
}

# --- phasenet_conv_lstm ----------------------------------------------------------------------


@dataclass
class PhaseNetConvLSTMConfig(ConfigBase):
    """Hyperparameters of PhaseNet with a convolutional LSTM bottleneck."""

    filter_factor: int = filter_factor_option()
    convlstm_hidden: int = option(64, "ConvLSTM hidden (and cell) channels", positive=True)
    convlstm_kernel_size: int = option(3, "ConvLSTM gate kernel size (odd)", positive=True)
    convlstm_chunk: int = option(
        3, f"bottleneck samples per ConvLSTM step (1 to {BOTTLENECK_SAMPLES})", positive=True
    )

    def validate(self) -> None:
        """Check field metadata, an odd kernel and a chunk no longer than the bottleneck."""
        super().validate()
        if self.convlstm_kernel_size % 2 == 0:
            raise SeismicMLError(
                f"convlstm_kernel_size must be odd, got {self.convlstm_kernel_size}"
            )
        if self.convlstm_chunk > BOTTLENECK_SAMPLES:
            raise SeismicMLError(
                f"convlstm_chunk must be at most the {BOTTLENECK_SAMPLES} bottleneck samples, "
                f"got {self.convlstm_chunk}"
            )


PHASENET_CONV_LSTM_SEARCH_SPACE: dict[str, dict] = {
    "convlstm_hidden": {"type": "categorical", "choices": [32, 64, 128]},
}

# --- phasenet_mag ----------------------------------------------------------------------------


@dataclass
class PhaseNetMagConfig(MagnitudeConfig):
    """Hyperparameters of the PhaseNet-style magnitude regressor."""

    filter_factor: int = filter_factor_option()
    dropout: float = option(0.1, "dropout in the regression head")

    def validate(self) -> None:
        """Check field metadata and the dropout range."""
        super().validate()
        check_dropout(self.dropout)


PHASENET_MAG_SEARCH_SPACE: dict[str, dict] = {}

# --- eqtransformer_mag -----------------------------------------------------------------------


@dataclass
class EQTransformerMagConfig(MagnitudeConfig):
    """Hyperparameters of the EQTransformer-style magnitude regressor."""

    filter_factor: int = filter_factor_option("every convolution of the encoder and CNN blocks")
    cnn_blocks: int = option(5, "residual CNN blocks after the conv+pool encoder", positive=True)
    lstm_blocks: int = option(2, "BiLSTM blocks", positive=True)
    transformer_d_model: int = option(128, "transformer model width", positive=True)
    transformer_nhead: int = option(8, "transformer attention heads", positive=True)
    transformer_num_encoder_layers: int = option(4, "transformer encoder layers", positive=True)
    transformer_dim_feedforward: int = option(512, "transformer feed-forward width", positive=True)
    dropout: float = option(0.1, "dropout in the CNN, LSTM, transformer and head")

    def validate(self) -> None:
        """Check field metadata, the dropout range and that heads divide the model width."""
        super().validate()
        check_dropout(self.dropout)
        if self.transformer_d_model % self.transformer_nhead:
            raise SeismicMLError(
                f"transformer_d_model ({self.transformer_d_model}) must be divisible by "
                f"transformer_nhead ({self.transformer_nhead})"
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
    lstm_hidden: int = option(128, "BiLSTM hidden units per direction", positive=True)
    lstm_layers: int = option(2, "stacked BiLSTM layers", positive=True)
    attention_heads: int = option(4, "self-attention heads", positive=True)
    dropout: float = option(0.2, "dropout in the encoder, LSTM, attention and head")

    def validate(self) -> None:
        """Check field metadata, the dropout range and that heads divide the BiLSTM width."""
        super().validate()
        check_dropout(self.dropout)
        if (2 * self.lstm_hidden) % self.attention_heads:
            raise SeismicMLError(
                f"2 * lstm_hidden ({2 * self.lstm_hidden}) must be divisible by "
                f"attention_heads ({self.attention_heads})"
            )


AMAG_V2_SEARCH_SPACE: dict[str, dict] = {
    "lstm_hidden": {"type": "categorical", "choices": [64, 128, 256]},
}
