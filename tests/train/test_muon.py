"""Muon (gptlab.train.muon) against torch.optim.Muon step by step, its Newton-Schulz iteration
against an SVD, and the split of a GPT's parameters between Muon and AdamW."""

from __future__ import annotations

import copy

import pytest
import torch

from gptlab.config import OptimSection
from gptlab.errors import GptlabError
from gptlab.train.muon import NS_COEFFICIENTS, Muon, muon_param_groups, newton_schulz
from gptlab.train.optim import set_lr
from gptlab.train.optimizers import make_optimizer

needs_torch_muon = pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch >= 2.9"
)
SHAPES = [(8, 8), (6, 10), (12, 5)]  # square, wide, tall (the tall one is transposed inside)


def random_matrix(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_keeps_the_singular_vectors_and_pushes_the_values_near_one(shape):
    """NS5(G) = U f(S) V^T: the same singular vectors as G, and the quintic's f(s) lands in
    [0.68, 1.2] in exact arithmetic (it trades convergence for speed; bf16 widens that a little),
    so NS5(G) is near U V^T but not on it."""
    g = random_matrix(shape)
    u, _, vt = torch.linalg.svd(g.double(), full_matrices=False)
    for dtype, tol, low, high in [(torch.float32, 1e-4, 0.68, 1.21), (torch.bfloat16, 0.05, 0.6, 1.25)]:
        x = newton_schulz(g, dtype=dtype).double()
        inner = u.T @ x @ vt.T  # diagonal with f(s) when the singular vectors are kept
        f = inner.diagonal()
        off = inner - torch.diag(f)
        assert off.abs().max() < tol, (dtype, off.abs().max())
        assert f.min() > low and f.max() < high, (dtype, f)
        exact = u @ vt
        assert 0.01 < (x - exact).norm() / exact.norm() < 0.3, dtype  # near U V^T, not on it


def test_newton_schulz_with_the_cubic_coefficients_converges_to_u_v_transpose():
    """The classic cubic (1.5, -0.5, 0) converges (slowly) to exactly U V^T: the iteration is the
    general one, and the quintic's error above is its coefficients' choice."""
    g = random_matrix((6, 10), seed=1)
    u, _, vt = torch.linalg.svd(g.double(), full_matrices=False)
    x = newton_schulz(g.double(), steps=60, coefficients=(1.5, -0.5, 0.0), dtype=torch.float64)
    assert torch.allclose(x, u @ vt, atol=1e-8)
    quintic = newton_schulz(g.double(), steps=60, coefficients=NS_COEFFICIENTS, dtype=torch.float64)
    assert (quintic - u @ vt).abs().max() > 1e-3  # never converges: it oscillates around 1


def test_newton_schulz_refuses_a_vector():
    with pytest.raises(GptlabError, match="matrix"):
        newton_schulz(torch.ones(4))


def matrix_trajectory(make, steps=8):
    """The matrices after each step of ``make(params)`` on a loss whose gradients change every step."""
    ps = [random_matrix(s, seed=i).requires_grad_(True) for i, s in enumerate(SHAPES)]
    targets = [random_matrix(s, seed=10 + i) for i, s in enumerate(SHAPES)]
    optimizer = make(ps)
    out = []
    for step in range(steps):
        optimizer.zero_grad()
        sum(((p - t * (1 + 0.1 * step)) ** 4).mean() + p.sin().sum() for p, t in zip(ps, targets)).backward()
        optimizer.step()
        out.append([p.detach().clone() for p in ps])
    return out


@needs_torch_muon
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr", ["original", "match_rms_adamw"])
def test_muon_update_equals_torch_muon(nesterov, adjust_lr):
    settings = dict(lr=0.05, momentum=0.9, nesterov=nesterov, ns_steps=5)
    ours = matrix_trajectory(
        lambda ps: Muon([dict(params=ps, weight_decay=0.1)], adjust_lr=adjust_lr, **settings)
    )
    torch_ = matrix_trajectory(
        lambda ps: torch.optim.Muon(
            ps, weight_decay=0.1, adjust_lr_fn=adjust_lr, ns_coefficients=NS_COEFFICIENTS, **settings
        )
    )
    for step, (xs, ys) in enumerate(zip(ours, torch_)):
        for x, y in zip(xs, ys):
            assert torch.allclose(x, y, atol=1e-6, rtol=0), f"step {step}: max diff {(x - y).abs().max()}"
    assert not torch.allclose(ours[0][0], ours[-1][0])  # the matrices moved


def test_the_split_sends_hidden_matrices_to_muon_and_the_rest_to_adamw(tiny_model):
    hidden, embed, no_decay = muon_param_groups(tiny_model)
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    assert {names[id(p)] for p in embed} == {"transformer.wte.weight", "transformer.wpe.weight"}  # tied head
    assert all(p.dim() == 1 for p in no_decay) and no_decay
    hidden_names = {names[id(p)] for p in hidden}
    assert hidden_names and all(".h." in n and n.endswith("weight") for n in hidden_names)
    assert len(hidden) + len(embed) + len(no_decay) == len(list(tiny_model.parameters()))


@needs_torch_muon
def test_make_optimizer_muon_equals_torch_muon_plus_adamw_on_a_gpt(tiny_model):
    """optim.name=muon on a GPT: torch.optim.Muon on the hidden matrices at muon_lr and
    torch.optim.AdamW on the rest at lr (decay on embeddings, not on gains), the same steps."""
    o = OptimSection(name="muon", lr=1e-2, muon_lr=0.03, weight_decay=0.1, muon_weight_decay=0.05)
    torch.manual_seed(0)
    batches = [torch.randint(0, tiny_model.config.vocab_size, (2, 9)) for _ in range(4)]
    ours_model, ref_model = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    ours = make_optimizer(ours_model, o)
    hidden, embed, no_decay = muon_param_groups(ref_model)
    muon = torch.optim.Muon(
        hidden, lr=o.muon_lr, weight_decay=o.muon_weight_decay, momentum=o.muon_momentum, nesterov=True
    )
    adamw = torch.optim.AdamW(
        [dict(params=embed, weight_decay=o.weight_decay), dict(params=no_decay, weight_decay=0.0)],
        lr=o.lr,
        betas=(o.beta1, o.beta2),
        eps=o.eps,
        foreach=False,
    )
    for x in batches:
        # one gradient for both (copied across): bf16 Newton-Schulz would amplify AdamW's ulp-level
        # rounding differences, fed back through the forward, into visible ones
        for opt in (ours, muon, adamw):
            opt.zero_grad()
        ours_model(x[:, :-1], x[:, 1:])[1].backward()
        for p, q in zip(ours_model.parameters(), ref_model.parameters()):
            q.grad = p.grad.clone()
        for opt in (ours, muon, adamw):
            opt.step()
    for (name, p), q in zip(ours_model.state_dict().items(), ref_model.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6, rtol=0), (name, (p - q).abs().max())
    assert not torch.equal(
        ours_model.transformer.h[0].mlp.c_fc.weight, tiny_model.transformer.h[0].mlp.c_fc.weight
    )


def test_the_schedule_scales_muon_and_adamw_lrs_alike(tiny_model):
    optimizer = make_optimizer(tiny_model, OptimSection(name="muon", lr=1e-3, muon_lr=0.02))
    set_lr(optimizer, 5e-4)  # half the peak, as a schedule would
    muon_group, *adamw_groups = optimizer.param_groups
    assert muon_group["use_muon"] and muon_group["lr"] == pytest.approx(0.01)
    assert all(not g["use_muon"] and g["lr"] == 5e-4 for g in adamw_groups)


def test_muon_keeps_one_momentum_buffer_per_matrix(tiny_model):
    optimizer = make_optimizer(tiny_model, OptimSection(name="muon"))
    for p in tiny_model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    hidden = muon_param_groups(tiny_model)[0]
    assert all(set(optimizer.state[p]) == {"momentum_buffer"} for p in hidden)


def test_bad_muon_settings_are_refused(tiny_model):
    for bad, message in [
        (dict(muon_momentum=1.0), "muon_momentum"),
        (dict(muon_adjust_lr="spectral"), "muon_adjust_lr"),
        (dict(muon_ns_steps=0), "muon_ns_steps"),
        (dict(muon_lr=0.0), "muon_lr"),
        (dict(muon_weight_decay=-1.0), "muon_weight_decay"),
    ]:
        with pytest.raises(GptlabError, match=message):
            make_optimizer(tiny_model, OptimSection(name="muon", **bad))
    with pytest.raises(GptlabError, match="matrices only"):
        Muon([torch.nn.Parameter(torch.ones(3))])
