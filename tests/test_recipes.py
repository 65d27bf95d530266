"""The task recipes (examples/translate.sh, summarize.sh, sentiment.sh) end to end in smoke mode
(SMOKE=1: a few steps, a few examples) on the tests/data/tasks fixtures: each must leave a run at
OUT/final that its own evaluation verb loads, and an OUT/results.json with the task's scores. And
examples/injection-lab.sh in smoke mode, on the data it makes itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "data" / "tasks"


@pytest.fixture(scope="module")
def task_data(tmp_path_factory) -> Path:
    """A DATA_DIR laid out as ../shared/data/tasks. The SST-2 fixture's 5 training sentences are too
    few for a stratified train/val/test split, so its training file here is the 11 fixture sentences
    twice (the recipe's held-out file stays the validation fixture)."""
    data = tmp_path_factory.mktemp("tasks")
    for task in ("multi30k", "scitldr", "sst2"):
        shutil.copytree(FIXTURES / task, data / task)
    sst2 = (FIXTURES / "sst2" / "train.jsonl").read_text("utf-8") + (
        FIXTURES / "sst2" / "validation.jsonl"
    ).read_text("utf-8")
    (data / "sst2" / "train.jsonl").write_text(sst2 * 2, encoding="utf-8")
    return data


def run_recipe(name: str, out: Path, data: Path) -> dict:
    wrapper = out.parent / f"gptlab-{name}"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gptlab "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    env = {**os.environ, "SMOKE": "1", "GPTLAB": str(wrapper), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / f"{name}.sh"), str(out), str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "final" / "model.json").is_file() or (out / "final" / "classifier.json").is_file()
    return json.loads((out / "results.json").read_text("utf-8"))


@pytest.mark.slow
def test_translate_recipe_smoke(tmp_path, task_data):
    results = run_recipe("translate", tmp_path / "out", task_data)
    validation = results["validation"]
    assert results["smoke"] == 1 and validation["n"] == 4  # SMOKE evaluates 4 of the val pairs
    assert 0 <= validation["bleu"] <= 100 and 0 <= validation["chrf"] <= 100
    assert results["pretrain"]["n_params"] > 0
    # the cost per language: one row per side of the validation file
    texts = {t["name"]: t for t in results["tokenizer_cost"]["texts"]}
    assert set(texts) == {"val-en.txt", "val-de.txt"}
    assert all(t["tokens_per_word"]["tokenizer"] > 0 for t in texts.values())
    outputs = (tmp_path / "out" / "eval" / "outputs.jsonl").read_text("utf-8").splitlines()
    assert len(outputs) == 4


@pytest.mark.slow
def test_summarize_recipe_smoke(tmp_path, task_data):
    results = run_recipe("summarize", tmp_path / "out", task_data)
    assert results["validation"]["n"] == 2 and set(results["baselines"]) >= {"lead1", "random"}
    for scores in (results["validation"], results["baselines"]["lead1"], results["baselines"]["random"]):
        assert all(0 <= scores[k] <= 1 for k in ("rouge1", "rouge2", "rougeL"))
    assert results["finetune"]["template"] == "{input}\nTL;DR:"


@pytest.mark.slow
def test_sentiment_recipe_smoke(tmp_path, task_data):
    results = run_recipe("sentiment", tmp_path / "out", task_data)
    validation = results["validation"]
    assert validation["n"] == 6 and 0 <= validation["accuracy"] <= 1
    assert results["bag_of_words"]["n_test"] == 6 and results["bag_of_words"]["n_train"] == 22
    # the error analysis of the held-out sentences rides along
    assert {"confident_mistakes", "unsure_correct", "by_negation"} <= set(validation["error_analysis"])


def test_recipes_refuse_a_missing_data_folder(tmp_path):
    for name in ("translate", "summarize", "sentiment"):
        done = subprocess.run(
            ["bash", str(ROOT / "examples" / f"{name}.sh"), str(tmp_path / name), str(tmp_path / "nowhere")],
            env={**os.environ, "GPTLAB": "true"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "data file not found" in done.stderr
        assert not (tmp_path / name).exists()  # nothing written before the data is found


@pytest.mark.slow
def test_injection_lab_recipe_smoke(tmp_path):
    """examples/injection-lab.sh in smoke mode: the probe-tasks data, a tokenizer, a base, the plain
    fine-tune (chat template) and the audit of it and of its two defence fine-tunes, with the
    precondition per model and Wilson intervals. One clean input per task (3 clean twins) can never
    show accuracy clearly above 0.5: every model fails the precondition and its verdicts say so."""
    wrapper = tmp_path / "gptlab-lab"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gptlab "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "injection-lab.sh"), str(out)],
        env={**os.environ, "SMOKE": "1", "GPTLAB": str(wrapper), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(json.loads((out / "data" / "probe-tasks.json").read_text("utf-8"))) == 60
    assert json.loads((out / "plain" / "model.json").read_text("utf-8"))["extra"]["template"] == "chat"
    audit = json.loads((out / "audit" / "injection.json").read_text("utf-8"))
    assert set(audit["details"]["conditions"]) == {"model", "clean_ft", "defended"}
    assert [p["name"] for p in audit["preconditions"]] == [
        "clean-task accuracy above 0.5",
        "clean-task accuracy above 0.5 (clean fine-tune)",
        "clean-task accuracy above 0.5 (defended)",
    ]
    failed = {p["name"] for p in audit["preconditions"] if not p["holds"]}
    assert len(failed) == 3
    for finding in audit["findings"]:
        if set(finding["requires"]) & failed:
            assert finding["verdict"] == "inconclusive" and "precondition failed" in finding["reason"]
        if finding["interval_kind"] == "wilson" and finding["n"]:
            assert finding["interval"][0] <= finding["value"] <= finding["interval"][1]
    assert (out / "audit" / "injection_rates.png").is_file() and "PRECONDITION" in (
        out / "audit.txt"
    ).read_text()
    # a missing data file stops it before anything is written
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "injection-lab.sh"), str(tmp_path / "new"), str(tmp_path / "nowhere.json")],
        env={**os.environ, "GPTLAB": "true"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "data file not found" in done.stderr and not (tmp_path / "new").exists()


def _recipe_out(root: Path, name: str, results: dict, epochs: list[dict], tokens_seen: int) -> Path:
    """A finished recipe's OUT_DIR as examples/recipe_table.py reads it, without training."""
    out = root / name
    (out / "final").mkdir(parents=True)
    (out / "pretrain").mkdir()
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (out / "final" / "metrics.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in epochs), encoding="utf-8"
    )
    rows = [
        {"kind": "train", "step": 1, "tokens_seen": tokens_seen // 2},
        {"kind": "train", "tokens_seen": tokens_seen},
    ]
    (out / "pretrain" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return out


def test_recipe_table_prints_each_task_from_results_json(tmp_path):
    from gptlab.audit.common import wilson_interval

    pre = {"n_params": 1321728, "step": 768}
    mt = _recipe_out(tmp_path, "mt", {
        "task": "multi30k en->de", "wall_seconds": 1406, "pretrain": pre,
        "finetune": {"splits": {"train": 28130}, "best_val_loss": 1.9045},
        "validation": {"bleu": 31.996, "chrf": 55.44, "exact_match": 0.0444, "n": 1014},
    }, [{"epoch": 1, "val_loss": 2.5}, {"epoch": 2, "val_loss": 2.3}], 3_112_960)  # fmt: skip
    sst2 = _recipe_out(tmp_path, "sst2", {
        "task": "sst2", "wall_seconds": 759, "pretrain": pre, "finetune": {},
        "validation": {"accuracy": 353 / 436, "macro_f1": 0.8095, "n": 436}, "bag_of_words": {"accuracy": 0.8303},
    }, [{"epoch": 1, "val": {"accuracy": 0.79}}], 6_553_600)  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "recipe_table.py"), str(mt), str(sst2)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {
        line.split(" | ")[0]: line
        for line in done.stdout.splitlines()
        if line.startswith("| mt") or line.startswith("| sst2")
    }
    assert (
        "| 2 epochs (56,260 pairs) |" in lines["| mt"]
        and "| 32.00 | 55.44 | 0.044 | 1,014 | 23 min 26 s |" in lines["| mt"]
    )
    assert "768 steps (3.11M tokens)" in lines["| mt"]
    lo, hi = wilson_interval(353, 436)  # the interval the evaluations print
    assert f"0.810 [{lo:.3f}, {hi:.3f}]" in lines["| sst2"] and "| 1 epochs |" in lines["| sst2"]
    missing = subprocess.run([sys.executable, str(ROOT / "examples" / "recipe_table.py"), str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "results.json: not found" in missing.stderr


@pytest.mark.slow
def test_rag_lab_recipe_smoke(tmp_path):
    """examples/rag-lab.sh in smoke mode: rag-copy prompts kept with their line breaks (as `rag ask`
    builds them), a model trained on them, `eval rag` on held-out people and the per-kind table."""
    wrapper = tmp_path / "gptlab-lab"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gptlab "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    out = tmp_path / "out"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # its `python` too
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "rag-lab.sh"), str(out)],
        env={**os.environ, "SMOKE": "1", "GPTLAB": str(wrapper), "PYTHONPATH": str(ROOT), "PATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads((out / "data" / "rag-copy.json").read_text("utf-8"))
    text = (out / "data" / "text.txt").read_text("utf-8")
    assert len(records) == 60 and text == "".join(r["text"] + "\n\n" for r in records)
    assert text.startswith("Sources:\n[1] ")  # the layout `rag ask` gives the model
    report = json.loads((out / "eval-bm25.json").read_text("utf-8"))
    assert report["questions"] == 18 and report["k"] == 2
    for kind in ("all", "occupation", "country", "birthplace"):
        assert f"| bm25, k=2 | {kind} |" in done.stdout
