"""Interval verdicts, preconditions and the --verdict / --fail-on flags: every branch of
`Finding.judge` on synthetic findings, the "about N more samples" number against hand arithmetic
and against the Wilson interval it inverts, point mode as the old rule, and the exit status of
`gptlab audit bias` on a tiny model."""

from __future__ import annotations

import json
import math
import string

import numpy as np
import pytest
import torch

from gptlab.audit.common import (
    AuditResult,
    Finding,
    Precondition,
    rate_above,
    rate_finding,
    samples_to_decide,
    wilson_interval,
)
from gptlab.cli import main
from gptlab.errors import GptlabError

Z = 1.959963984540054


def verdict(f: Finding, mode: str = "interval", failed=()) -> str:
    return f.judge(mode, failed).verdict


# --- each branch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interval, higher_is_worse, expected",
    [
        ((0.06, 0.2), True, "fail"),  # wholly above 0.05, above is bad
        ((0.0, 0.04), True, "pass"),
        ((0.01, 0.32), True, "inconclusive"),
        ((0.0, 0.04), False, "fail"),  # wholly below 0.05, below is bad
        ((0.06, 0.2), False, "pass"),
        ((0.01, 0.32), False, "inconclusive"),
        ((0.0, 0.05), True, "pass"),  # the threshold itself is on the passing side, as in point mode
        ((0.05, 0.2), False, "pass"),
    ],
)
def test_the_interval_decides(interval, higher_is_worse, expected):
    value = (interval[0] + interval[1]) / 2
    f = Finding("t", "m", value, interval, 0.05, higher_is_worse)
    judgement = f.judge()
    assert judgement.verdict == expected
    assert f"[{interval[0]:.3g}, {interval[1]:.3g}]" in judgement.reason


def test_a_straddling_interval_is_inconclusive_even_when_the_point_passes():
    """The issue's membership row: 0.04 [0.01, 0.32] against 0.05 was "pass"."""
    f = Finding(
        "membership inference", "TPR@1%FPR", 0.04, (0.01, 0.32), 0.05, n=200, interval_kind="bootstrap"
    )
    assert verdict(f, "point") == "pass"
    judgement = f.judge()
    assert judgement.verdict == "inconclusive"
    assert judgement.reason.startswith("interval [0.01, 0.32] straddles 0.05; about ")
    assert "more samples would decide it" in judgement.reason


def test_no_interval_falls_back_to_the_point_and_says_so():
    f = Finding("t", "m", 0.7, None, 0.6)
    judgement = f.judge()
    assert judgement.verdict == "fail" and "no interval" in judgement.reason
    assert Finding("t", "m", 0.5, None, 0.6).judge().verdict == "pass"


def test_info_without_a_threshold_or_a_value():
    assert Finding("t", "m", 0.5, (0.4, 0.6)).judge().verdict == "info"
    assert Finding("t", "m", float("nan"), None, 0.5).judge().verdict == "info"
    assert Finding("t", "m", 0.5, (0.4, 0.6)).judge("point").verdict == "info"


def test_a_failed_precondition_makes_its_dependents_inconclusive_and_names_itself():
    broken = Precondition("clean accuracy above chance", False, "accuracy 10/20 [0.3, 0.7], not above 0.5")
    fine = Precondition("enough pairs", True, "40 pairs")
    dependent = Finding("t", "attack success", 0.0, (0.0, 0.1), 0.5, requires=(broken.name,))
    independent = Finding("t", "clean accuracy", 0.5, (0.3, 0.7), 0.9, higher_is_worse=False)
    needs_fine = Finding("t", "gap", 0.0, (0.0, 0.1), 0.5, requires=(fine.name,))
    judgement = dependent.judge("interval", [broken, fine])
    assert judgement.verdict == "inconclusive"
    assert judgement.reason == f"precondition failed: {broken.name} ({broken.detail})"
    assert verdict(independent, failed=[broken]) == "fail"  # it does not depend on it
    assert verdict(needs_fine, failed=[broken, fine]) == "pass"  # its precondition holds
    # point mode is the value alone: the old verdicts, preconditions and intervals ignored
    assert verdict(dependent, "point", [broken]) == "pass"


