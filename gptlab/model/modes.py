"""Small facts about where and how a model runs, which many modules need: which device it is on,
how to run it in eval mode for a while without losing the mode it was in (a sample or a score
taken mid-training must not leave dropout off, nor turn it on for a model that was evaluating),
and the device and dtype a user's ``--device`` / ``--dtype`` name, checked."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
AUTO = "auto"


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (fast) on ``device``: a CUDA GPU that supports bf16, or a
    CPU with AVX512-BF16 or AMX (its /proc/cpuinfo flags). Other CPUs emulate bf16, several times
    slower than fp32, so ``auto`` dtypes stay fp32 there."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def resolve_dtype(
    dtype: torch.dtype | str | None, device: str | torch.device | None = None
) -> torch.dtype | None:
    """torch.dtype or None unchanged; a name ("float32"/"fp32", "bfloat16"/"bf16",
    "float16"/"fp16") -> the dtype; ``"auto"``: bfloat16 where ``device`` (default cpu) runs it
    natively (`native_bf16`), else float32."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower()
    if name == AUTO:
        return torch.bfloat16 if native_bf16(torch.device(device or "cpu")) else torch.float32
    resolved = DTYPE_NAMES.get(name, getattr(torch, str(dtype), None))  # any torch float name too
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise GptlabError(
            f"unknown dtype {dtype!r}: expected auto, float32 (fp32), bfloat16 (bf16) or float16"
        )
    return resolved
