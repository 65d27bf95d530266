"""`gptlab eval bleu|rouge`: inputs from line files or responses JSON, output, errors.

The sub-verbs are registered on a stand-alone parser, as gptlab/commands/eval.py does.
"""

from __future__ import annotations

import argparse
import json

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from samples import INSTRUCTIONS
from text_pairs import make_pairs

from gptlab.commands.eval_text import register_text_metrics
from gptlab.errors import GptlabError

TOL = 1e-6
N_PAIRS = 50


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gptlab eval")
    register_text_metrics(parser.add_subparsers(dest="metric", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs(INSTRUCTIONS, N_PAIRS, seed=5)


@pytest.fixture
def line_files(tmp_path, pairs):
    hyp, ref, ref2 = tmp_path / "hyp.txt", tmp_path / "ref.txt", tmp_path / "ref2.txt"
    hyp.write_text("".join(h + "\n" for h, _ in pairs), "utf-8")
    ref.write_text("\r\n".join(r for _, r in pairs), "utf-8")  # CRLF, no final newline
    ref2.write_text("".join(h.upper() + "\n" for h, _ in pairs), "utf-8")
    return str(hyp), str(ref), str(ref2)


def test_bleu_from_line_files_matches_sacrebleu(line_files, pairs, capsys):
    hyp, ref, ref2 = line_files
    assert run(["bleu", "--hyp", hyp, "--ref", ref, "--ref", ref2, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    expected = sacrebleu.corpus_bleu(hyps, [refs, [h.upper() for h in hyps]])
    assert report["score"] == pytest.approx(expected.score, abs=TOL)
    assert (report["segments"], report["references"]) == (N_PAIRS, 2)
    assert run(["bleu", "--hyp", hyp, "--ref", ref, "--tokenize", "none", "--smooth", "floor"]) == 0
    text = capsys.readouterr().out
    expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="floor")
    assert text.startswith(f"BLEU = {expected.score:.2f}")


def test_rouge_from_responses_json_matches_rouge_score(tmp_path, pairs, capsys):
    responses = tmp_path / "responses.json"
    items = [{"instruction": "x", "generated": h, "reference": r} for h, r in pairs]
    items[0]["reference"] = [items[0]["reference"], items[0]["generated"]]  # several references
    responses.write_text(json.dumps(items), "utf-8")
    assert (
        run(["rouge", "--responses", str(responses), "--types", "rouge1", "rougeL", "--stemmer", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    references = [it["reference"] if isinstance(it["reference"], list) else [it["reference"]] for it in items]
    scores = [scorer.score_multi(refs, it["generated"]) for refs, it in zip(references, items)]
    for t in ("rouge1", "rougeL"):
        expected = sum(s[t].fmeasure for s in scores) / len(scores)
        assert report["scores"][t]["mean"]["fmeasure"] == pytest.approx(expected, abs=TOL)
        assert report["scores"][t]["low"] is None
    assert run(["rouge", "--responses", str(responses), "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "rougeLsum" in text and "95% CI of F" in text


def test_bleu_from_responses_with_uneven_reference_counts(tmp_path, capsys):
    responses = tmp_path / "responses.json"
    items = [
        {"generated": "the cat sat on the mat", "reference": ["the cat is on the mat", "a cat sat on a mat"]},
        {"generated": "a dog barked", "reference": "the dog barked loudly"},
    ]
    responses.write_text(json.dumps(items), "utf-8")
    assert run(["bleu", "--responses", str(responses), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    refs_a = ["the cat is on the mat", "the dog barked loudly"]
    refs_b = ["a cat sat on a mat", None]
    expected = sacrebleu.corpus_bleu([it["generated"] for it in items], [refs_a, refs_b])
    assert report["score"] == pytest.approx(expected.score, abs=TOL)


def test_mismatched_line_counts_name_both_files(tmp_path, line_files):
    hyp, _, _ = line_files
    short = tmp_path / "short.txt"
    short.write_text("one line\n", "utf-8")
    with pytest.raises(GptlabError, match=r"reference file .*short\.txt has 1 lines but hypothesis file"):
        run(["bleu", "--hyp", hyp, "--ref", str(short)])


@pytest.mark.parametrize(
    "items, message",
    [
        ({"generated": "a"}, "expected a non-empty JSON list"),
        ([], "expected a non-empty JSON list"),
        ([{"reference": "a"}], r"item 0: field 'generated' must be a string, got NoneType"),
        (
            [{"generated": "a", "reference": "a"}, {"generated": "a", "reference": [1]}],
            r"item 1: field 'reference'",
        ),
        (["a"], "item 0: expected an object"),
    ],
)
def test_bad_responses_file_names_the_item_and_field(tmp_path, items, message):
    responses = tmp_path / "responses.json"
    responses.write_text(json.dumps(items), "utf-8")
    with pytest.raises(GptlabError, match=message):
        run(["rouge", "--responses", str(responses)])


def test_input_errors(tmp_path, line_files):
    hyp, ref, _ = line_files
    with pytest.raises(GptlabError, match="either --responses or --hyp/--ref"):
        run(["bleu", "--hyp", hyp, "--ref", ref, "--responses", "r.json"])
    with pytest.raises(GptlabError, match="at least one --ref"):
        run(["bleu", "--hyp", hyp])
    with pytest.raises(GptlabError, match="reference file not found"):
        run(["bleu", "--hyp", hyp, "--ref", str(tmp_path / "missing.txt")])
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GptlabError, match="is not UTF-8 text"):
        run(["rouge", "--hyp", str(binary), "--ref", ref])
    with pytest.raises(GptlabError, match="unknown ROUGE type 'rougeX'"):
        run(["rouge", "--hyp", hyp, "--ref", ref, "--types", "rougeX"])


@pytest.mark.parametrize("metric", ["bleu", "rouge"])
def test_help(metric, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([metric, "--help"])
    assert exit_info.value.code == 0
    assert "--responses" in capsys.readouterr().out