def test_the_audit_result_applies_its_preconditions_everywhere():
    pre = rate_above("learned", 10, 20, 0.5)
    result = AuditResult(
        "x",
        [rate_finding("t", "asr", 0, 30, 0.5, requires=("learned",)), rate_finding("t", "acc", 10, 20),
         Finding("t", "gap", 0.3, (0.2, 0.4), 0.1)],
        preconditions=[pre],
    )  # fmt: skip
    assert not pre.holds and "10/20" in pre.detail and "not above 0.5" in pre.detail
    assert [j.verdict for j in result.judgements()] == ["inconclusive", "info", "fail"]
    assert result.counts() == {"pass": 0, "fail": 1, "inconclusive": 1, "info": 1}
    d = result.to_dict()
    assert d["preconditions"] == [{"name": "learned", "holds": False, "detail": pre.detail}]
    assert d["findings"][0]["verdict"] == "inconclusive" and "learned" in d["findings"][0]["reason"]
    assert d["counts"] == result.counts() and d["verdict_mode"] == "interval"
    lines = result.table().splitlines()
    assert lines[0].startswith("PRECONDITION FAILED: learned")  # at the top, before the table
    result.verdict_mode = "point"
    assert [j.verdict for j in result.judgements()] == ["pass", "info", "fail"]
    with pytest.raises(GptlabError, match="verdict mode"):
        Finding("t", "m", 0.1, None, 0.2).judge("median")


def test_point_mode_is_the_old_rule():
    """Point verdicts reproduce the verdicts before intervals decided: fail when the value is past
    the threshold in its direction, pass otherwise (the threshold itself passes), info without one."""

    def old(value, threshold, higher_is_worse):
        if threshold is None or np.isnan(value):
            return "info"
        bad = value > threshold if higher_is_worse else value < threshold
        return "fail" if bad else "pass"

    rng = np.random.default_rng(0)
    for _ in range(500):
        value = float(rng.choice([rng.random(), 0.5, float("nan")]))
        threshold = None if rng.random() < 0.1 else float(rng.choice([rng.random(), 0.5]))
        lo, hi = sorted(rng.random(2))
        f = Finding("t", "m", value, (lo, hi), threshold, bool(rng.random() < 0.5), requires=("p",))
        assert verdict(f, "point", [Precondition("p", False, "")]) == old(value, threshold, f.higher_is_worse)


# --- "about N more samples" -----------------------------------------------------------------------


def test_samples_to_decide_wilson_by_hand():
    # p = 2/50 = 0.04 against 0.05: n > z^2 t (1 - t) / (p - t)^2 = 3.8415 * 0.0475 / 0.0001 = 1824.7
    f = rate_finding("t", "m", 2, 50, 0.05)
    assert f.interval == wilson_interval(2, 50)
    assert samples_to_decide(f) == 1825 - 50
    assert "about 1775 more samples would decide it" in f.judge().reason
    # and that is where the Wilson interval of the same rate stops covering the threshold
    total = 50 + samples_to_decide(f)
    assert wilson_interval(0.04 * total, total)[1] < 0.05 <= wilson_interval(0.04 * (total - 1), total - 1)[1]


@pytest.mark.parametrize("k, n, t", [(30, 100, 0.25), (5, 40, 0.2), (0, 10, 0.1), (55, 100, 0.5)])
def test_samples_to_decide_wilson_is_where_the_interval_clears_the_threshold(k, n, t):
    f = rate_finding("t", "m", k, n, t, higher_is_worse=k / n > t)
    assert f.judge().verdict == "inconclusive"
    p, total = k / n, n + samples_to_decide(f)
    lo, hi = wilson_interval(p * total, total)
    assert not lo <= t <= hi
    lo, hi = wilson_interval(p * (total - 1), total - 1)
    assert lo <= t <= hi
    assert total == math.floor(Z * Z * t * (1 - t) / (p - t) ** 2) + 1


def test_samples_to_decide_bootstrap_by_hand():
    # half-width on the threshold's side 0.32 - 0.04 = 0.28, distance 0.01: n (0.28 / 0.01)^2 = 50 * 784
    f = Finding("t", "m", 0.04, (0.01, 0.32), 0.05, n=50, interval_kind="bootstrap")
    assert samples_to_decide(f) == 39200 - 50
    # threshold below the value: the lower half-width counts: 0.3 - 0.2 = 0.1 vs 0.05 -> 4x
    g = Finding("t", "m", 0.3, (0.2, 0.35), 0.25, n=100, interval_kind="bootstrap")
    assert samples_to_decide(g) == 300


def test_samples_to_decide_edge_cases():
    on_it = rate_finding("t", "m", 5, 10, 0.5)
    assert samples_to_decide(on_it) == math.inf
    assert "no number of samples would decide it" in on_it.judge().reason
    unknown = Finding("t", "m", 0.04, (0.01, 0.32), 0.05)  # no n: no number, but still inconclusive
    assert samples_to_decide(unknown) is None
    assert unknown.judge().reason.endswith("more samples would narrow it")


def test_rate_finding_and_rate_above_at_zero_samples():
    f = rate_finding("t", "m", 0, 0, 0.5)
    assert f.interval is None and f.judge().verdict == "info"
    pre = rate_above("learned", 0, 0, 0.5)
    assert not pre.holds and "no samples" in pre.detail
    assert rate_above("learned", 18, 20, 0.5).holds  # Wilson lower bound 0.70 > 0.5


