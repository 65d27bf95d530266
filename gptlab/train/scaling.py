"""Scaling-law sweeps (`gptlab sweep scaling`): a ladder of models, or of token budgets, and the
power law L(x) = A * x^(-alpha) + B fitted to their final val losses (Kaplan et al. 2020).

    gptlab sweep scaling --data FILE --n-params 0.1M,0.3M,1M,3M --tokens 2M --out DIR    # L(N)
    gptlab sweep scaling --data FILE --sizes tiny,small,medium --tokens 2M --out DIR     # the same, by name
    gptlab sweep scaling --data FILE --n-params 1M --tokens 0.5M,1M,2M,4M --out DIR      # L(D)

A model ladder has one size per point and one token budget; a data ladder one size and one
budget per point. Every point is an ordinary run, trained by gptlab.train.sweep's machinery: runs
in DIR/runs/<point>, the data tokenized once into DIR/data, DIR/sweep.json recording each run as
it ends, resuming by running the same command again (finished points are kept, an unfinished
one resumes from its checkpoint).

The shape rule (``shape_for``): the non-embedding parameter count of a GPT block stack is
N ~ 12 * n_layer * n_embd^2 (attention 4 d^2, MLP 8 d^2 per layer). The ladder keeps the aspect
ratio n_embd / n_layer near 32 (Kaplan et al. found the loss depends on N and only weakly on the
shape over a wide range): n_layer = round((N / 12288)^(1/3)) (at least 1), then n_embd = the
multiple of 16 nearest sqrt(N / (12 * n_layer)), with heads of 32 dimensions (16 when n_embd is
not a multiple of 32). The N recorded and fitted is the built model's own non-embedding count
(GPT.num_params(non_embedding=True)), not the requested one.

The budget (``--tokens``) becomes train.max_steps = ceil(tokens / (batch_size * grad_accum *
block_size)), with a cosine schedule decaying to optim.min_lr exactly at that step (Chinchilla's
point: a schedule longer than the run leaves the small budgets' losses too high), a warm-up of
min(optim.warmup_steps, max_steps // 10), and an evaluation every quarter of the run. D, in a
data ladder, is the number of tokens trained on (max_steps * tokens per step).

The fit (``fit_power_law``): non-linear least squares on the losses by Levenberg-Marquardt
(numpy; scipy is not a gptlab dependency, the tests compare with scipy.optimize.curve_fit),
started from the best of a grid of B values (for each, log(L - B) is linear in log x), with
B >= 0 (each step projected onto it: a loss has no negative floor). Its
interval on alpha is a residual bootstrap: the fitted curve plus the residuals resampled with
replacement (inflated by sqrt(n / (n - 3)), as a fit of 3 parameters shrinks them), refitted
``bootstrap`` times, the 2.5 and 97.5 percentiles of alpha. With 4-6 points the interval is a
rough one (its coverage on synthetic ladders is tested, not assumed). Three
parameters need three points; a ladder of fewer is trained and recorded, without a fit.
DIR/sweep.json gets ``"scaling"`` (the ladder, x and loss per point, the fit), and
DIR/scaling.png the log-log plot of the points and the fitted curve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.config import RunConfig, check_values, load_config, set_value
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_bytes, atomic_write_json, read_json
from gptlab.report import figure_png
from gptlab.train.sweep import SWEEP_FILE, SweepSpec, run_name, run_sweep

SCALING_PLOT = "scaling.png"
DEFAULT_BASE = "shakespeare-char"  # the shipped config a ladder starts from without --config
ASPECT = 32  # n_embd / n_layer of the shape rule
# --sizes: named points of a model ladder (target non-embedding parameters)
SIZES = {
    "micro": 30_000,
    "tiny": 100_000,
    "small": 300_000,
    "medium": 1_000_000,
    "large": 3_000_000,
    "xlarge": 10_000_000,
}
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmb]?)\s*$", re.IGNORECASE)


def parse_count(text: str) -> int:
    """``"0.3M"`` -> 300000 (suffixes k, M, B, any case; plain numbers and 1e6 too)."""
    match = _COUNT.match(str(text))
    if not match:
        raise GptlabError(
            f"{text!r} is not a count: give a number with an optional k, M or B suffix (0.3M, 500k)"
        )
    value = round(float(match.group(1)) * _SUFFIX[match.group(2).lower()])
    if value < 1:
        raise GptlabError(f"{text!r}: a count must be at least 1")
    return value


def parse_counts(text: str) -> list[int]:
    values = [parse_count(part) for part in text.split(",") if part.strip()]
    if not values:
        raise GptlabError(f"{text!r}: give comma-separated counts, e.g. 0.1M,0.3M,1M")
    return values


def shape_for(n_params: int) -> dict[str, int]:
    """``{"n_layer", "n_embd", "n_head"}`` of the ladder's rule for ~``n_params`` (module doc)."""
    n_layer = max(1, round((n_params / (12 * ASPECT**2)) ** (1 / 3)))
    n_embd = max(16, 16 * round(math.sqrt(n_params / (12 * n_layer)) / 16))
    n_head = n_embd // 32 if n_embd % 32 == 0 else n_embd // 16
    return {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head}


