"""Findings sentences built from numbers and their intervals, never written by hand.

The one rule: an effect is claimed (raised, lowered, above, below) only when its whole interval
lies on one side of zero (of the reference value); an interval that includes it gives "no
measurable difference", and a number without an interval gives no claim at all. Every number in a
sentence is formatted by `fmt`, the same formatting the report tables use, so each one can be found
in the stage results it came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DIGITS = 4  # significant digits of every number the report shows


def fmt(value: float | int | None) -> str:
    """A number as the report shows it: integers as they are, floats to DIGITS significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{DIGITS}g}"


def fmt_interval(interval: Sequence[float] | None) -> str:
    return "no interval" if interval is None else f"95% CI [{fmt(interval[0])}, {fmt(interval[1])}]"


def excludes(interval: Sequence[float] | None, reference: float = 0.0) -> bool:
    """Whether the interval lies wholly on one side of ``reference`` (so a direction can be claimed)."""
    return interval is not None and (interval[0] > reference or interval[1] < reference)


def difference(
    what: str,
    new: str,
    base: str,
    diff: float,
    interval: Sequence[float] | None,
    unit: str = "",
) -> str:
    """``new`` minus ``base`` in ``what``: "raised"/"lowered" only when the interval excludes zero."""
    unit_text = f" {unit}" if unit else ""
    numbers = f"difference {fmt(diff)}{unit_text}, {fmt_interval(interval)}"
    if interval is None:
        return f"{new} vs {base}: {what} differs by {fmt(diff)}{unit_text}, with no interval to tell whether it is real."
    if not excludes(interval):
        return f"No measurable difference in {what} between {new} and {base} ({numbers})."
    verb = "raised" if interval[0] > 0 else "lowered"
    return f"{new} {verb} {what} relative to {base} ({numbers})."


def against_reference(
    what: str, value: float, interval: Sequence[float] | None, reference: float, ref_name: str
) -> str:
    """``value`` of ``what`` against a fixed reference (chance, a threshold): above/below only when
    the interval excludes the reference."""
    numbers = f"{fmt(value)}, {fmt_interval(interval)}"
    if interval is None:
        return f"{what} was {fmt(value)} ({ref_name}: {fmt(reference)}); with no interval, no comparison is claimed."
    if not excludes(interval, reference):
        return f"{what} ({numbers}) is not distinguishable from {ref_name} ({fmt(reference)})."
    side = "above" if interval[0] > reference else "below"
    return f"{what} ({numbers}) is {side} {ref_name} ({fmt(reference)})."


def mean_interval(
    values: Sequence[float], z: float = 1.959963984540054
) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``values`` and its normal 95% interval (None for fewer than two values)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def welch_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """mean(a) - mean(b) and its Welch t 95% interval (None when a side has one value: with a
    single seed there is no spread to judge the difference by)."""
    from scipy import stats

    diff = math.fsum(a) / len(a) - math.fsum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = stats.tvar(a) / len(a), stats.tvar(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, (diff, diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff, (diff - half, diff + half)


def t_interval(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """The mean of ``values`` and its Student-t 95% interval (None for fewer than two values): for
    the handful of units (canaries, seeds) where the normal interval of `mean_interval` is too narrow."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def newcombe_interval(k_b: int, n_b: int, k_a: int, n_a: int) -> tuple[float, tuple[float, float]]:
    """p_b - p_a and its Newcombe hybrid score 95% interval (from the two Wilson intervals)."""
    from gptlab.audit.common import wilson_interval

    if n_a < 1 or n_b < 1:
        from gptlab.errors import GptlabError

        raise GptlabError(f"a proportion needs n >= 1, got {k_b}/{n_b} and {k_a}/{n_a}")
    p_b, p_a = k_b / n_b, k_a / n_a
    (l_b, u_b), (l_a, u_a) = wilson_interval(k_b, n_b), wilson_interval(k_a, n_a)
    d = p_b - p_a
    lo = d - math.sqrt((p_b - l_b) ** 2 + (u_a - p_a) ** 2)
    hi = d + math.sqrt((u_b - p_b) ** 2 + (p_a - l_a) ** 2)
    return d, (lo, hi)
