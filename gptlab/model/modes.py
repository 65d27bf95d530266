"""Small facts about where and how a model runs, which many modules need: which device it is on,
how to run it in eval mode for a while without losing the mode it was in (a sample or a score
taken mid-training must not leave dropout off, nor turn it on for a model that was evaluating),
and the device and dtype a user's ``--device`` / ``--dtype`` name, checked."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gptlab.errors import GptlabError


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Dropout off inside the block, then the model's previous mode back, however the block ends."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer: a quantised model's weights are
    buffers); cpu for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): cuda when available, else cpu. Any other name is checked: an unknown
    device, or cuda without a GPU, is a GptlabError rather than a crash in torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GptlabError(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise GptlabError(f"device {device!r} requested, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise GptlabError(
                f"device {device!r} requested, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise GptlabError(f"device {device!r} requested, but MPS is not available on this machine")
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """torch.dtype or None unchanged; a name ("float32", "bfloat16", "float16") -> the dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise GptlabError(f"unknown dtype {dtype!r}: expected float32, bfloat16 or float16")
    return resolved