# ---------------------------------------------------------------------------------------------
# the fit


def power_law(x, a: float, alpha: float, b: float):
    return a * np.power(np.asarray(x, dtype=float), -alpha) + b


@dataclass
class PowerLawFit:
    a: float
    alpha: float
    b: float
    rmse: float  # root mean square residual of the fit
    alpha_low: float | None = None  # the bootstrap's 2.5 percentile
    alpha_high: float | None = None  # its 97.5 percentile
    bootstrap: int = 0  # resamples that converged (the interval's sample size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _levenberg_marquardt(
    lx: np.ndarray, y: np.ndarray, theta: np.ndarray, iterations: int = 200
) -> np.ndarray:
    """Least squares of y ~ exp(c - alpha * lx) + B over theta = (c, alpha, B), B kept >= 0
    (each step projected)."""

    def residuals(t):
        return np.exp(t[0] - t[1] * lx) + t[2] - y

    damping = 1e-3
    r = residuals(theta)
    cost = float(r @ r)
    for _ in range(iterations):
        g = np.exp(theta[0] - theta[1] * lx)
        jac = np.stack([g, -lx * g, np.ones_like(lx)], axis=1)
        jtj, jtr = jac.T @ jac, jac.T @ r
        while True:
            try:
                step = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), -jtr)
            except np.linalg.LinAlgError:
                step = np.full(3, np.nan)
            candidate = theta + step
            candidate[2] = max(candidate[2], 0.0)  # projected onto B >= 0
            step = candidate - theta
            r_new = residuals(candidate)
            cost_new = float(r_new @ r_new) if np.all(np.isfinite(r_new)) else math.inf
            if cost_new <= cost:
                break
            damping *= 10
            if damping > 1e12:
                return theta  # no step lowers the cost: a minimum
        converged = cost - cost_new <= 1e-12 * max(cost, 1e-300) or np.max(np.abs(step)) < 1e-12
        theta, r, cost = candidate, r_new, cost_new
        damping = max(damping / 10, 1e-12)
        if converged:
            break
    return theta


