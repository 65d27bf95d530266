"""Which input tokens matter for a prediction: gradient, gradient x input, integrated gradients,
occlusion.

All four work on a scalar function of the token embeddings, ``f: (N, T, C) -> (N,)``, so they
apply to any target: the log-probability (or logit) of a next token, or a classifier's class
score. `next_token_target` builds f for a GPT, `class_target` for a classifier (gptlab.model.heads):
the model runs with its token-embedding output replaced by the given embeddings (positions are
added inside the model, as usual).

- gradient: ||df/de_t||_2 per token (how sensitive f is to token t; sign-less).
- gradient x input: sum over channels of df/de_t * e_t (first-order contribution of token t).
- integrated gradients (Sundararajan et al., 2017): (e - e0) * integral over alpha of
  df/de at e0 + alpha (e - e0), summed over channels; the integral is a quadrature: Gauss-Legendre
  (captum's default, equal to captum's within 1e-4) or the trapezoid rule with steps 1/(n-1), so
  that its weights sum to 1 (captum's "riemann_trapezoid" uses 1/n and comes out n/(n-1) short).
  Completeness: the attributions sum to f(e) - f(e0), up to the quadrature error.
- occlusion: f(e) - f(e with token t's embedding replaced by the baseline's), one token at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gptlab.errors import GptlabError
from gptlab.interpret.attention import ids_tensor
from gptlab.model.gpt import GPT
from gptlab.model.heads import GPTClassifier

ScalarFn = Callable[[torch.Tensor], torch.Tensor]  # embeddings (N, T, C) -> scores (N,)
IG_METHODS = ("gausslegendre", "riemann_trapezoid")


def _grad(f: ScalarFn, emb: torch.Tensor) -> torch.Tensor:
    emb = emb.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(emb).sum(), emb)
    return grad


def gradient_norm(f: ScalarFn, emb: torch.Tensor) -> torch.Tensor:
    """(T,) L2 norm of df/de_t for one sequence emb (1, T, C)."""
    return _grad(f, emb)[0].norm(dim=-1)


def gradient_x_input(f: ScalarFn, emb: torch.Tensor) -> torch.Tensor:
    """(T,) sum over channels of df/de_t * e_t."""
    return (_grad(f, emb) * emb)[0].sum(dim=-1)


def quadrature(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Points alpha in [0, 1] and weights for integrating over alpha with ``steps`` evaluations."""
    if steps < 2:
        raise GptlabError(f"integrated gradients needs at least 2 steps, got {steps}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        return torch.tensor(0.5 * (x + 1)), torch.tensor(0.5 * w)
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return alphas, weights
    raise GptlabError(f"integration method must be one of {', '.join(IG_METHODS)}, got {method!r}")


def integrated_gradients(
    f: ScalarFn,
    emb: torch.Tensor,
    baseline: torch.Tensor | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int = 16,
) -> tuple[torch.Tensor, float]:
    """(T,) integrated-gradients attributions of one sequence emb (1, T, C) against ``baseline``
    (zeros by default), and the completeness gap: |sum of attributions - (f(emb) - f(baseline))|."""
    baseline = torch.zeros_like(emb) if baseline is None else baseline
    alphas, weights = quadrature(steps, method)
    delta = emb - baseline  # (1, T, C)
    total = torch.zeros_like(emb, dtype=torch.float64)
    for start in range(0, steps, batch_size):
        a = alphas[start : start + batch_size].to(emb.dtype)[:, None, None]  # (n, 1, 1)
        points = baseline + a * delta  # (n, T, C)
        grads = _grad(f, points).double()  # (n, T, C)
        total += (weights[start : start + batch_size][:, None, None] * grads).sum(dim=0, keepdim=True)
    attributions = (total * delta.double())[0].sum(dim=-1)  # (T,)
    with torch.no_grad():
        expected = float(f(emb).sum() - f(baseline).sum())
    return attributions.float(), abs(float(attributions.sum()) - expected)


@torch.no_grad()
def occlusion(f: ScalarFn, emb: torch.Tensor, baseline: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) f(emb) - f(emb with token t set to the baseline's embedding), for each t."""
    baseline = torch.zeros_like(emb) if baseline is None else baseline
    T = emb.shape[1]
    occluded = emb.repeat(T, 1, 1)  # (T, T, C): row t has token t occluded
    occluded[torch.arange(T), torch.arange(T)] = baseline[0]
    return f(emb).sum() - f(occluded)


def next_token_target(
    model: GPT, ids: Sequence[int] | torch.Tensor, target_id: int, score: str = "logprob"
) -> tuple[ScalarFn, torch.Tensor]:
    """f(embeddings) = the log-probability (or logit) of ``target_id`` as the token after ``ids``,
    and the sequence's own token embeddings (1, T, C) to attribute."""
    if score not in ("logprob", "logit"):
        raise GptlabError(f"score must be logprob or logit, got {score!r}")
    if not 0 <= target_id < model.config.vocab_size:
        raise GptlabError(
            f"target token id {target_id} is outside the vocabulary (0..{model.config.vocab_size - 1})"
        )
    idx = ids_tensor(model, ids)  # (1, T)
    model.eval()
    wte = model.transformer.wte

    def f(emb: torch.Tensor) -> torch.Tensor:
        handle = _embedding_swap(wte, emb)
        try:
            logits, _ = model(idx.expand(emb.shape[0], -1), last_only=True)  # (N, 1, V)
        finally:
            handle.remove()
        last = logits[:, -1, :].float()
        return last.log_softmax(-1)[:, target_id] if score == "logprob" else last[:, target_id]

    with torch.no_grad():
        emb = wte(idx).detach()
    return f, emb


def _embedding_swap(wte: torch.nn.Module, emb: torch.Tensor):
    """A forward hook on the token-embedding layer that returns ``emb`` instead of its lookup."""
    return wte.register_forward_hook(lambda module, inputs, output: emb)


def class_target(
    classifier: GPTClassifier, ids: Sequence[int] | torch.Tensor, class_index: int, score: str = "logprob"
) -> tuple[ScalarFn, torch.Tensor]:
    """f(embeddings) = the log-probability (or logit) of class ``class_index`` for the text ``ids``
    under a GPT classifier, and the text's token embeddings (1, T, C) to attribute."""
    if score not in ("logprob", "logit"):
        raise GptlabError(f"score must be logprob or logit, got {score!r}")
    if not 0 <= class_index < classifier.num_classes:
        raise GptlabError(
            f"class index {class_index} is outside the classifier's classes (0..{classifier.num_classes - 1})"
        )
    idx = ids_tensor(classifier.gpt, ids)  # (1, T)
    classifier.eval()
    wte = classifier.gpt.transformer.wte

    def f(emb: torch.Tensor) -> torch.Tensor:
        n = emb.shape[0]
        lengths = torch.full((n,), idx.shape[1], dtype=torch.long, device=idx.device)
        handle = _embedding_swap(wte, emb)
        try:
            logits, _ = classifier(idx.expand(n, -1), lengths)  # (N, K)
        finally:
            handle.remove()
        logits = logits.float()
        return logits.log_softmax(-1)[:, class_index] if score == "logprob" else logits[:, class_index]

    with torch.no_grad():
        emb = wte(idx).detach()
    return f, emb
