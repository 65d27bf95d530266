"""What the architectures other than the GPT (`Encoder`, `EncoderDecoder`, `RecurrentLM`) share:
one check that the config asks for this class's ``model.arch``, and saving/loading as a GPT does
(the saved tensor names and shapes, built back from exactly those tensors)."""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import build_from_state, saved_tensor_shapes


class ArchVariant:
    """Mixin (before ``nn.Module``). ``ARCHES``: the ``model.arch`` values the class builds."""

    ARCHES: tuple[str, ...] = ()

    @classmethod
    def check_arch(cls, config: GPTConfig) -> None:
        """Validate ``config`` and refuse one whose ``model.arch`` this class does not build."""
        config.validate()
        if config.arch not in cls.ARCHES:
            wanted = " or ".join(repr(a) for a in cls.ARCHES)
            raise GptlabError(f"{cls.__name__} builds model.arch {wanted}, got {config.arch!r}")

    @classmethod
    def tensor_shapes(cls, config: GPTConfig) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the saved tensors (no ``lm_head.weight`` when tied)."""
        return saved_tensor_shapes(cls, config)

    @classmethod
    def from_state_dict(cls, config: GPTConfig, state: dict[str, torch.Tensor], source: str = "weights"):
        """As `GPT.from_state_dict`: exactly the expected tensors (a tied head's may be left out)."""
        if config.tie_weights:
            state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        return build_from_state(cls, config, state, source)
