"""What every audit returns and the statistics they share.

- `Finding`: one measured number (threat, metric, value, 95% interval), with a verdict against a
  configurable threshold: "fail" when the value is on the bad side of it, "pass" otherwise, and
  "info" when no threshold applies.
- `AuditResult`: an audit's findings, its details (JSON-ready) and its plots (PNG bytes);
  ``save(out_dir)`` writes ``<name>.json`` and the PNGs atomically.
- ROC curve and AUC (ties handled as the Mann-Whitney statistic does, equal to scikit-learn's),
  TPR at a fixed FPR, and percentile bootstrap intervals with a seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_bytes, atomic_write_text

_Z95 = 1.959963984540054  # the standard normal quantile of 97.5%


@dataclass
class Finding:
    threat: str  # e.g. "memorisation", "membership inference"
    metric: str  # e.g. "ROC AUC (loss)"
    value: float
    interval: tuple[float, float] | None = None  # 95% unless the audit says otherwise
    threshold: float | None = None
    higher_is_worse: bool = True  # direction of the verdict
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.threshold is None or self.value is None or np.isnan(self.value):
            return "info"
        bad = self.value > self.threshold if self.higher_is_worse else self.value < self.threshold
        return "fail" if bad else "pass"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval) if self.interval is not None else None
        d["verdict"] = self.verdict
        return d


@dataclass
class AuditResult:
    name: str  # "memorization", "membership", "injection", "robustness", "bias", "poisoning", ...
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-ready numbers behind the findings
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit": self.name,
            "findings": [f.to_dict() for f in self.findings],
            "details": self.details,
            "plots": sorted(self.plots),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``<name>.json`` and the plots into ``out_dir``; returns the JSON's path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, png in self.plots.items():
            atomic_write_bytes(out / name, png)
        path = out / f"{self.name}.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=to_jsonable) + "\n")
        return path

    def table(self) -> str:
        """Plain-text summary: one line per finding."""
        lines = [f"{'threat':<24} {'metric':<36} {'value':>9}  {'95% interval':<19} verdict"]
        for f in self.findings:
            iv = "" if f.interval is None else f"[{f.interval[0]:.3f}, {f.interval[1]:.3f}]"
            lines.append(f"{f.threat:<24} {f.metric:<36} {f.value:9.4f}  {iv:<19} {f.verdict}")
        return "\n".join(lines)


def to_jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); label 1 = positive (e.g.
    "member"), a higher score = more likely positive."""
    s, y = _check_scores(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each score value
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (len(y) - y.sum())]
    return fpr, tpr


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative) + 0.5 P(tie)."""
    fpr, tpr = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[int], max_fpr: float) -> float:
    """The highest TPR reached at an FPR of at most ``max_fpr`` (the low-FPR regime that matters
    for membership inference, Carlini et al. 2022)."""
    fpr, tpr = roc_curve(scores, labels)
    return float(tpr[fpr <= max_fpr].max())


def _check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape or s.ndim != 1:
        raise GptlabError(f"scores and labels must be 1-D and the same length, got {s.shape} and {y.shape}")
    if not set(np.unique(y).tolist()) <= {0, 1} or y.sum() in (0, len(y)):
        raise GptlabError("labels must be 0/1 with both classes present")
    if not np.all(np.isfinite(s)):
        raise GptlabError("scores must be finite")
    return s, y


def bootstrap_interval(
    statistic: Callable[..., float],
    *arrays: Sequence,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    stratify: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``: resample rows (the same rows of
    every array) with replacement ``n_boot`` times. With ``stratify`` (e.g. member labels) each
    class is resampled within itself, so every resample keeps both classes."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays) or n == 0:
        raise GptlabError("bootstrap needs non-empty arrays of one length")
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if stratify is None
        else [np.nonzero(np.asarray(stratify) == c)[0] for c in np.unique(stratify)]
    )
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        values.append(statistic(*(a[idx] for a in arrays)))
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion k/n (95% by default); None when n == 0."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds are exactly 0 and 1 at k = 0 and k = n (floating point would leave ~1e-17)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def proportion(flags: Sequence[bool]) -> dict[str, Any]:
    """k of n flags set, the rate and its 95% Wilson interval (None when n == 0)."""
    k, n = int(sum(flags)), len(flags)
    iv = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "interval": list(iv) if iv else None}


def plot_png(draw: Callable, figsize=(6, 4)) -> bytes:
    """Run ``draw(ax)`` on a fresh matplotlib axis and return the figure as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, dpi=110)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()
