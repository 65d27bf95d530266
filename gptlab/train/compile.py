"""``torch.compile`` with an eager fallback.

Compilation is lazy: ``torch.compile(model)`` returns at once and the work (and any failure: no C++
compiler for Inductor's CPU kernels, an unsupported op, an old GPU) happens on the first call. A
training run should not die at step 1 for that, so `compile_model` returns a module that tries
the compiled model once and, if compiling fails, says why and runs the eager model from then on.

When it pays (measured in bench/train.py and docs/performance.md): on GPUs, where fusing the
element-wise ops saves memory round trips; on a small CPU the matmuls dominate and compilation
mostly adds start-up time.
"""

from __future__ import annotations

import sys

import torch


class CompiledWithFallback(torch.nn.Module):
    """Calls ``torch.compile(model)``; after a compilation error, ``model`` itself."""

    def __init__(self, model: torch.nn.Module, **compile_kwargs) -> None:
        super().__init__()
        self.eager = model
        self.compiled = torch.compile(model, **compile_kwargs)
        self.failed: str | None = None  # why compilation failed, once it has

    def forward(self, *args, **kwargs):
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any compiler failure: fall back, loudly
                if not _is_compile_error(e):
                    raise
                self.failed = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                print(f"warning: torch.compile failed, running eagerly ({self.failed})", file=sys.stderr)
        return self.eager(*args, **kwargs)


def _is_compile_error(e: Exception) -> bool:
    """Errors raised by the compiler stack (dynamo, inductor, a C++ toolchain), not by the model."""
    module = type(e).__module__ or ""
    return (
        module.startswith(("torch._dynamo", "torch._inductor", "torch._subclasses"))
        or isinstance(e, (OSError, RuntimeError))
        and "compile" in str(e).lower()
    )


def compile_model(model: torch.nn.Module, enabled: bool = True, **compile_kwargs) -> torch.nn.Module:
    """``model`` compiled with an eager fallback, or ``model`` unchanged if not ``enabled``."""
    return CompiledWithFallback(model, **compile_kwargs) if enabled else model
