"""Optimisers written out, for study: Adam/AdamW, SGD with momentum, Adafactor and Lion.

``optim.name`` picks one (`make_optimizer`); every one steps over the same two parameter groups
(`gptlab.train.optim.param_groups`: weight decay on matrices, not on biases and norm gains) and
saves and loads its state with ``state_dict``/``load_state_dict`` (plain tensors and ints, so
checkpoints stay ``weights_only`` loadable and a resumed run takes the same steps).

    adamw          torch.optim.AdamW (fused kernel): the fast default
    adamw-scratch  `Adam` below with decoupled decay: the teaching version of the default; the
                   same trajectory (tests/train/test_optimizers.py), several times slower
    adam           `Adam` with L2 decay added to the gradient (Kingma & Ba, torch.optim.Adam)
    sgd            `SGD`: heavy-ball momentum (optim.momentum), Nesterov with optim.nesterov
    adafactor      `Adafactor` (Shazeer & Stern 2018): a matrix's second moment kept as a row and
                   a column vector (r + c numbers instead of r * c), update clipping, optional
                   relative step size; optim.beta1=0 keeps no first moment (the paper's default)
    lion           `Lion` (Chen et al. 2023): the sign of an interpolated momentum, one state
                   tensor; wants a learning rate ~3-10x smaller than AdamW's
    muon           `gptlab.train.muon.Muon`: the orthogonalised (Newton-Schulz) Nesterov momentum
                   for the hidden matrices at optim.muon_lr, AdamW at optim.lr for embeddings,
                   the head, norms and biases (its own parameter groups, not the two above)

Each ``step`` is a plain loop over the parameters, written to be read next to the paper's
pseudo-code; only "adamw" is tuned for speed.
"""

from __future__ import annotations

import math

import torch

from gptlab.errors import GptlabError
from gptlab.train.muon import ADJUST_LR, make_muon
from gptlab.train.optim import adam_update, make_adamw, param_groups

OPTIMIZERS = ("adamw", "adamw-scratch", "adam", "sgd", "adafactor", "lion", "muon")
ADAFACTOR_EPS = (1e-30, 1e-3)  # (added to g^2, floor of the parameter scale): the paper's values


