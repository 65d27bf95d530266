"""Differentially private training (DP-SGD) for pretraining and classifier fine-tuning.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy") makes each optimiser step
a Gaussian mechanism whose sensitivity to any one training example is bounded:

    1. sample a batch by Poisson sampling: every example is in it independently with rate q
    2. compute each example's own gradient g_i (per-sample gradients)
    3. clip each to L2 norm C:            g_i * min(1, C / ||g_i||)
    4. sum, add Gaussian noise:           sum_i clip(g_i) + N(0, sigma^2 C^2 I)
    5. divide by the expected batch size q N, and hand the result to the optimiser

The optimiser (AdamW, fused or not) only ever sees the privatised gradient, so its update is
post-processing and costs no privacy: it is not wrapped.

Accounting: T steps of the sampled Gaussian mechanism are composed in Renyi DP (Mironov 2017,
"Renyi Differential Privacy"), with the RDP of one step at order alpha computed exactly for
integer and fractional alphas (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the
Sampled Gaussian Mechanism", section 3.3) and converted to (epsilon, delta)-DP with the bound of
Balle et al. 2020 ("Hypothesis Testing Interpretations and Renyi Differential Privacy", Thm 21).
The reported epsilon is opacus's RDP accountant's (`opacus_epsilon`); `rdp_epsilon` is the same
analysis written here from the papers, and tests/train/test_dp.py checks the two agree to 1e-6.

Why per-sample gradients come from torch.func and not opacus's GradSampleModule: GradSampleModule
computes them per layer from each layer's input and output gradient, which assumes every layer
input has a batch dimension. Our GPT adds the learned position table ``wpe(pos)`` with pos of
shape (T,), broadcast over the batch: the per-sample gradient of ``wpe`` is summed over the
batch before any hook sees it, and GradSampleModule fails with a shape error (on a RoPE GPT,
which has no such table, its gradients equal ours exactly, tied embedding included: tested).
``torch.func.vmap(grad(loss of one example))`` differentiates the whole model per example, so it
is right for any architecture (tied weights, position tables, RMSNorm, LoRA). It runs in chunks
of the physical batch size, clipping and summing each chunk at once, so memory holds one chunk's
per-sample gradients, never the whole batch's. (PyTorch has no vmap rule for the fused attention
kernel: it falls back to a loop over the examples, slower but exact; the warning is silenced.)

What the guarantee covers, honestly:

- The protected unit is one training example: one text of a classification set, and for
  pretraining one fixed, non-overlapping window of ``block_size + 1`` tokens of the train split
  (`WindowData`). A document or a person spanning several windows gets a weaker guarantee
  (group privacy: roughly k * epsilon for k windows).
- The accounting assumes Poisson sampling, and the batches really are Poisson sampled
  (`PoissonSampler`; their size varies around q N; an empty batch is a noise-only step).
- It covers the weights and what is computed from them alone (samples, val metrics). The train
  loss and train metrics that the loops log are computed on the private data without noise and
  are not covered; do not publish them as private.
- Noise comes from PyTorch's seeded PRNG (so that resume is exact), not a cryptographically
  secure generator: fine for research and audits, not for a deployment facing an adversary who
  could predict the seed (opacus's ``secure_mode`` exists for that).
- delta defaults to the largest power of ten below 1/N (at most 1e-5): delta must be well below
  1/N, since a mechanism that publishes one random example outright is (0, 1/N)-DP.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gptlab.errors import GptlabError

# the RDP orders opacus's RDPAccountant searches (so that epsilons compare one to one)
DEFAULT_ALPHAS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
MAX_DELTA = 1e-5
CLIP_EPS = 1e-6  # added to the per-sample norm before dividing, as opacus does


# ---------------------------------------------------------------------------------------------
# accounting: RDP of the sampled Gaussian mechanism (from the papers)


def _log_add(a: float, b: float) -> float:
    """log(e^a + e^b) without overflow."""
    lo, hi = min(a, b), max(a, b)
    if lo == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


def _log_sub(a: float, b: float) -> float:
    """log(e^a - e^b) for a >= b."""
    if b == -math.inf:
        return a
    if a <= b:
        return -math.inf
    try:
        return b + math.log(math.expm1(a - b))
    except OverflowError:
        return a


def _log_binom(n: float, k: int) -> tuple[float, float]:
    """log |binom(n, k)| and its sign, for a real n >= 0 and an integer k >= 0."""
    from scipy.special import binom

    value = float(binom(n, k))
    return (math.log(abs(value)) if value != 0 else -math.inf), math.copysign(1.0, value)


def _log_erfc(x: float) -> float:
    """log(erfc(x)), accurate for large x (where erfc underflows)."""
    from scipy.special import log_ndtr

    return math.log(2.0) + float(log_ndtr(-x * math.sqrt(2.0)))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for an integer alpha: A_alpha = E_{z~mu0}[(mu(z)/mu0(z))^alpha] with
    mu = (1-q) mu0 + q mu1 (mu0 = N(0, sigma^2), mu1 = N(1, sigma^2)), expanded binomially:
    sum_k binom(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))."""
    log_a = -math.inf
    for k in range(alpha + 1):
        log_coef, _ = _log_binom(alpha, k)
        term = log_coef + k * math.log(q) + (alpha - k) * math.log1p(-q) + (k * k - k) / (2 * sigma**2)
        log_a = _log_add(log_a, term)
    return log_a


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for a fractional alpha (Mironov et al. 2019, section 3.3): split the integral at
    z0, where mu0 and mu cross, and sum the two convergent binomial series (generalised binomial
    coefficients: their sign alternates) until the terms fall below e^-30."""
    log_a0, log_a1 = -math.inf, -math.inf
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    k = 0
    while True:
        log_coef, sign = _log_binom(alpha, k)
        j = alpha - k
        log_t0 = log_coef + k * math.log(q) + j * math.log1p(-q)
        log_t1 = log_coef + j * math.log(q) + k * math.log1p(-q)
        log_e0 = math.log(0.5) + _log_erfc((k - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (k * k - k) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if sign > 0:
            log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        else:
            log_a0, log_a1 = _log_sub(log_a0, log_s0), _log_sub(log_a1, log_s1)
        k += 1
        if max(log_s0, log_s1) < -30:
            return _log_add(log_a0, log_a1)


def rdp_sampled_gaussian(q: float, sigma: float, alpha: float) -> float:
    """RDP at order ``alpha`` of one step of the sampled Gaussian mechanism: sampling rate q,
    noise multiplier sigma (noise std / sensitivity). log(A_alpha) / (alpha - 1)."""
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:  # no subsampling: the plain Gaussian mechanism
        return alpha / (2 * sigma**2)
    if math.isinf(alpha):
        return math.inf
    if float(alpha).is_integer():
        return _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
    return _log_a_frac(q, sigma, alpha) / (alpha - 1)


def rdp_to_epsilon(alphas, rdp, delta: float) -> tuple[float, float]:
    """The smallest epsilon over the orders of RDP (alpha, rdp(alpha)) -> (epsilon, delta)-DP,
    with Balle et al. 2020, Thm 21: eps = rdp + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1).
    Returns (epsilon, the best alpha)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    rdp = np.asarray(rdp, dtype=np.float64)
    eps = rdp - (np.log(delta) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)
    if np.isnan(eps).all():
        return math.inf, math.nan
    best = int(np.nanargmin(eps))
    return float(eps[best]), float(alphas[best])


