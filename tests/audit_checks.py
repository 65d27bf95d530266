"""Checks shared by the audit tests: every rate an audit reports carries its interval."""

from __future__ import annotations

import re

# metrics that are proportions or rank statistics of a sample: each needs its interval
RATE = re.compile(r"rate|accuracy|precision|recall|TPR|AUC|reproduced", re.I)


def assert_rates_have_intervals(audit: dict) -> None:
    """``audit``: one audit's JSON (AuditResult.to_dict()). A rate finding, and any finding judged
    against a threshold, has a 95% interval, or its note says "no interval" and why."""
    for f in audit["findings"]:
        if not (RATE.search(f["metric"]) or f["threshold"] is not None):
            continue
        if f["interval"] is None:
            assert "no interval" in f["note"], (
                f"{audit['audit']}: {f['metric']} has no interval and no reason"
            )
        else:
            lo, hi = f["interval"]
            assert lo <= hi, f"{audit['audit']}: {f['metric']} interval {lo} > {hi}"
            assert f["interval_kind"] in ("wilson", "bootstrap"), f"{audit['audit']}: {f['metric']}"
