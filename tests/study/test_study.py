"""``gptlab study`` end to end on the study-tiny profile (a tiny char model on the Shakespeare
excerpt, the test task files): every number in study.md is in the stage results; a second run
reuses every stage; a changed stage re-runs with its dependents only; a crash mid-stage loses
that stage only, and rerunning gives the uninterrupted results; study.html in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from tiny_study import tiny

from gptlab.errors import GptlabError
from gptlab.study import run_study
from gptlab.study.runner import RESULT_FILE, claim

STAGES = [
    "pretrain",
    "architecture",
    "tasks",
    "forgetting",
    "overfitting",
    "benchmarks",
    "interpret",
    "vulnerabilities",
    "defences",
    "report",
]
TIMING_KEYS = {"seconds", "elapsed_s", "total_elapsed_s", "stage_seconds", "timing", "environment", "run"}
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def study(tiny_study) -> Path:
    return tiny_study


def results(out: Path) -> dict[str, dict]:
    return {n: json.loads((out / n / RESULT_FILE).read_text()) for n in STAGES}


def _strip_timing(value):
    if isinstance(value, dict):
        return {k: _strip_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip_timing(v) for v in value]
    return value


def _leaves(value, found: list) -> list:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, found)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, found)
    else:
        found.append(value)
    return found


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])")


def test_every_number_in_study_md_is_in_the_stage_results(study):
    from gptlab.study.findings import fmt

    leaves = _leaves(results(study), [])
    shown = {fmt(v) for v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)}
    strings = [v for v in leaves if isinstance(v, str)]
    text = (study / "study.md").read_text()
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text).replace("95%", "")  # figure paths; the level
    numbers = NUMBER.findall(text)
    assert len(numbers) > 40
    missing = [n for n in numbers if n not in shown and not any(n in s for s in strings)]
    assert missing == []


def test_findings_directions_match_the_numbers(study):
    arch = results(study)["architecture"]["result"]["table"]
    text = (study / "study.md").read_text()
    findings = text.split("## Findings")[1].split("## Environment")[0]
    for row in arch[1:]:
        sentence = next(line for line in findings.splitlines() if row["variant"] in line)
        lo, hi = row["diff_ci95"]
        expected = "raised" if lo > 0 else "lowered" if hi < 0 else "No measurable difference"
        assert expected in sentence
    pre = results(study)["pretrain"]["result"]["eval"]
    sentence = next(line for line in findings.splitlines() if "unigram" in line)
    lo, hi = pre["minus_unigram_ci95"]
    assert ("raised" if lo > 0 else "lowered" if hi < 0 else "No measurable difference") in sentence
    bench = results(study)["benchmarks"]["result"]
    for task, metrics in bench["results"].items():  # the tiny profile scores 5 items at most: no claim
        for metric in bench["chance"][task]:
            assert (
                metrics["n"] < 10 and f"{task} {metric} over {metrics['n']} items: too few items" in findings
            )
    assert any(bench["chance"].values())


def _line(findings: str, *parts: str) -> str:
    lines = [line for line in findings.splitlines() if all(p in line for p in parts)]
    assert len(lines) == 1, (parts, lines)
    return lines[0]


def _side(interval, reference=0.0, words=("raised", "lowered", "No measurable difference")) -> str:
    lo, hi = interval
    return words[0] if lo > reference else words[1] if hi < reference else words[2]


def test_the_task_stages_findings_match_their_numbers(study):
    from gptlab.study.findings import fmt

    r = results(study)
    findings = (study / "study.md").read_text().split("## Findings")[1].split("## Environment")[0]
    tasks = r["tasks"]["result"]["tasks"]
    assert list(tasks) == ["sentiment", "translation", "summarisation", "instruction"]
    s = tasks["sentiment"]
    sentence = _line(findings, "Sentiment test accuracy over")
    assert _side(s["accuracy_ci95"], s["chance"], ("is above", "is below", "not distinguishable")) in sentence
    assert s["accuracy"] == s["correct"] / s["splits"]["test"]
    for task in ("translation", "summarisation", "instruction"):
        for metric, m in tasks[task]["metrics"].items():
            assert m["tuned_ci95"][0] <= m["tuned"] <= m["tuned_ci95"][1]
            sentence = _line(findings, f"{task} {metric} over {m['n']} test items")
            assert _side(m["diff_ci95"]) in sentence and f"difference {fmt(m['diff'])}" in sentence

    f = r["forgetting"]["result"]
    assert [row["label"] for row in f["matrix"]["rows"]] == [
        "base",
        "sentiment",
        "sentiment→translation",
        "sentiment→translation + replay",
    ]
    sentence = _line(findings, "sentiment (accuracy ")
    lo, hi = f["forgetting"]["diff_ci95"]
    assert ("forgot part of" if hi < 0 else "improved" if lo > 0 else "No measurable forgetting") in sentence
    for x in f["mitigations"]:
        assert _side(x["diff_ci95"]) in _line(findings, x["row"], f"{x['task']} {x['metric']}")

    o = r["overfitting"]["result"]["table"]
    assert len(o) == 4 and all(row["n"] == 2 for row in o)
    for row in o:
        label = ", ".join(f"{k.split('.')[-1]}={fmt(v)}" for k, v in row["point"].items())
        assert (row["gap"]["mean"] - (row["val_loss"]["mean"] - row["train_loss"]["mean"])) < 1e-9
        words = ("is above", "is below", "not distinguishable")
        assert _side(row["gap_ci95"], 0.0, words) in _line(findings, f"gap (val - train loss) at {label} (")
        if "gap_diff" in row:
            lines = [
                line
                for line in findings.splitlines()
                if "generalisation gap" in line
                and (f"between {label} and" in line or line.startswith(f"- {label} "))
            ]
            assert len(lines) == 1 and _side(row["gap_diff_ci95"]) in lines[0]

    i = r["interpret"]["result"]
    assert list(i["models"]) == ["base", "instruction"] and i["finetuned"] == "instruction"
    for m in i["models"].values():
        assert len(m["figures"]) == 2 and all((study / "interpret" / fig).is_file() for fig in m["figures"])
        for t in m["texts"]:
            assert (study / "interpret" / t["index"]).is_file()
    assert _side(i["loss_diff_ci95"]) in _line(findings, "next-token loss on the probe texts")


def _direction(interval) -> str:
    lo, hi = interval
    return "raised" if lo > 0 else "lowered" if hi < 0 else "No measurable difference"


def test_defences_report_exposure_per_repetition_count_with_the_group_bound(study):
    from gptlab.study.findings import fmt

    dp = results(study)["defences"]["result"]["dp"]
    text = (study / "study.md").read_text()
    table = text.split("DP-SGD: canary exposure (bits")[1].split("\n\n")[1]
    for row in dp["rows"]:
        eps = row["epsilon"]
        assert {e["repeats"] for e in row["exposure"]} == {
            0,
            1,
            16,
        }  # the controls and the tiny profile's counts
        for e in row["exposure"]:
            if e["repeats"]:
                bound = "inf" if eps == "inf" else fmt(e["repeats"] * eps)
                assert e["group_epsilon"] == ("inf" if eps == "inf" else e["repeats"] * eps)
                assert f"| {row['label']} | {e['repeats']} | {bound} | {e['canaries']} |" in table
    findings = text.split("## Findings")[1]
    for row in dp["rows"][
        1:
    ]:  # every DP run: a sentence per count, and the explanation where it did not fall
        for e in row["exposure"]:
            if not e["repeats"]:
                continue
            what = f"the exposure of canaries inserted {e['repeats']} times between DP-SGD at epsilon={row['label']}"
            line = next(x for x in findings.splitlines() if f"inserted {e['repeats']} times" in x and
                        f"epsilon={row['label']}" in x and "exposure of" in x)  # fmt: skip
            assert _direction(e["change_ci95"]) in line, (what, line)
            explained = (
                f"At epsilon={row['label']}, canaries inserted {e['repeats']} times: exposure" in findings
            )
            assert explained == (e["repeats"] > 1 and e["change_ci95"][1] >= 0)


def test_defences_findings_directions_match_the_numbers(study):
    r = results(study)["defences"]["result"]
    assert set(r["experiments"]) == {"dp", "adversarial", "cda", "injection", "poisoning"}
    findings = (
        (study / "study.md").read_text().split("## Findings")[1].split("## Environment")[0].splitlines()
    )

    def line_with(*parts: str) -> str:
        return next(x for x in findings if all(p in x for p in parts))

    for row in r["dp"]["rows"][1:]:
        who = f"DP-SGD at epsilon={row['label']}"
        assert _direction(row["perplexity_change_pct_ci95"]) in line_with("validation perplexity", who)
        assert _direction(row["membership_auc_change_ci95"]) in line_with("membership AUC", who)
    adv = r["adversarial"]
    assert _direction(adv["typo_accuracy_gain"]["ci95"]) in line_with("accuracy under typos")
    assert _direction(adv["hotflip_accuracy_gain"]["ci95"]) in line_with("accuracy under HotFlip")
    assert _direction(r["cda"]["abs_gap_change"]["ci95"]) in line_with("mean |bias gap|")
    assert _direction(r["poisoning"]["asr_change"]["ci95"]) in line_with("backdoor attack success")
    for family, c in r["injection"]["comparisons"]["guard vs model"]["success_reduction"].items():
        lo, hi = c["interval"]  # before - after: the sentence is about after - before
        assert _direction((-hi, -lo)) in line_with(f"{family} attack success", "input guard")
    failed = [p for p in r["injection"]["preconditions"] if not p["holds"]]
    for p in failed:  # an unmet precondition is reported, never dropped
        assert line_with("precondition failed", p["name"])


def test_a_second_run_reuses_every_stage(study, tmp_path, monkeypatch):
    from gptlab.study import stages

    out = tmp_path / "again"
    shutil.copytree(study, out)
    before = {n: (out / n / RESULT_FILE).stat().st_mtime_ns for n in STAGES}

    def must_not_run(ctx):
        raise AssertionError(f"stage {ctx.name} ran again")

    for name in STAGES:
        monkeypatch.setitem(stages.STAGES, name, replace(stages.STAGES[name], run=must_not_run))
    result = run_study(tiny(), out, progress=False, log=lambda line: None)
    assert result.ran == [] and result.reused == STAGES
    assert {n: (out / n / RESULT_FILE).stat().st_mtime_ns for n in STAGES} == before
    assert (out / "study.md").read_text() == (study / "study.md").read_text()


def test_a_changed_stage_reruns_with_its_dependents_only(study, tmp_path):
    out = tmp_path / "changed"
    shutil.copytree(study, out)
    result = run_study(tiny("benchmarks.limit=1"), out, progress=False, log=lambda line: None)
    assert result.ran == ["benchmarks", "report"]
    assert result.reused == [s for s in STAGES if s not in result.ran]
    assert results(out)["benchmarks"]["result"]["results"]["lambada"]["n"] == 1


def test_a_crash_mid_stage_loses_that_stage_and_a_rerun_matches(study, tmp_path, monkeypatch):
    import gptlab.train

    real_train, calls = gptlab.train.train, []

    def crash_on_the_third_run(config, *args, **kwargs):  # pretrain, then one architecture run, then crash
        calls.append(config.train.out_dir)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_train(config, *args, **kwargs)

    out = tmp_path / "crashed"
    monkeypatch.setattr(gptlab.train, "train", crash_on_the_third_run)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_study(tiny(), out, progress=False, log=lambda line: None)
    assert (out / "pretrain" / RESULT_FILE).is_file() and not (out / "architecture").exists()
    assert (out / ".architecture.partial").is_dir()  # the stage in flight, never taken for finished
    monkeypatch.setattr(gptlab.train, "train", real_train)
    result = run_study(tiny(), out, progress=False, log=lambda line: None)
    assert result.reused == ["pretrain"] and result.ran == STAGES[1:]
    assert not (out / ".architecture.partial").exists()
    assert _strip_timing(results(out)) == _strip_timing(results(study))


def test_a_folder_that_is_not_a_study_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(GptlabError, match="holds no study.*--overwrite"):
        claim(out, overwrite=False)
    assert (out / "notes.txt").read_text() == "mine"
    claim(out, overwrite=True)
    assert list(out.iterdir()) == []


@pytest.mark.browser
def test_study_html_in_a_real_browser(study, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((study / "study.html").as_uri())
    images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
    assert images and all(images)
    links = page.eval_on_selector_all("nav a", "els => els.map(e => e.getAttribute('href'))")
    assert len(links) == len(STAGES) + 1  # each stage but the report itself, findings, environment
    for href in links:
        assert page.locator(href).count() == 1, href
        page.click(f"nav a[href='{href}']")
        assert page.evaluate("location.hash") == href
    assert errors == []