def rdp_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, alphas=DEFAULT_ALPHAS
) -> float:
    """Epsilon after ``steps`` DP-SGD steps (RDP composes additively over steps), from scratch."""
    if steps == 0:
        return 0.0
    rdp = [steps * rdp_sampled_gaussian(sample_rate, noise_multiplier, a) for a in alphas]
    return rdp_to_epsilon(alphas, rdp, delta)[0]


def _require_opacus():
    try:
        import opacus  # noqa: F401
    except ModuleNotFoundError:
        raise GptlabError(
            "differentially private training needs opacus (its accountant reports epsilon): "
            "pip install 'opacus>=1.5'"
        ) from None


def opacus_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon after ``steps`` steps, from opacus's RDP accountant (what runs report)."""
    _require_opacus()
    from opacus.accountants import RDPAccountant

    if steps == 0:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": epsilon is still valid
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=delta))


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier that spends at most ``target_epsilon`` in ``steps`` steps (opacus's
    binary search over its RDP accountant, to 0.01 in epsilon)."""
    _require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant="rdp",
                )
            )
        except ValueError as e:  # "The privacy budget is too low."
            raise GptlabError(
                f"epsilon {target_epsilon} cannot be reached in {steps} steps at sampling rate "
                f"{sample_rate:.3g} ({e}): raise the epsilon, or train fewer steps / smaller batches"
            ) from None


def default_delta(n: int) -> float:
    """The largest power of ten strictly below 1/N, and at most 1e-5 (N = protected examples)."""
    if n < 1:
        raise GptlabError("differential privacy needs at least one training example")
    return min(MAX_DELTA, 10.0 ** -len(str(int(n))))  # n < 10^digits, so 10^-digits < 1/n


# ---------------------------------------------------------------------------------------------
# the plan of a DP run: what is chosen up front, and what is reported


@dataclass
class DPPlan:
    target_epsilon: float
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float  # q: probability that an example is in a given step's batch
    num_examples: int  # N: protected examples (texts, or token windows)
    expected_batch_size: float  # q N: the divisor of the noisy gradient sum
    planned_steps: int
    unit: str  # what one protected example is

    @classmethod
    def make(
        cls,
        target_epsilon: float,
        max_grad_norm: float,
        num_examples: int,
        batch_size: int,
        steps: int,
        delta: float | None = None,
        unit: str = "one training example",
    ) -> DPPlan:
        """Calibrate the noise so that ``steps`` steps at expected batch ``batch_size`` out of
        ``num_examples`` spend ``target_epsilon`` at ``delta`` (default: `default_delta`)."""
        if not target_epsilon > 0 or not math.isfinite(target_epsilon):
            raise GptlabError(f"dp epsilon must be a positive number, got {target_epsilon!r}")
        if not max_grad_norm > 0:
            raise GptlabError(f"dp max grad norm must be positive, got {max_grad_norm!r}")
        if steps < 1:
            raise GptlabError(f"a DP run needs at least one step, got {steps}")
        delta = delta or default_delta(num_examples)
        if not 0 < delta < 1:
            raise GptlabError(f"dp delta must be in (0, 1), got {delta!r}")
        if batch_size >= num_examples:
            raise GptlabError(
                f"the batch ({batch_size}) is not smaller than the {num_examples} protected examples: "
                "DP-SGD needs sampling (q = batch / N < 1); use a smaller batch or more data"
            )
        q = batch_size / num_examples
        sigma = noise_multiplier_for(target_epsilon, delta, q, steps)
        return cls(
            target_epsilon, delta, max_grad_norm, sigma, q, num_examples, q * num_examples, steps, unit
        )

    def epsilon(self, steps: int) -> float:
        return opacus_epsilon(self.noise_multiplier, self.sample_rate, steps, self.delta)

    def report(self, steps: int) -> dict:
        """What a run writes to its results and prints: epsilon spent after ``steps`` steps."""
        return {
            "epsilon": self.epsilon(steps),
            "steps": steps,
            **asdict(self),
            "accountant": "rdp (opacus RDPAccountant), Poisson sampling",
        }


def format_privacy(report: dict) -> str:
    return (
        f"differential privacy: epsilon {report['epsilon']:.3f} (target {report['target_epsilon']:g}) "
        f"at delta {report['delta']:.0e} after {report['steps']} steps; noise multiplier "
        f"{report['noise_multiplier']:.3f}, max grad norm {report['max_grad_norm']:g}, sample rate "
        f"{report['sample_rate']:.4g} (N = {report['num_examples']}, unit: {report['unit']})"
    )


# ---------------------------------------------------------------------------------------------
# sampling


class PoissonSampler:
    """Poisson sampling of ``n`` examples at rate ``q``: every example is in a batch independently
    with probability q. The batch at ``step`` is a function of (seed, step) alone, so a resumed
    run draws the same batches."""

    def __init__(self, n: int, sample_rate: float, seed: int) -> None:
        self.n, self.sample_rate, self.seed = n, sample_rate, seed

    def indices(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return torch.nonzero(torch.rand(self.n, generator=g) < self.sample_rate).flatten()  # (B,)


class WindowData:
    """The train split cut into fixed, non-overlapping windows of ``block_size + 1`` tokens: the
    protected examples of DP pretraining (each token belongs to one window)."""

    def __init__(self, tokens, block_size: int) -> None:
        self.tokens, self.block = tokens, block_size
        self.n = (len(tokens) - 1) // (block_size + 1)
        if self.n < 2:
            raise GptlabError(
                f"the train split ({len(tokens)} tokens) holds fewer than 2 windows of {block_size + 1} "
                "tokens: too little data for DP training"
            )

    def __len__(self) -> int:
        return self.n

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y (B, block_size) for the window ``indices``."""
        w = self.block + 1
        rows = [np.asarray(self.tokens[i * w : (i + 1) * w], dtype=np.int64) for i in indices.tolist()]
        if not rows:
            empty = torch.empty(0, self.block, dtype=torch.long)
            return empty, empty
        data = torch.from_numpy(np.stack(rows))  # (B, block + 1)
        return data[:, :-1], data[:, 1:]


