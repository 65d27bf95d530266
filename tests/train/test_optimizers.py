"""The optimisers of gptlab.train.optimizers against their references: torch.optim (Adam, AdamW,
SGD), transformers' Adafactor, and Lion's update written by hand; checkpoints and exact resume."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch
from samples import TINY_TRAINING

from gptlab.config import OptimSection, load_config
from gptlab.errors import GptlabError
from gptlab.train import read_metrics, train
from gptlab.train.optimizers import OPTIMIZERS, SGD, Adafactor, Adam, Lion, make_optimizer, state_bytes

STEPS = 50


def problem(seed: int = 0):
    """Parameters (a matrix, a vector, a 3-D tensor) and a loss with gradients that change from
    step to step (not a fixed quadratic: the moments must track something), in float64."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (5,), (2, 3, 4)]
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    targets = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]

    def loss(ps, step):
        return sum(((p - t * (1 + 0.1 * step)) ** 4).mean() + p.sin().sum() for p, t in zip(ps, targets))

    return params, loss


def trajectory(make, seed: int = 0, steps: int = STEPS, decay: float = 0.1) -> list[list[torch.Tensor]]:
    """The parameters after each of ``steps`` steps of ``make(param_groups)``: the matrix and
    the 3-D tensor decay, the vector does not (as gptlab's groups)."""
    init, loss = problem(seed)
    ps = [p.clone().requires_grad_(True) for p in init]
    optimizer = make(
        [{"params": [ps[0], ps[2]], "weight_decay": decay}, {"params": [ps[1]], "weight_decay": 0.0}]
    )
    out = []
    for step in range(steps):
        optimizer.zero_grad()
        loss(ps, step).backward()
        optimizer.step()
        out.append([p.detach().clone() for p in ps])
    return out


def assert_same(a, b, tol):
    for step, (xs, ys) in enumerate(zip(a, b)):
        for x, y in zip(xs, ys):
            assert torch.allclose(x, y, atol=tol, rtol=0), f"step {step}: max diff {(x - y).abs().max()}"
    assert not torch.equal(a[0][0], a[-1][0])  # the parameters moved


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.95)])
def test_adamw_from_scratch_follows_torch_adamw(betas):
    ours = trajectory(lambda g: Adam(g, lr=1e-2, betas=betas, eps=1e-8, decoupled=True))
    ref = trajectory(lambda g: torch.optim.AdamW(g, lr=1e-2, betas=betas, eps=1e-8, foreach=False))
    assert_same(ours, ref, 1e-6)


def test_adam_from_scratch_follows_torch_adam_with_l2_decay():
    ours = trajectory(lambda g: Adam(g, lr=1e-2, betas=(0.9, 0.99), decoupled=False))
    ref = trajectory(lambda g: torch.optim.Adam(g, lr=1e-2, betas=(0.9, 0.99), foreach=False))
    assert_same(ours, ref, 1e-6)


def test_adam_and_adamw_differ_when_weights_decay():
    """The decoupled decay is a different optimiser, not a renaming."""
    adam = trajectory(lambda g: Adam(g, lr=1e-2, decoupled=False), decay=0.5)
    adamw = trajectory(lambda g: Adam(g, lr=1e-2, decoupled=True), decay=0.5)
    assert (adam[-1][0] - adamw[-1][0]).abs().max() > 1e-3
    assert torch.equal(adam[0][1], adamw[0][1])  # the undecayed vector takes the same first step


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd_from_scratch_follows_torch_sgd(momentum, nesterov):
    ours = trajectory(lambda g: SGD(g, lr=1e-2, momentum=momentum, nesterov=nesterov))
    ref = trajectory(
        lambda g: torch.optim.SGD(g, lr=1e-2, momentum=momentum, nesterov=nesterov, foreach=False)
    )
    assert_same(ours, ref, 1e-6)


ADAFACTOR_OPTIONS = [
    dict(lr=None, relative_step=True, scale_parameter=True, warmup_init=False, beta1=None),
    dict(lr=None, relative_step=True, scale_parameter=True, warmup_init=True, beta1=None),
    dict(lr=None, relative_step=True, scale_parameter=False, warmup_init=False, beta1=0.9),
    dict(lr=1e-2, relative_step=False, scale_parameter=True, warmup_init=False, beta1=None),
    dict(lr=3e-2, relative_step=False, scale_parameter=False, warmup_init=False, beta1=0.9),
    dict(
        lr=1e-2, relative_step=False, scale_parameter=True, warmup_init=False, beta1=0.9, clip_threshold=0.5
    ),
    dict(lr=1e-2, relative_step=False, scale_parameter=False, warmup_init=False, beta1=None, decay_rate=-0.5),
]


