"""`gptlab eval forgetting`: the matrix of runs x tasks with bootstrap intervals (gptlab.eval.forgetting)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from continual_chain import build_chain

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.eval.bleu import bleu_from_stats, corpus_bleu, segment_bleu_stats
from gptlab.eval.forgetting import bootstrap_interval, parse_runs, parse_tasks
from gptlab.finetune.classify import evaluate_file


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    built = build_chain(tmp_path_factory.mktemp("forget"), instruct_epochs=3)
    return built | {"runs": [built["base"], built["A"], built["B"]]}


@pytest.mark.slow
def test_eval_forgetting_writes_a_well_formed_matrix(chain, capsys):
    files, (base, first, second) = chain["files"], chain["runs"]
    out = chain["root"] / "matrix"
    tasks = f"lm:{files['lm']},sentiment:{files['sentiment_eval']},translation:{files['pairs_eval']}"
    args = ["eval", "forgetting", "--runs", f"{base},{first},{second}", "--tasks", tasks,
            "--resamples", "200", "--max-new-tokens", "8", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "matrix.json").read_text())
    assert [r["label"] for r in printed["rows"]] == ["base", "sentiment", "sentiment→pairs"]
    assert [c["name"] for c in printed["columns"]] == ["lm", "sentiment", "translation"]
    assert [c["metric"] for c in printed["columns"]] == ["perplexity", "accuracy", "bleu"]
    cells = printed["cells"]
    assert len(cells) == 3 and all(len(row) == 3 for row in cells)
    for row in cells:
        for cell in row:
            assert cell["low"] <= cell["high"] and cell["n"] > 0
    assert cells[0][0]["n"] == 3 and cells[0][1]["n"] == 40 and cells[0][2]["n"] == 12
    assert "chrf" in cells[2][2]["also"]
    methods = [row[1]["method"] for row in cells]
    assert methods[0].startswith("0-shot prompt") and methods[1] == "own classifier head"
    assert methods[2] == "head of sentiment on this GPT"
    assert [row[2]["method"] for row in cells] == ["template of the chain's translation run"] * 2 + [
        "own template"
    ]
    # the classifier's own cell is what `eval classify` measures on the same file
    metrics = evaluate_file(first, files["sentiment_eval"], text_column="sentence", label_column="label")
    assert cells[1][1]["value"] == pytest.approx(metrics.accuracy)
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "matrix.md").read_text()
    assert table.count("\n| ") == 3 and "sentiment→pairs" in table
    # an existing --out is refused without --overwrite / --force
    assert main(args) != 0
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_bootstrap_interval_of_a_constant_is_the_constant_and_covers_the_mean():
    assert bootstrap_interval(np.ones((50, 1)), lambda s: s[0] / 50) == (1.0, 1.0)
    rng = np.random.default_rng(0)
    stats = (rng.random((400, 1)) < 0.7).astype(float)
    low, high = bootstrap_interval(stats, lambda s: s[0] / 400, resamples=500)
    assert low < stats.mean() < high and high - low < 0.12  # about 4 standard errors of 0.023


def test_summed_segment_statistics_give_corpus_bleu():
    hyps = ["the cat sat on the mat", "a dog runs", "hello there world"]
    refs = ["the cat is on the mat", "the dog runs fast", "hello world"]
    rows = [segment_bleu_stats(h, [r]) for h, r in zip(hyps, refs)]
    sys_len, ref_len = sum(r[0] for r in rows), sum(r[1] for r in rows)
    correct = [sum(r[2][n] for r in rows) for n in range(4)]
    total = [sum(r[3][n] for r in rows) for n in range(4)]
    assert bleu_from_stats(correct, total, sys_len, ref_len, "exp").score == pytest.approx(
        corpus_bleu(hyps, [refs]).score
    )


def test_task_and_run_lists_are_checked(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("x\n")
    assert [t.name for t in parse_tasks(f"lm:{text},lm:{text}")] == ["lm:t", "lm:t"]
    with pytest.raises(GptlabError, match="KIND:FILE"):
        parse_tasks(f"poetry:{text}")
    with pytest.raises(GptlabError, match="not a file"):
        parse_tasks("lm:/nonexistent/file.txt")
    assert parse_runs("base=runs/a,runs/b") == [
        ("base", tmp_path.__class__("runs/a")),
        (None, tmp_path.__class__("runs/b")),
    ]


def test_a_translation_task_with_no_template_anywhere_is_a_clear_error(tmp_path):
    from continual_chain import base_run, write_pairs

    from gptlab.eval.forgetting import ForgettingOptions, evaluate_forgetting

    base = base_run(tmp_path / "base")
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3, 0)
    with pytest.raises(GptlabError, match="records no prompt template"):
        evaluate_forgetting([base], parse_tasks(f"translation:{pairs}"), ForgettingOptions(resamples=10))
    # the template (and fields) given on the command line are used instead
    options = ForgettingOptions(
        resamples=10, template="EN: {input}\nDE: ", input_field="en", target_field="de", max_new_tokens=2
    )
    matrix = evaluate_forgetting([base], parse_tasks(f"translation:{pairs}"), options)
    assert matrix.cells[0][0].n == 3 and matrix.rows[0]["label"] == "base"
