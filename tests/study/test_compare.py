"""``gptlab study compare``: the difference intervals against published and hand computations,
the aligned tables, the refusals, and two tiny studies side by side (slow: the study-tiny fixture)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.study.compare import (
    JSON,
    MARKDOWN,
    Measure,
    aligned_table,
    compare_studies,
    difference,
    newcombe_interval,
    normal_difference,
    open_study,
)
from gptlab.study.stage import Table


def test_newcombe_interval_matches_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
    d, (lo, hi) = newcombe_interval(56, 70, 48, 80)
    assert d == pytest.approx(0.2) and (lo, hi) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    d, (lo, hi) = newcombe_interval(9, 10, 3, 10)
    assert d == pytest.approx(0.6) and (lo, hi) == pytest.approx((0.1705, 0.8090), abs=5e-5)


def test_normal_difference_by_hand():
    # standard errors 0.1 and 0.2 (half-widths / 1.96): the difference's is sqrt(0.05)
    d, (lo, hi) = normal_difference(1.0, (1.0 - 0.196, 1.0 + 0.196), 2.0, (2.0 - 0.392, 2.0 + 0.392))
    half = 1.959963984540054 * math.sqrt(0.1**2 + 0.2**2)
    assert d == pytest.approx(1.0) and (lo, hi) == pytest.approx((1.0 - half, 1.0 + half), rel=1e-3)


def test_difference_picks_welch_for_seeds_and_matches_scipy():
    from scipy import stats

    a, b = [3.10, 3.05, 3.12], [2.90, 2.95, 2.85, 2.93]
    d = difference(Measure("loss", sum(a) / 3, samples=a), Measure("loss", sum(b) / 4, samples=b))
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert d.method == "Welch t" and d.diff == pytest.approx(sum(b) / 4 - sum(a) / 3)
    assert d.interval == pytest.approx([ci.low, ci.high])


def test_difference_picks_newcombe_for_proportions_and_none_without_intervals():
    d = difference(
        Measure("rate", 48 / 80, (0.49, 0.70), count=(48, 80)),
        Measure("rate", 0.8, (0.69, 0.88), count=(56, 70)),
    )
    assert d.method == "Newcombe hybrid score" and d.interval == pytest.approx([0.0524, 0.3339], abs=5e-5)
    d = difference(Measure("x", 1.0, (0.9, 1.1)), Measure("x", 1.5))
    assert d.method == "none" and d.interval is None and d.diff == 0.5


def test_aligned_table_matches_rows_on_their_text_and_differences_numbers():
    a = Table(
        "t", ["task", "metric", "value", "interval"], [["x", "acc", 0.5, "i1"], ["y", "acc", 0.25, "i2"]]
    )
    b = Table(
        "t", ["task", "metric", "value", "interval"], [["y", "acc", 0.75, "i3"], ["z", "acc", 0.1, "i4"]]
    )
    t = aligned_table(a, b, ("A", "B"))
    assert t.columns == [
        "task",
        "metric",
        "value (A)",
        "value (B)",
        "value: difference",
        "interval (A)",
        "interval (B)",
    ]
    assert t.rows == [
        ["x", "acc", 0.5, None, None, "i1", None],
        ["y", "acc", 0.25, 0.75, 0.5, "i2", "i3"],
        ["z", "acc", None, 0.1, None, None, "i4"],
    ]


def _fake_study(path: Path, report: bool = True) -> Path:
    from gptlab.study.runner import RESULT_FILE, STUDY_FILE, STUDY_FORMAT

    path.mkdir(parents=True)
    (path / STUDY_FILE).write_text(json.dumps({"format": STUDY_FORMAT, "version": 1, "config": {}}))
    if report:
        (path / "report").mkdir()
        (path / "report" / RESULT_FILE).write_text(
            json.dumps({"stage": "report", "version": 1, "result": {}})
        )
    return path


def test_what_is_not_a_finished_study_is_refused(tmp_path):
    with pytest.raises(GptlabError, match="no such study folder"):
        open_study(tmp_path / "missing", "A")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GptlabError, match="is not a study: it has no study.json"):
        open_study(tmp_path / "plain", "A")
    unfinished = _fake_study(tmp_path / "unfinished", report=False)
    with pytest.raises(GptlabError, match="not a finished study: its report stage has not run"):
        open_study(unfinished, "A")
    done = _fake_study(tmp_path / "done")
    with pytest.raises(GptlabError, match="not a finished study"):
        compare_studies(done, unfinished, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a refused study
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("mine")
    with pytest.raises(GptlabError, match="--overwrite"):
        compare_studies(done, done, tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "mine"


@pytest.mark.slow
def test_two_tiny_studies_side_by_side(tiny_study, tmp_path):
    """The tiny study against a copy that lacks its benchmarks and has another architecture seed
    set: every shared stage is aligned, the missing one is named, the findings follow the intervals."""
    from gptlab.study.findings import excludes, fmt, fmt_interval

    other = tmp_path / "other"
    shutil.copytree(tiny_study, other)
    shutil.rmtree(other / "benchmarks")
    record = json.loads((other / "architecture" / "result.json").read_text())
    for runs in record["result"]["runs"].values():  # the same study, its losses 0.1 nats higher
        for r in runs:
            r["val_loss"] += 0.1
    (other / "architecture" / "result.json").write_text(json.dumps(record))

    result = compare_studies(tiny_study, other, tmp_path / "cmp")
    from gptlab.study.stages import STAGES

    assert result.compared == [s for s in STAGES if s not in ("benchmarks", "report")]
    assert result.only_a == ["benchmarks"] and result.only_b == []
    md = (tmp_path / "cmp" / MARKDOWN).read_text()
    assert "Only s has the stage(s) benchmarks: not compared." in md
    saved = json.loads((tmp_path / "cmp" / JSON).read_text())
    assert saved["compared"] == result.compared
    arch = {d["key"]: d for d in saved["differences"]["architecture"]}
    for d in arch.values():
        assert d["diff"] == pytest.approx(0.1) and d["method"] == "Welch t"
        # the same seeds' losses shifted by 0.1: no spread in the difference beyond the seeds' own
        assert d["interval"][0] < 0.1 < d["interval"][1]
    findings = md.split("## Findings")[1].split("## Environment")[0]
    for diffs in saved["differences"].values():
        for d in diffs:
            line = next(x for x in findings.splitlines() if d["key"] in x and fmt(d["diff"]) in x)
            if d["interval"] is None:
                assert "no interval" in line
            elif excludes(d["interval"]):
                assert ("raised" if d["interval"][0] > 0 else "lowered") in line
                assert fmt_interval(d["interval"]) in line
            else:
                assert "No measurable difference" in line
    # identical stages: every difference is 0, and never claimed
    pre = saved["differences"]["pretrain"]
    assert pre and all(d["diff"] == 0 for d in pre)
    assert "val loss (mean over windows)" in {d["key"] for d in pre}
    assert (tmp_path / "cmp" / "compare.html").read_text().count("<img") >= 2  # both studies' figures


@pytest.mark.slow
def test_cli_compare(tiny_study, tmp_path):
    from gptlab.cli import main

    assert main(["study", "compare", str(tiny_study), str(tiny_study), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "compare.html").is_file()
    assert main(["study", "compare", str(tiny_study), "--out", str(tmp_path / "d")]) == 2
    assert main(["study", "compare", str(tiny_study), str(tmp_path), "--out", str(tmp_path / "e")]) == 2


@pytest.mark.slow
@pytest.mark.browser
def test_compare_html_in_a_real_browser(tiny_study, tmp_path, browser):
    result = compare_studies(tiny_study, tiny_study, tmp_path / "cmp")
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((tmp_path / "cmp" / "compare.html").as_uri())
    images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
    assert len(images) >= 4 and all(images)  # each study's loss curve and architecture figure
    links = page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))")
    assert len(links) == len(result.compared) + 2  # each compared stage, findings, environment
    for href in links:
        assert page.locator(href).count() == 1, href
        page.click(f"nav a[href='{href}']")
        assert page.evaluate("location.hash") == href
    assert errors == []
