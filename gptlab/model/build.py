"""Which network a `GPTConfig` builds: `GPT`; `RecurrentLM` for ``arch`` lstm / gru; `Encoder`
(BERT-style) for ``encoder``; `EncoderDecoder` (T5-style) for ``encdec``.

The trainer, the run directory's loader and anything else that builds a model from a config goes
through here, so a config's ``arch`` decides the model in one place."""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.model.config import GPTConfig
from gptlab.model.encdec import EncoderDecoder
from gptlab.model.encoder import Encoder
from gptlab.model.gpt import GPT
from gptlab.model.rnn import RecurrentLM

CLASSES: dict[str, type[nn.Module]] = {
    "gpt": GPT,
    "lstm": RecurrentLM,
    "gru": RecurrentLM,
    "encoder": Encoder,
    "encdec": EncoderDecoder,
}


def model_class(config: GPTConfig) -> type[nn.Module]:
    return CLASSES[config.arch]


def build_model(config: GPTConfig) -> nn.Module:
    """A freshly initialised model of ``config``."""
    return model_class(config)(config)


def model_from_state_dict(
    config: GPTConfig, state: dict[str, torch.Tensor], source: str = "weights"
) -> nn.Module:
    """The model of ``config`` holding the saved tensors ``state`` (see `GPT.from_state_dict`)."""
    return model_class(config).from_state_dict(config, state, source=source)