# ---------------------------------------------------------------------------------------------
# the DP-SGD gradient


SampleLoss = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def check_dp_model(config) -> None:
    """GptlabError unless per-example gradients (torch.func.vmap) can run through the model of
    ``config``: a mixture of experts routes with data-dependent shapes (``nonzero``), and torch's
    GRU has no working vmap rule (the LSTM's works)."""
    if config.mlp == "moe" and config.arch == "gpt":
        raise GptlabError(
            "DP training (torch.func per-example gradients) cannot route tokens: use mlp 'dense'"
        )
    if config.arch == "gru":
        raise GptlabError(
            "DP training (torch.func per-example gradients) does not run through torch's GRU: use "
            "arch 'lstm' or 'gpt'"
        )


def per_sample_gradients(
    module: nn.Module, sample_loss: SampleLoss, params: dict[str, torch.Tensor], *batch: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Per-example gradients of ``sample_loss(call, *one_example) -> (loss, aux)`` with respect to
    ``params`` (name -> tensor, the trainable ones of ``module``; the others stay as they are), by
    vmap over grad. ``call(*args)`` runs ``module`` with ``params`` swapped in (functional_call).
    Returns ({name: (B, *shape)}, losses (B,), aux (B, ...))."""
    from torch.func import functional_call, grad, vmap

    def one(p, *example):
        loss, aux = sample_loss(lambda *args: functional_call(module, p, args), *example)
        return loss, (loss.detach(), aux)

    with warnings.catch_warnings():  # no vmap rule for fused attention: a per-example loop, exact
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        grads, (losses, aux) = vmap(
            grad(one, has_aux=True), in_dims=(None,) + (0,) * len(batch), randomness="different"
        )(params, *batch)
    return grads, losses, aux


def clip_and_accumulate(
    grads: dict[str, torch.Tensor], max_grad_norm: float, into: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Clip each example's gradient (over all parameters together) to L2 norm ``max_grad_norm``
    and add the sum over examples into ``into``. Returns the per-example norms (B,) before clipping."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], dim=1).norm(dim=1)  # (B,)
    factor = (max_grad_norm / (norms + CLIP_EPS)).clamp(max=1.0)  # (B,)
    for name, g in grads.items():
        into[name] += torch.einsum("b,b...->...", factor.to(g.dtype), g)
    return norms


def add_noise_and_average(
    sums: dict[str, torch.Tensor],
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """(sum of clipped gradients + N(0, sigma^2 C^2)) / expected batch size, per parameter."""
    std = noise_multiplier * max_grad_norm
    out = {}
    for name, s in sums.items():
        noise = torch.normal(0.0, std, s.shape, generator=generator, device=s.device, dtype=s.dtype)
        out[name] = (s + noise) / expected_batch_size
    return out


@dataclass
class DPStepStats:
    batch_size: int  # examples Poisson sampling put in this step
    loss_sum: float  # sum of their (unclipped) losses
    clipped_fraction: float  # share of examples whose gradient norm exceeded C
    aux: torch.Tensor | None  # the per-example aux outputs (e.g. classifier logits)


def dp_sgd_gradients(
    module: nn.Module,
    sample_loss: SampleLoss,
    batch: tuple[torch.Tensor, ...],
    max_grad_norm: float,
    noise_multiplier: float,
    expected_batch_size: float,
    chunk_size: int,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], DPStepStats]:
    """The privatised gradient of one DP-SGD step, {name: tensor} for ``module``'s trainable
    parameters: per-example gradients in chunks of ``chunk_size`` (vmap), clipped to
    ``max_grad_norm``, summed, Gaussian noise of std ``noise_multiplier * max_grad_norm`` added,
    divided by ``expected_batch_size``. An empty batch gives pure noise (a valid DP step)."""
    params = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise GptlabError("the model has no trainable parameters")
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    n = batch[0].shape[0] if batch else 0
    loss_sum, clipped, aux_parts = 0.0, 0, []
    for start in range(0, n, chunk_size):
        chunk = tuple(t[start : start + chunk_size] for t in batch)
        grads, losses, aux = per_sample_gradients(module, sample_loss, params, *chunk)
        norms = clip_and_accumulate(grads, max_grad_norm, sums)
        del grads  # (chunk, *shape) per parameter: the memory peak; free it before the next chunk
        loss_sum += float(losses.sum())
        clipped += int((norms > max_grad_norm).sum())
        aux_parts.append(aux.detach())
    out = add_noise_and_average(sums, noise_multiplier, max_grad_norm, expected_batch_size, generator)
    aux_all = torch.cat(aux_parts) if aux_parts else None
    return out, DPStepStats(n, loss_sum, clipped / n if n else 0.0, aux_all)


def set_gradients(module: nn.Module, grads: dict[str, torch.Tensor]) -> None:
    """Put ``grads`` into ``.grad`` of ``module``'s parameters (by name), for the optimiser."""
    for name, p in module.named_parameters():
        if name in grads:
            p.grad = grads[name].to(p.dtype)


# ---------------------------------------------------------------------------------------------
# per-example losses of our models


def lm_sample_loss(call, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One window x, y (T,) of a GPT: mean next-token cross-entropy (the batch loss is the mean of
    these over equal-length windows, so the sum of these gradients / B is the usual gradient)."""
    _, loss = call(x[None], y[None])  # GPT.forward((1, T), (1, T))
    return loss, loss.detach()


class ClassifierSampleLoss(nn.Module):
    """One example's loss of a `GPTClassifier`, written for vmap: GPTClassifier.features checks
    ``lengths`` with Python ``bool(...)``, which cannot run on vmap's batched tensors, so pooling
    is done with masks here (the lengths are checked once per batch, outside vmap, by the caller's
    collate). Same numbers as GPTClassifier.forward on a batch of one (tested). With class weights
    the loss is w_y * CE (the sum over the batch then weighs classes as the weighted mean does)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.clf = classifier

    def forward(self, idx: torch.Tensor, length: torch.Tensor, label: torch.Tensor):
        import torch.nn.functional as F

        clf = self.clf
        T = idx.shape[0]
        x = clf.gpt.head_input(idx[None])[0]  # (T, C), after the final norm
        pos = torch.arange(T, device=idx.device)  # (T,)
        if clf.pooling == "last":
            weights = (pos == length - 1).to(x.dtype)  # (T,): one-hot on the last real token
        else:
            weights = (pos < length).to(x.dtype) / length.to(x.dtype)  # (T,): mean of the real tokens
        logits = clf.head(weights @ x)  # (K,)
        loss = F.cross_entropy(logits[None], label[None])
        if clf.class_weights is not None:
            loss = loss * clf.class_weights[label]
        return loss, logits.detach()


def classifier_sample_loss(call, idx, length, label):
    return call(idx, length, label)


__all__ = [
    "DEFAULT_ALPHAS",
    "ClassifierSampleLoss",
    "DPPlan",
    "DPStepStats",
    "PoissonSampler",
    "WindowData",
    "add_noise_and_average",
    "classifier_sample_loss",
    "clip_and_accumulate",
    "default_delta",
    "dp_sgd_gradients",
    "format_privacy",
    "lm_sample_loss",
    "noise_multiplier_for",
    "opacus_epsilon",
    "per_sample_gradients",
    "rdp_epsilon",
    "rdp_sampled_gaussian",
    "rdp_to_epsilon",
    "set_gradients",
]