class Adam(torch.optim.Optimizer):
    """Adam with bias correction (`gptlab.train.optim.adam_update`). ``decoupled=True`` is AdamW:
    decay apart from the gradient; ``False`` is L2 decay added to the gradient (torch.optim.Adam)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=True):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = _call(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    adam_update(p, self.state[p], group)
        return loss


class SGD(torch.optim.Optimizer):
    """SGD with heavy-ball momentum: ``buf = momentum * buf + g``, step along ``buf``; Nesterov
    steps along ``g + momentum * buf`` (the gradient at the look-ahead point, to first order).
    Weight decay is L2 (added to the gradient), as in torch.optim.SGD."""

    def __init__(self, params, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0):
        if nesterov and momentum <= 0:
            raise GptlabError("Nesterov momentum needs optim.momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _call(closure)
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if mu:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()  # the first step is a plain step
                    else:
                        state["momentum_buffer"].mul_(mu).add_(grad)
                    buf = state["momentum_buffer"]
                    grad = grad.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(grad, alpha=-group["lr"])
        return loss


class Adafactor(torch.optim.Optimizer):
    """Adafactor (Shazeer & Stern 2018), with the options of transformers' implementation.

    - factored second moment: for a matrix, running means of g^2 over its rows (R) and over its
      columns (C); v is approximated by the rank-1 ``R C^T / mean(R)``;
    - ``beta2`` grows with the step: ``1 - t^decay_rate`` (no bias correction needed);
    - update clipping: the update ``g / sqrt(v)`` is scaled down to RMS ``clip_threshold``;
    - ``relative_step``: the step size is ``min(1e-2, 1/sqrt(t))`` (``1e-6 t`` instead of 1e-2 with
      ``warmup_init``) and ``lr`` is ignored; ``scale_parameter``: the step size is multiplied by
      the parameter's RMS (floored at 1e-3), so it is relative to the weights' size;
    - ``beta1``: None keeps no first moment (the memory saving), else a running mean of updates;
    - weight decay: decoupled, ``p -= weight_decay * step_size * p``.
    """

    def __init__(
        self,
        params,
        lr=None,
        beta1=None,
        weight_decay=0.0,
        clip_threshold=1.0,
        decay_rate=-0.8,
        scale_parameter=True,
        relative_step=True,
        warmup_init=False,
        eps=ADAFACTOR_EPS,
    ):
        if relative_step and lr is not None:
            raise GptlabError("Adafactor: relative_step computes the step size; give no lr with it")
        if not relative_step and lr is None:
            raise GptlabError("Adafactor: without relative_step an lr is needed")
        if warmup_init and not relative_step:
            raise GptlabError("Adafactor: warmup_init needs relative_step")
        defaults = dict(
            lr=lr,
            beta1=beta1,
            weight_decay=weight_decay,
            clip_threshold=clip_threshold,
            decay_rate=decay_rate,
            scale_parameter=scale_parameter,
            relative_step=relative_step,
            warmup_init=warmup_init,
            eps=eps,
        )
        super().__init__(params, defaults)

    @staticmethod
    def step_size(group: dict, step: int, param_rms: float) -> float:
        size = group["lr"]
        if group["relative_step"]:
            size = min(1e-6 * step if group["warmup_init"] else 1e-2, 1 / math.sqrt(step))
        if group["scale_parameter"]:
            size *= max(group["eps"][1], param_rms)
        return size

    @torch.no_grad()
    def step(self, closure=None):
        loss = _call(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _at_least_fp32(p.grad)
                factored = grad.dim() >= 2
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    if group["beta1"] is not None:
                        state["exp_avg"] = torch.zeros_like(grad)
                    if factored:
                        state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                        state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                t = state["step"]
                weights = _at_least_fp32(p)
                size = self.step_size(group, t, _rms(weights).item())
                beta2 = 1 - t ** group["decay_rate"]
                squared = grad.square().add_(group["eps"][0])
                if factored:
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    row.mul_(beta2).add_(squared.mean(dim=-1), alpha=1 - beta2)
                    col.mul_(beta2).add_(squared.mean(dim=-2), alpha=1 - beta2)
                    # 1/sqrt(v) for v ~ R C^T / mean(R), without forming v's r x c matrix first
                    inv_row = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)
                    update = inv_row * col.unsqueeze(-2).rsqrt() * grad
                else:
                    state["exp_avg_sq"].mul_(beta2).add_(squared, alpha=1 - beta2)
                    update = state["exp_avg_sq"].rsqrt() * grad
                update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0)).mul_(size)
                if group["beta1"] is not None:
                    state["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
                    update = state["exp_avg"]
                if group["weight_decay"]:
                    weights.add_(weights, alpha=-group["weight_decay"] * size)
                weights.sub_(update)
                if weights is not p:  # a bf16/fp16 parameter: computed in fp32, written back
                    p.copy_(weights)
        return loss


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): step along
    ``sign(beta1 * m + (1 - beta1) * g)``, every coordinate by exactly ``lr``; then
    ``m = beta2 * m + (1 - beta2) * g``. Decoupled weight decay as AdamW. One state tensor (m)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _call(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                direction = (m * beta1).add_(p.grad, alpha=1 - beta1).sign_()
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(direction, alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
        return loss


def _call(closure):
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself unless it is half precision (then an fp32 copy): fp64 stays fp64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm(2) / math.sqrt(x.numel())


def check_optim_section(o) -> None:
    """The optimiser keys of ``[optim]`` (an OptimSection), checked before any work."""
    checks = [
        (o.name in OPTIMIZERS, f"optim.name must be one of {', '.join(OPTIMIZERS)}", o.name),
        (0 <= o.momentum < 1, "optim.momentum must be in [0, 1)", o.momentum),
        (not o.nesterov or o.momentum > 0, "optim.nesterov needs optim.momentum > 0", o.momentum),
        (
            o.adafactor_clip_threshold > 0,
            "optim.adafactor_clip_threshold must be > 0",
            o.adafactor_clip_threshold,
        ),
        (o.adafactor_decay_rate < 0, "optim.adafactor_decay_rate must be < 0", o.adafactor_decay_rate),
        (
            not o.adafactor_warmup_init or o.adafactor_relative_step,
            "optim.adafactor_warmup_init needs optim.adafactor_relative_step=true",
            o.adafactor_warmup_init,
        ),
        (o.muon_lr > 0, "optim.muon_lr must be > 0", o.muon_lr),
        (0 <= o.muon_momentum < 1, "optim.muon_momentum must be in [0, 1)", o.muon_momentum),
        (o.muon_weight_decay >= 0, "optim.muon_weight_decay must be >= 0", o.muon_weight_decay),
        (1 <= o.muon_ns_steps <= 20, "optim.muon_ns_steps must be in 1..20", o.muon_ns_steps),
        (
            o.muon_adjust_lr in ADJUST_LR,
            f"optim.muon_adjust_lr must be one of {', '.join(ADJUST_LR)}",
            o.muon_adjust_lr,
        ),
    ]
    for ok, message, value in checks:
        if not ok:
            raise GptlabError(f"{message}, got {value!r}")


def make_optimizer(model: torch.nn.Module, o, device_type: str = "cpu") -> torch.optim.Optimizer:
    """The optimiser ``o.name`` (an OptimSection) over ``param_groups(model, o.weight_decay)``."""
    check_optim_section(o)
    if o.weight_decay < 0:
        raise GptlabError(f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    groups = param_groups(model, o.weight_decay)
    if not any(g["params"] for g in groups):
        raise GptlabError("the model has no trainable parameters")
    betas = (o.beta1, o.beta2)
    if o.name == "adamw":
        return make_adamw(model, o.lr, o.weight_decay, betas, o.eps, device_type)
    if o.name in ("adamw-scratch", "adam"):
        return Adam(groups, lr=o.lr, betas=betas, eps=o.eps, decoupled=o.name == "adamw-scratch")
    if o.name == "sgd":
        return SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    if o.name == "lion":
        return Lion(groups, lr=o.lr, betas=betas)
    if o.name == "muon":
        return make_muon(model, o)
    return Adafactor(
        groups,
        lr=None if o.adafactor_relative_step else o.lr,
        beta1=o.beta1 or None,  # 0: no first moment
        clip_threshold=o.adafactor_clip_threshold,
        decay_rate=o.adafactor_decay_rate,
        scale_parameter=o.adafactor_scale_parameter,
        relative_step=o.adafactor_relative_step,
        warmup_init=o.adafactor_warmup_init,
    )


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimiser's state (moments, factored rows and columns, ...)."""
    return sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