@pytest.mark.parametrize(
    "options", ADAFACTOR_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_adafactor_follows_transformers_adafactor(options):
    reference = pytest.importorskip("transformers.optimization").Adafactor
    ours = trajectory(lambda g: Adafactor(g, **options))
    ref = trajectory(lambda g: reference(g, **options))
    assert_same(ours, ref, 1e-5)


def test_adafactor_keeps_a_row_and_a_column_per_matrix():
    p = torch.zeros(64, 32, requires_grad=True)
    optimizer = Adafactor([p], lr=1e-2, relative_step=False)
    p.grad = torch.ones_like(p)
    optimizer.step()
    state = optimizer.state[p]
    assert state["exp_avg_sq_row"].shape == (64,) and state["exp_avg_sq_col"].shape == (32,)
    assert state_bytes(optimizer) == (64 + 32) * 4  # vs 2 * 64 * 32 * 4 for Adam's m and v


def test_lion_step_equals_the_hand_computation():
    """Two steps on a 3-vector, every number worked out from the paper's update rule."""
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    optimizer = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    p.grad = torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64)
    optimizer.step()
    # m = 0: direction sign(0.1 * g) = [1, -1, 0]; p * (1 - 0.1 * 0.5) - 0.1 * direction
    after1 = torch.tensor([1.0 * 0.95 - 0.1, -2.0 * 0.95 + 0.1, 0.5 * 0.95], dtype=torch.float64)
    assert torch.allclose(p.detach(), after1)
    m1 = torch.tensor([0.003, -0.002, 0.0], dtype=torch.float64)  # 0.01 * g
    assert torch.allclose(optimizer.state[p]["exp_avg"], m1)
    p.grad = torch.tensor([-0.001, -0.5, 0.2], dtype=torch.float64)
    optimizer.step()
    # 0.9 * m1 + 0.1 * g = [0.0027 - 0.0001, -0.0018 - 0.05, 0.02]: signs [1, -1, 1]
    after2 = after1 * 0.95 - 0.1 * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(p.detach(), after2)
    assert torch.allclose(optimizer.state[p]["exp_avg"], 0.99 * m1 + 0.01 * p.grad)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_continues_the_same_trajectory(name, tiny_model):
    """Save after 3 steps, load into a fresh optimiser, step on: the same weights as never stopping."""
    o = OptimSection(name=name, lr=1e-2)
    torch.manual_seed(0)
    batches = [torch.randint(0, tiny_model.config.vocab_size, (2, 9)) for _ in range(5)]

    def step(model, optimizer, x):
        optimizer.zero_grad()
        model(x[:, :-1], x[:, 1:])[1].backward()
        optimizer.step()

    a = copy.deepcopy(tiny_model).eval()  # no dropout: both copies see the same function
    opt_a = make_optimizer(a, o)
    for x in batches[:3]:
        step(a, opt_a, x)
    b = copy.deepcopy(a)
    opt_b = make_optimizer(b, o)
    saved = io.BytesIO()  # as a checkpoint keeps it: loadable without unpickling code
    torch.save(opt_a.state_dict(), saved)
    saved.seek(0)
    opt_b.load_state_dict(torch.load(saved, weights_only=True))
    for x in batches[3:]:
        step(a, opt_a, x)
        step(b, opt_b, x)
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), key


def test_state_bytes_per_parameter(tiny_model):
    """Adam keeps two numbers per parameter, Lion and SGD one, Adafactor (no beta1) much less."""
    n = sum(p.numel() for p in tiny_model.parameters())
    per_param = {}
    for name in ("adamw-scratch", "sgd", "lion", "adafactor"):
        o = OptimSection(name=name, lr=1e-3, beta1=0.0 if name == "adafactor" else 0.9)
        optimizer = make_optimizer(tiny_model, o)
        for p in tiny_model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        per_param[name] = state_bytes(optimizer) / n
    assert per_param["adamw-scratch"] == 8 and per_param["sgd"] == 4 and per_param["lion"] == 4
    assert per_param["adafactor"] < 0.5


def test_bad_optimizer_settings_are_refused(tiny_model):
    for bad, message in [
        (dict(name="adagrad"), "optim.name"),
        (dict(name="sgd", momentum=1.0), "optim.momentum"),
        (dict(name="sgd", momentum=0.0, nesterov=True), "optim.nesterov"),
        (dict(name="adafactor", adafactor_warmup_init=True), "adafactor_warmup_init"),
        (dict(name="adafactor", adafactor_decay_rate=0.5), "adafactor_decay_rate"),
    ]:
        with pytest.raises(GptlabError, match=message):
            make_optimizer(tiny_model, OptimSection(**bad))


def resume_config(tmp_path, name, optimizer):
    return load_config(
        None,
        [
            *TINY_TRAINING,
            "train.max_steps=6",
            "train.eval_every=3",
            "optim.warmup_steps=2",
            "optim.lr=3e-3",
            f'optim.name="{optimizer}"',
            f"train.out_dir={json.dumps(str(tmp_path / name))}",
        ],
    )


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_interrupted_run_resumes_exactly_with_each_optimizer(tmp_path, optimizer):
    full = train(resume_config(tmp_path, "full", optimizer))
    assert full.step == 6

    def interrupt(step, record):
        if step == 4:  # after the step-3 checkpoint: the Ctrl-C handler writes step 4's
            raise KeyboardInterrupt

    config = resume_config(tmp_path, "split", optimizer)
    assert train(config, on_step=interrupt).step == 4
    assert train(config, resume=True).step == 6
    logged = [[(r["step"], r["loss"]) for r in read_metrics(tmp_path / n) if r["kind"] == "train"] for n in ("full", "split")]  # fmt: skip
    assert logged[0] == logged[1]