def _fit_once(x: np.ndarray, y: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """(c, alpha, B) with x normalised by its geometric mean (A = exp(c) * x_ref^alpha), B >= 0:
    a loss has no negative floor, and points still falling faster than a power law (models far
    from converged) would otherwise pull B below zero."""
    lx = np.log(x) - np.log(x).mean()
    if start is None:
        best = None
        span = max(y.max() - y.min(), 1e-6)
        for b in np.linspace(0.0, y.min() - 1e-3 * span, 60):  # log(y - B) ~ c - alpha * lx
            slope, intercept = np.polyfit(lx, np.log(y - b), 1)
            cost = float(np.sum((np.exp(intercept + slope * lx) + b - y) ** 2))
            if best is None or cost < best[0]:
                best = (cost, np.array([intercept, -slope, b]))
        start = best[1]
    return _levenberg_marquardt(lx, y, start)


def fit_power_law(
    x: Sequence[float], y: Sequence[float], bootstrap: int = 1000, seed: int = 0
) -> PowerLawFit:
    """L(x) = A x^-alpha + B by non-linear least squares, with a residual-bootstrap interval on
    alpha (module doc). Needs at least three points with distinct x, all x > 0."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x_arr) != len(y_arr) or len(np.unique(x_arr)) < 3:
        raise GptlabError(
            f"a power-law fit needs at least 3 points with distinct x (got {len(np.unique(x_arr))})"
        )
    if np.any(x_arr <= 0) or not np.all(np.isfinite(y_arr)):
        raise GptlabError("a power-law fit needs x > 0 and finite losses")
    theta = _fit_once(x_arr, y_arr)
    log_ref = np.log(x_arr).mean()
    fitted = np.exp(theta[0] - theta[1] * (np.log(x_arr) - log_ref)) + theta[2]
    residuals = y_arr - fitted
    result = PowerLawFit(
        a=float(math.exp(theta[0] + theta[1] * log_ref)),
        alpha=float(theta[1]),
        b=float(theta[2]),
        rmse=float(np.sqrt(np.mean(residuals**2))),
    )
    if bootstrap:
        rng = np.random.default_rng(seed)
        alphas = []
        # residuals of a 3-parameter fit understate the noise: inflate them by sqrt(n / (n - 3))
        n = len(residuals)
        scaled = residuals * math.sqrt(n / (n - 3)) if n > 3 else residuals
        for _ in range(bootstrap):
            resampled = fitted + rng.choice(scaled, size=n, replace=True)
            t = _fit_once(x_arr, resampled, start=theta.copy())
            if np.all(np.isfinite(t)):
                alphas.append(t[1])
        if alphas:
            result.alpha_low, result.alpha_high = (float(v) for v in np.percentile(alphas, [2.5, 97.5]))
            result.bootstrap = len(alphas)
    return result


# ---------------------------------------------------------------------------------------------
# the ladder


@dataclass
class ScalingSpec(SweepSpec):
    """A ladder as a sweep: ``points()`` are its rungs (several config keys each) instead of a grid
    product. ``n_params`` (targets) and ``tokens``: one of them has several values."""

    data: str = ""
    n_params: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    @property
    def axis(self) -> str:
        """``"n_params"`` (a model ladder: L(N)) or ``"tokens"`` (a data ladder: L(D))."""
        return "tokens" if len(self.tokens) > 1 else "n_params"

    def base_config(self) -> RunConfig:
        data = [f"data.input=[{_toml_string(self.data)}]"] if self.data else []
        return load_config(self.config or DEFAULT_BASE, data + list(self.overrides))

    def points(self) -> list[dict[str, Any]]:
        base = self.base_config()
        t = base.train
        per_step = t.batch_size * t.grad_accum * base.model.build(vocab_size=1).block_size
        out = []
        for n in self.n_params:
            for tokens in self.tokens:
                steps = max(1, math.ceil(tokens / per_step))
                shape = shape_for(n)
                out.append(
                    {
                        "model.n_layer": shape["n_layer"],
                        "model.n_embd": shape["n_embd"],
                        "model.n_head": shape["n_head"],
                        "train.max_steps": steps,
                        "train.eval_every": max(1, steps // 4),
                        "optim.warmup_steps": min(base.optim.warmup_steps, steps // 10),
                        "optim.decay_steps": 0,
                        "optim.schedule": "cosine",
                    }
                )
        return out

    def check(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise GptlabError(f"seeds must be a positive integer, got {self.seeds!r}")
        if not self.n_params or not self.tokens:
            raise GptlabError("a scaling sweep needs model sizes (--n-params or --sizes) and --tokens")
        if len(self.n_params) > 1 and len(self.tokens) > 1:
            raise GptlabError(
                "give several sizes (a model ladder, L(N)) or several token budgets (a data ladder, "
                "L(D)), not both"
            )
        base = self.base_config()
        check_values(base)
        if not base.data.input and not base.data.dir:
            raise GptlabError(
                "a scaling sweep needs data: --data FILE (or data.input / data.dir in the config)"
            )
        names = [run_name(p, 0) for p in self.points()]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise GptlabError(
                    f"two rungs of the ladder give the same run ({name}): sizes or budgets too close together"
                )
        for point in self.points():
            config = self.base_config()
            for key, value in point.items():
                set_value(config, key, value, f"ladder {key}={value!r}")
            check_values(config)

    def identity(self) -> dict[str, Any]:
        identity = super().identity()
        identity["grid"] = []
        identity["ladder"] = {"n_params": self.n_params, "tokens": self.tokens, "points": self.points()}
        return identity


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text)


@dataclass
class ScalingResult:
    out_dir: Path
    axis: str  # "n_params" or "tokens"
    rows: list[dict]  # per finished point: its shape, x, val loss (mean over seeds), ...
    fit: PowerLawFit | None
    stopped: str | None
    plot: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "axis": self.axis,
            "complete": self.stopped is None,
            "stopped": self.stopped,
            "rows": self.rows,
            "fit": None if self.fit is None else self.fit.to_dict(),
            "plot": None if self.plot is None else str(self.plot),
        }


def run_scaling(
    spec: ScalingSpec,
    out_dir: str | Path,
    bootstrap: int = 1000,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> ScalingResult:
    """Train (or resume) the ladder into ``out_dir``, fit the power law, write the plot; see the
    module doc."""
    from gptlab.run import Run

    out = Path(out_dir)
    swept = run_sweep(spec, out, log=log, on_step=on_step)
    rows = []
    for point in swept.points:
        records = [r for r in swept.runs.values() if r["point"] == point["point"]]
        config = Run.open(out / records[0]["run_dir"]).config
        from gptlab.model import GPT

        n = GPT(config).num_params(non_embedding=True)
        p = point["point"]
        tokens = p["train.max_steps"] * _tokens_per_step(spec)
        val = point["val_loss"]
        rows.append(
            {
                "n_layer": p["model.n_layer"],
                "n_embd": p["model.n_embd"],
                "n_head": p["model.n_head"],
                "n_params": n,
                "tokens": tokens,
                "steps": p["train.max_steps"],
                "seeds": point["n"],
                "val_loss": None if val is None else val["mean"],
                "val_loss_std": None if val is None else val["std"],
                "elapsed_s": sum(r["elapsed_s"] for r in records),
            }
        )
    usable = [r for r in rows if r["val_loss"] is not None]
    fit = None
    if len({r[spec.axis] for r in usable}) >= 3:
        fit = fit_power_law(
            [r[spec.axis] for r in usable], [r["val_loss"] for r in usable], bootstrap=bootstrap
        )
    state = read_json(out / SWEEP_FILE, "sweep file")
    state["scaling"] = {"axis": spec.axis, "rows": rows, "fit": None if fit is None else fit.to_dict()}
    atomic_write_json(out / SWEEP_FILE, state)
    plot = write_scaling_plot(out / SCALING_PLOT, spec.axis, usable, fit) if usable else None
    return ScalingResult(out, spec.axis, rows, fit, swept.stopped, plot)


def _tokens_per_step(spec: ScalingSpec) -> int:
    base = spec.base_config()
    return base.train.batch_size * base.train.grad_accum * base.model.build(vocab_size=1).block_size


KAPLAN_ALPHA = {"n_params": 0.076, "tokens": 0.095}  # Kaplan et al. (2020): alpha_N, alpha_D


def format_scaling(result: ScalingResult) -> str:
    """The ladder as a markdown table, then the fit next to Kaplan et al.'s exponent."""
    x_name = "N (non-embedding)" if result.axis == "n_params" else "D (tokens)"
    lines = [
        f"| n_layer | n_embd | {x_name} | tokens | steps | seeds | val loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        loss = "-" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        if r["val_loss_std"]:
            loss += f" ± {r['val_loss_std']:.4f}"
        x = r[result.axis]
        lines.append(
            f"| {r['n_layer']} | {r['n_embd']} | {x:,} | {r['tokens']:,} | {r['steps']} | {r['seeds']} | {loss} |"
        )
    fit = result.fit
    if fit is None:
        lines.append("\nno fit: a power law of three parameters needs at least three points")
    else:
        symbol = "N" if result.axis == "n_params" else "D"
        interval = (
            ""
            if fit.alpha_low is None
            else f" (95% bootstrap interval {fit.alpha_low:.3f} .. {fit.alpha_high:.3f})"
        )
        lines.append(
            f"\nL({symbol}) = {fit.a:.4g} * {symbol}^-{fit.alpha:.3f} + {fit.b:.4f}; alpha = {fit.alpha:.3f}{interval}, "
            f"rmse {fit.rmse:.4f}"
        )
        lines.append(
            f"Kaplan et al. (2020): alpha_{symbol} ~ {KAPLAN_ALPHA[result.axis]} (converged models, "
            "BPE tokens of WebText2; see docs/experiments.md on why tiny ladders differ)"
        )
    return "\n".join(lines)


def write_scaling_plot(path: Path, axis: str, rows: list[dict], fit: PowerLawFit | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = np.array([r[axis] for r in rows], dtype=float)
    ys = np.array([r["val_loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(xs, ys, "o", label="final val loss")
    if fit is not None:
        grid = np.geomspace(xs.min() / 1.5, xs.max() * 1.5, 100)
        interval = "" if fit.alpha_low is None else f" [{fit.alpha_low:.3f}, {fit.alpha_high:.3f}]"
        ax.plot(
            grid, power_law(grid, fit.a, fit.alpha, fit.b), "-", label=f"fit: alpha={fit.alpha:.3f}{interval}"
        )
        if fit.b > 0:  # the floor the curve tends to (a line at 0 has no place on a log axis)
            ax.axhline(fit.b, color="grey", linestyle=":", label=f"B = {fit.b:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
    ax.yaxis.set_major_formatter(ScalarFormatter())  # losses span less than a decade: plain numbers
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("non-embedding parameters N" if axis == "n_params" else "training tokens D")
    ax.set_ylabel("val loss (nats/token)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig, dpi=100))
    return path