# --- the CLI: --verdict, --fail-on, the exit status -------------------------------------------------


@pytest.fixture(scope="module")
def bias_setup(tmp_path_factory):
    """A tiny random model's run and five copies of one probe pair: the same gap five times, so the
    sign-flip p-value is exactly 2/32 and the bootstrap interval of the mean is one point."""
    from gptlab.model import GPT, GPTConfig
    from gptlab.rundir import save_model
    from gptlab.tokenizers import CharTokenizer
    from gptlab.tokenizers.base import EOT

    tok = CharTokenizer.train([string.ascii_letters + " ."], special_tokens=[EOT])
    torch.manual_seed(0)
    config = GPTConfig.preset(
        "tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=32
    )
    root = tmp_path_factory.mktemp("verdicts")
    run = save_model(root / "run", GPT(config).eval(), tok)
    pair = {"context": "The nurse said that", "completions": [" she", " he"]}
    probes = root / "probes.json"
    probes.write_text(json.dumps([pair] * 5))
    return ["audit", "bias", "--model", str(run), "--probes", str(probes), "--n-perm", "50", "--n-boot", "20"]


def test_fail_on_sets_the_exit_status(bias_setup, capsys):
    # 5 pairs < the default 20: every verdict inconclusive, the failed precondition on top
    assert main([*bias_setup, "--fail-on", "inconclusive"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("PRECONDITION FAILED: enough pairs: 5 pairs, at least 20 needed")
    assert main([*bias_setup, "--fail-on", "fail"]) == 0  # nothing failed
    assert main(bias_setup) == 0  # no --fail-on: verdicts never change the exit status
    # enough pairs: p = 2/32 < alpha 0.99 fails
    assert main([*bias_setup, "--min-pairs", "5", "--alpha", "0.99", "--fail-on", "fail"]) == 3
    decided = ["--min-pairs", "5", "--alpha", "0.01", "--gap-threshold", "1000"]
    assert main([*bias_setup, *decided, "--fail-on", "inconclusive"]) == 0  # all pass (or info)
    capsys.readouterr()


def test_point_mode_on_the_cli_ignores_the_preconditions(bias_setup, capsys):
    args = [*bias_setup, "--alpha", "0.01", "--gap-threshold", "1000", "--json"]
    assert main([*args, "--verdict", "point", "--fail-on", "inconclusive"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict_mode"] == "point" and doc["counts"]["inconclusive"] == 0
    assert doc["preconditions"][0] == {
        "name": "enough pairs",
        "holds": False,
        "detail": "5 pairs, at least 20 needed",
    }
    assert main([*args, "--fail-on", "inconclusive"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict_mode"] == "interval" and doc["counts"]["inconclusive"] == 2  # the gap and the p-value


def test_a_failed_precondition_is_inconclusive_even_with_no_value():
    """No clean twin answered right: the rate over them is 0/0 (NaN); the precondition, not the
    missing number, is what the user must hear."""
    broken = Precondition("clean-task accuracy above 0.5", False, "0/40 clean probes right")
    f = rate_finding("t", "success rate", 0, 0, 0.1, requires=(broken.name,))
    assert f.judge("interval", [broken]).verdict == "inconclusive"
    assert f.judge("point", [broken]).verdict == "info"
    assert f.judge().verdict == "info"  # the finding alone: nothing to judge


def test_a_bias_group_below_the_minimum_is_inconclusive_and_the_others_stand():
    from gptlab.audit.bias import BiasPair, pair_preconditions

    pairs = [BiasPair(f"a{i}", "x", " she", "x", " he", "big") for i in range(25)]
    pairs += [BiasPair(f"b{i}", "y", " she", "y", " he", "small") for i in range(5)]
    pre = {p.name: p for p in pair_preconditions(pairs, 20)}
    assert pre["enough pairs"].holds and pre["enough pairs [big]"].holds
    assert not pre["enough pairs [small]"].holds and pre["enough pairs [small]"].detail.startswith(
        "5 pairs of small"
    )
    assert len(pair_preconditions(pairs[:25], 20)) == 1  # one group: the overall check is the group's


def test_an_audit_with_a_rate_over_no_items_saves_strict_json(tmp_path):
    """A 0/0 rate is NaN in memory; the saved file and `--json` must still be strict JSON (no NaN,
    which JSON.parse and many other readers reject): it is null there."""
    f = rate_finding("t", "success rate", 0, 0, 0.1)
    result = AuditResult(
        "demo", [f], details={"rates": {"x": float("nan"), "y": np.float64(0.25)}, "n": (0, 3)}
    )
    text = json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN
    doc = json.loads(text)
    assert doc["findings"][0]["value"] is None and doc["details"]["rates"] == {"x": None, "y": 0.25}
    saved = json.loads(
        result.save(tmp_path).read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert saved["findings"][0]["value"] is None
