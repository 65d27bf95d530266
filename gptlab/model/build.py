"""Which network a `GPTConfig` builds: `GPT`, or `RecurrentLM` for ``arch`` lstm / gru.

The trainer, the run directory's loader and anything else that builds a model from a config goes
through here, so a config's ``arch`` decides the model in one place."""

from __future__ import annotations

import torch

from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.rnn import RecurrentLM


def model_class(config: GPTConfig) -> type[GPT] | type[RecurrentLM]:
    return GPT if config.arch == "gpt" else RecurrentLM


def build_model(config: GPTConfig) -> GPT | RecurrentLM:
    """A freshly initialised model of ``config``."""
    return model_class(config)(config)


def model_from_state_dict(
    config: GPTConfig, state: dict[str, torch.Tensor], source: str = "weights"
) -> GPT | RecurrentLM:
    """The model of ``config`` holding the saved tensors ``state`` (see `GPT.from_state_dict`)."""
    return model_class(config).from_state_dict(config, state, source=source)
