"""What every audit returns and the statistics they share.

- `Finding`: one measured number (threat, metric, value, 95% interval), judged against a
  configurable threshold (`Finding.judge`). Interval verdicts (the default): "fail" when the whole
  interval is on the bad side of the threshold, "pass" when it is wholly on the good side,
  "inconclusive" when it straddles it (with how many more samples would decide it, `samples_to_decide`);
  a finding without an interval is judged by its point value and says so. Point verdicts
  (``mode="point"``): the value alone decides, as before intervals decided. "info": no threshold.
- `Precondition`: what must hold for an audit's numbers to mean anything (e.g. the model does
  better than chance on the clean task). A finding names the preconditions it ``requires``; when one
  fails, the finding is "inconclusive" with that precondition as its reason (interval mode).
- `AuditResult`: an audit's findings, preconditions, details (JSON-ready) and plots (PNG bytes);
  ``save(out_dir)`` writes ``<name>.json`` and the PNGs atomically.
- ROC curve and AUC (ties handled as the Mann-Whitney statistic does, equal to scikit-learn's),
  TPR at a fixed FPR, percentile bootstrap intervals with a seed, Wilson intervals of proportions.
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


VERDICT_MODES = ("interval", "point")
VERDICTS = ("pass", "fail", "inconclusive", "info")


@dataclass(frozen=True)
class Precondition:
    """What must hold for some findings to mean anything: ``holds`` is the check's outcome, ``detail``
    the numbers behind it (e.g. "clean accuracy 0.31 [0.22, 0.41], lower bound not above chance 0.5")."""

    name: str
    holds: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Judgement:
    verdict: str  # one of VERDICTS
    reason: str  # why, in words: which side of the threshold, or what would decide it


@dataclass
class Finding:
    threat: str  # e.g. "memorisation", "membership inference"
    metric: str  # e.g. "ROC AUC (loss)"
    value: float
    interval: tuple[float, float] | None = None  # 95% unless the audit says otherwise
    threshold: float | None = None
    higher_is_worse: bool = True  # direction of the verdict
    note: str = ""
    n: int | None = None  # the samples behind the interval (for "about N more samples")
    interval_kind: str = ""  # "wilson" (a proportion k/n) or "bootstrap" (percentile); "" unknown
    requires: tuple[str, ...] = ()  # names of the audit's preconditions this finding depends on

    @property
    def verdict(self) -> str:
        """This finding's own interval verdict (no preconditions: `AuditResult.judgements` has those)."""
        return self.judge().verdict

    def judge(self, mode: str = "interval", failed: Sequence[Precondition] = ()) -> Judgement:
        """The verdict in ``mode`` ("interval" or "point"), given the audit's ``failed`` preconditions
        (only those named in ``requires`` matter, and only in interval mode: point mode is the
        verdict of the value alone)."""
        if mode not in VERDICT_MODES:
            raise GptlabError(f"verdict mode must be one of {', '.join(VERDICT_MODES)}, got {mode!r}")
        blocking = [p for p in failed if not p.holds and p.name in self.requires]
        if blocking and mode == "interval" and self.threshold is not None:  # even with no value to judge
            return Judgement(
                "inconclusive", "; ".join(f"precondition failed: {p.name} ({p.detail})" for p in blocking)
            )
        if self.threshold is None or self.value is None or np.isnan(self.value):
            return Judgement("info", "no threshold" if self.threshold is None else "no value")
        t = self.threshold
        side = "above" if self.higher_is_worse else "below"

        def bad(x: float) -> bool:  # on the failing side of the threshold (the threshold itself passes)
            return x > t if self.higher_is_worse else x < t

        point = "fail" if bad(self.value) else "pass"
        if mode == "point":
            return Judgement(
                point, f"point value {self.value:.4g} {'is' if bad(self.value) else 'is not'} {side} {t:g}"
            )
        if self.interval is None:
            return Judgement(point, f"no interval: decided by the point value {self.value:.4g} alone")
        lo, hi = self.interval
        iv = f"interval [{lo:.3g}, {hi:.3g}]"
        if bad(lo) and bad(hi):
            return Judgement("fail", f"{iv} wholly {side} {t:g}")
        if not bad(lo) and not bad(hi):
            return Judgement("pass", f"{iv} not {side} {t:g}")
        more = samples_to_decide(self)
        if more is None:
            tail = "more samples would narrow it"
        elif math.isinf(more):
            tail = "the value sits on the threshold: no number of samples would decide it"
        else:
            tail = f"about {more} more samples would decide it"
        return Judgement("inconclusive", f"{iv} straddles {t:g}; {tail}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval) if self.interval is not None else None
        d["requires"] = list(self.requires)
        judgement = self.judge()
        d["verdict"], d["reason"] = judgement.verdict, judgement.reason
        return d


def samples_to_decide(f: Finding, z: float = _Z95) -> float | None:
    """About how many MORE samples (beyond ``f.n``) would move ``f``'s interval off its threshold,
    if the value stayed what it is; None when the finding does not say its ``n``; inf when the
    value equals the threshold.

    - Wilson (a proportion p of n): the Wilson interval is the set of rates t with
      |p - t| <= z sqrt(t (1 - t) / n) (the score test inverted), so it excludes the threshold t
      exactly when n > z^2 t (1 - t) / (p - t)^2: N_total = floor(that) + 1.
    - Other intervals (bootstrap): their half-width shrinks as 1/sqrt(n), so the half-width h on
      the threshold's side reaches |v - t| at N_total = n (h / |v - t|)^2 (rounded up).
    """
    if f.n is None or f.threshold is None or f.interval is None:
        return None
    gap = abs(f.value - f.threshold)
    if gap == 0:
        return math.inf
    if f.interval_kind == "wilson":
        t = f.threshold
        total = math.floor(z * z * t * (1 - t) / (gap * gap)) + 1
    else:
        lo, hi = f.interval
        half = (f.value - lo) if f.threshold < f.value else (hi - f.value)
        total = math.ceil(f.n * (half / gap) ** 2)
    return max(1, total - f.n)


@dataclass
class AuditResult:
    name: str  # "memorization", "membership", "injection", "robustness", "bias", "poisoning", ...
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-ready numbers behind the findings
    plots: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes
    preconditions: list[Precondition] = field(default_factory=list)
    verdict_mode: str = "interval"  # how verdicts are decided: VERDICT_MODES

    @property
    def failed_preconditions(self) -> list[Precondition]:
        return [p for p in self.preconditions if not p.holds]

    def judgements(self) -> list[Judgement]:
        """Each finding's verdict in this result's mode, its preconditions applied."""
        failed = self.failed_preconditions
        return [f.judge(self.verdict_mode, failed) for f in self.findings]

    def counts(self) -> dict[str, int]:
        """How many findings got each verdict: {"pass": .., "fail": .., "inconclusive": .., "info": ..}."""
        counts = dict.fromkeys(VERDICTS, 0)
        for j in self.judgements():
            counts[j.verdict] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        findings = []
        for f, j in zip(self.findings, self.judgements()):
            d = f.to_dict()
            d["verdict"], d["reason"] = j.verdict, j.reason
            findings.append(d)
        return finite_or_none(
            {  # strict JSON: a 0/0 rate is null, not NaN
                "audit": self.name,
                "verdict_mode": self.verdict_mode,
                "preconditions": [p.to_dict() for p in self.preconditions],
                "counts": self.counts(),
                "findings": findings,
                "details": self.details,
                "plots": sorted(self.plots),
            }
        )

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
        """Plain-text summary: failed preconditions first, then one line per finding (its verdict,
        and the reason when it is not a plain pass/fail/info)."""
        lines = [
            f"PRECONDITION FAILED: {p.name}: {p.detail} -> dependent findings are inconclusive"
            for p in self.failed_preconditions
        ]
        lines.append(
            f"{'threat':<24} {'metric':<36} {'value':>9}  {'95% interval':<19} verdict ({self.verdict_mode})"
        )
        for f, j in zip(self.findings, self.judgements()):
            iv = "" if f.interval is None else f"[{f.interval[0]:.3f}, {f.interval[1]:.3f}]"
            why = (
                f"  ({j.reason})"
                if j.verdict == "inconclusive" or (f.interval is None and j.verdict != "info")
                else ""
            )
            lines.append(f"{f.threat:<24} {f.metric:<36} {f.value:9.4f}  {iv:<19} {j.verdict}{why}")
        return "\n".join(lines)


def finite_or_none(o: Any) -> Any:
    """``o`` with every NaN or infinite float (numpy's too) replaced by None, in nested dicts,
    lists and tuples: what `--json` and the saved audit files print must be strict JSON, which
    has no NaN (a rate over no items is NaN in memory, null on disk)."""
    if isinstance(o, dict):
        return {k: finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_or_none(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def to_jsonable(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
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


def rate_finding(
    threat: str,
    metric: str,
    k: int,
    n: int,
    threshold: float | None = None,
    higher_is_worse: bool = True,
    note: str = "",
    requires: tuple[str, ...] = (),
) -> Finding:
    """A proportion k/n as a Finding with its 95% Wilson interval (NaN and no interval when n == 0)."""
    return Finding(
        threat,
        metric,
        k / n if n else float("nan"),
        wilson_interval(k, n),
        threshold,
        higher_is_worse,
        note,
        n=n,
        interval_kind="wilson",
        requires=requires,
    )


def rate_above(name: str, k: int, n: int, floor: float, what: str = "accuracy") -> Precondition:
    """Holds when the Wilson interval of k/n lies wholly above ``floor`` (its lower bound > floor):
    e.g. a classifier's clean accuracy clearly above chance, so that what attacks do to it is measurable."""
    iv = wilson_interval(k, n)
    if iv is None:
        return Precondition(name, False, f"no samples to measure the {what} on")
    holds = bool(iv[0] > floor)
    relation = "above" if holds else "not above"
    detail = f"{what} {k}/{n} = {k / n:.3g} [{iv[0]:.3g}, {iv[1]:.3g}], lower bound {relation} {floor:g}"
    return Precondition(name, holds, detail)
