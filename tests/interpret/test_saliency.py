"""Token attributions: integrated gradients matches captum and is complete; occlusion, gradient
and gradient x input give the known answers on hand-built functions."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients

from gptlab.errors import GptlabError
from gptlab.interpret.saliency import (
    gradient_norm,
    gradient_x_input,
    integrated_gradients,
    next_token_target,
    occlusion,
)
from gptlab.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=40, n_layer=2, n_embd=32, n_head=4, block_size=16)).eval()


IDS = [3, 7, 1, 9, 3, 7, 2]


def test_integrated_gradients_match_captum(model):
    f, emb = next_token_target(model, IDS, target_id=5)
    ours, gap = integrated_gradients(f, emb, steps=32)  # Gauss-Legendre, captum's default
    theirs = IntegratedGradients(f).attribute(emb, baselines=torch.zeros_like(emb), n_steps=32)
    torch.testing.assert_close(ours, theirs[0].sum(-1).float(), rtol=0, atol=1e-4)
    assert gap < 1e-3  # completeness: sum = f(x) - f(baseline), up to the quadrature error


def test_trapezoid_rule_differs_from_captum_by_its_step_size(model):
    """captum's riemann_trapezoid uses steps of 1/n (weights summing to (n-1)/n); ours uses the
    trapezoid rule's 1/(n-1), whose weights sum to 1. So ours = captum's * n/(n-1), exactly."""
    n = 32
    f, emb = next_token_target(model, IDS, target_id=5)
    ours, _ = integrated_gradients(f, emb, steps=n, method="riemann_trapezoid")
    theirs = IntegratedGradients(f).attribute(
        emb, baselines=torch.zeros_like(emb), n_steps=n, method="riemann_trapezoid"
    )
    torch.testing.assert_close(ours, theirs[0].sum(-1).float() * n / (n - 1), rtol=0, atol=1e-4)


def test_completeness_tightens_with_more_steps(model):
    f, emb = next_token_target(model, IDS, target_id=11, score="logit")
    gaps = [integrated_gradients(f, emb, steps=n)[1] for n in (4, 64)]
    assert gaps[1] < 1e-3 and gaps[1] <= gaps[0]


def test_linear_function_gives_the_known_attributions():
    """f(e) = sum_t w_t . e_t: every method has a closed form."""
    torch.manual_seed(1)
    T, C = 5, 3
    w = torch.randn(T, C)
    emb = torch.randn(1, T, C)

    def f(e):
        return (e * w).sum(dim=(1, 2))

    contribution = (w * emb[0]).sum(-1)  # w_t . e_t
    torch.testing.assert_close(occlusion(f, emb), contribution)
    torch.testing.assert_close(gradient_x_input(f, emb), contribution)
    torch.testing.assert_close(gradient_norm(f, emb), w.norm(dim=-1))
    ig, gap = integrated_gradients(f, emb, steps=2, method="riemann_trapezoid")
    torch.testing.assert_close(ig, contribution)
    assert gap < 1e-5


def test_occlusion_finds_the_only_token_that_matters():
    """A function that reads only token 2: occlusion gives 0 everywhere else."""
    emb = torch.randn(1, 6, 4)

    def f(e):
        return e[:, 2].pow(2).sum(-1)

    scores = occlusion(f, emb)
    assert torch.all(scores[[0, 1, 3, 4, 5]] == 0) and scores[2] == pytest.approx(
        float(emb[0, 2].pow(2).sum())
    )


def test_bad_targets_are_clear_errors(model):
    with pytest.raises(GptlabError, match="outside the vocabulary"):
        next_token_target(model, IDS, target_id=40)
    with pytest.raises(GptlabError, match="logprob or logit"):
        next_token_target(model, IDS, target_id=1, score="prob")
    f, emb = next_token_target(model, IDS, target_id=1)
    with pytest.raises(GptlabError, match="at least 2 steps"):
        integrated_gradients(f, emb, steps=1)
    with pytest.raises(GptlabError, match="integration method"):
        integrated_gradients(f, emb, method="simpson")
