"""torch.compile: the compiled model computes what the eager one does, and a compiler failure
falls back to eager instead of ending the run."""

from __future__ import annotations

import copy

import pytest
import torch

from gptlab.train.compile import CompiledWithFallback, compile_model


@pytest.mark.slow
def test_compiled_loss_and_gradients_match_eager(tiny_model):
    model = tiny_model
    eager = copy.deepcopy(model)
    compiled = compile_model(model)
    x = torch.randint(0, 64, (3, 32))
    y = torch.randint(0, 64, (3, 32))
    for m in (compiled, eager):
        m(x, y)[1].backward()
    assert compiled.failed is None  # it really ran compiled (a C++ compiler is present in CI)
    torch.testing.assert_close(compiled(x, y)[1], eager(x, y)[1], rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_compile_failure_falls_back_to_eager(tiny_model, capsys):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    model = tiny_model
    wrapped = CompiledWithFallback(model, backend=broken_backend)
    x = torch.randint(0, 64, (2, 8))
    logits, _ = wrapped(x)
    assert wrapped.failed and "no C++ compiler" in wrapped.failed
    assert "torch.compile failed" in capsys.readouterr().err
    torch.testing.assert_close(logits, model(x)[0])


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
def test_errors_of_the_model_itself_are_not_swallowed(tiny_model):
    wrapped = compile_model(tiny_model)
    with pytest.raises(Exception, match="longer than the context"):
        wrapped(torch.zeros(1, 33, dtype=torch.long))


def test_disabled_returns_the_model(tiny_model):
    model = tiny_model
    assert compile_model(model, enabled=False) is model
