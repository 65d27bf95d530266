"""The vulnerabilities stage on every model of the tiny study: the pretrained model, the
canary-inserted pretraining run and the probe-tasks instruction model; its rows in study.md are
read from its result file."""

from __future__ import annotations

import json

import pytest

from gptlab.study.findings import fmt
from gptlab.study.render import cell

pytestmark = pytest.mark.slow


def _row(cells) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def test_every_model_is_audited_and_its_rows_come_from_the_result(tiny_study):
    result = json.loads((tiny_study / "vulnerabilities" / "result.json").read_text())["result"]
    md = (tiny_study / "study.md").read_text()
    assert result["not_built"] == {}
    models = result["models"]
    assert list(models) == ["pretrained", "canaried", "instruct"]
    assert set(models["canaried"]["audits"]) == {"memorization"}
    assert set(models["instruct"]["audits"]) == {"injection"}
    for name, m in models.items():
        assert (tiny_study / m["run"] / "model.json").is_file()  # the audited run is kept
        assert f"- model: {name}: {m['run']}" in md
    verdicts = sorted(result["counts"])
    for name, m in models.items():
        for audit, a in m["audits"].items():
            assert _row([name, audit, *(a["counts"].get(v, 0) for v in verdicts)]) in md
            assert sum(a["counts"].values()) == len(a["findings"]) > 0
    assert result["counts"] == {
        v: sum(a["counts"].get(v, 0) for m in models.values() for a in m["audits"].values()) for v in verdicts
    }
    # the canaries the tiny preset inserts (1 per count in [0, 4]), exposure per repetition count
    exposure = models["canaried"]["audits"]["memorization"]["exposure_by_repeats"]
    assert [e["repeats"] for e in exposure] == [0, 4] and all(e["n"] == 1 for e in exposure)
    canaries = json.loads((tiny_study / "vulnerabilities" / "canaried" / "canaries.json").read_text())
    assert sorted(c["repeats"] for c in canaries["canaries"]) == [0, 4]
    for e in exposure:
        assert _row([e["repeats"], e["n"], e["mean"], e["max"]]) in md
        assert e["max"] >= 0 and fmt(e["mean"]) in md
