"""Generation evaluation (gptlab.eval.generation, ``gptlab eval generation``): the scores equal
sacrebleu's and rouge-score's on the outputs, batched greedy/beam outputs equal one prompt at a
time, the run's recorded template and fields are used, --out / --json / bad input."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from samples import TRANSLATIONS, char_run

from gptlab.beam import beam_search
from gptlab.cli import main
from gptlab.data.tasks import InstructionExample, encode_prompt
from gptlab.errors import GptlabError
from gptlab.eval.generation import GenerationOptions, complete, evaluate_generation, score_outputs
from gptlab.generate import GREEDY, generate
from gptlab.rundir import load_model

DATA = TRANSLATIONS
TEMPLATE = "Translate English to German:\n{input}\n"
EXTRA = {"finetune": "instruct", "template": TEMPLATE, "input_field": "en", "output_field": "de"}


def make_run(folder: Path, extra: dict | None = EXTRA) -> Path:
    return char_run(folder, DATA.read_text("utf-8") + string.printable, 64, n_layer=1, n_embd=16, extra=extra)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("gen") / "run")


def test_scores_match_sacrebleu_and_rouge_score():
    refs = [json.loads(line)["de"] for line in DATA.read_text("utf-8").splitlines()]
    outputs = [r.replace("ein", "eine").replace(".", "") for r in refs]
    outputs[3] = refs[3]
    scores, items = score_outputs(outputs, [[r] for r in refs])
    assert scores["n"] == len(refs) == len(items)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score, abs=1e-9)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(outputs, [refs]).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    theirs = [scorer.score(r, o) for o, r in zip(outputs, refs)]
    for t in ("rouge1", "rouge2", "rougeL"):
        assert scores[t] == pytest.approx(sum(s[t].fmeasure for s in theirs) / len(theirs), abs=1e-9)
        assert [item[t] for item in items] == pytest.approx([s[t].fmeasure for s in theirs])
    assert scores["exact_match"] == pytest.approx(sum(o == r for o, r in zip(outputs, refs)) / len(refs))
    for item, o, r in zip(items, outputs, refs):
        assert item["bleu"] == pytest.approx(sacrebleu.sentence_bleu(o, [r]).score)
        assert item["chrf"] == pytest.approx(sacrebleu.sentence_chrf(o, [r]).score)


def test_several_references_and_metric_subsets():
    scores, items = score_outputs(
        ["a b c", "x y"], [["a b c d", "a b c"], ["x z"]], metrics=("exact", "bleu")
    )
    assert set(scores) == {"exact_match", "bleu", "n"} and scores["exact_match"] == 0.5
    assert items[0]["exact_match"] and not items[1]["exact_match"]
    hyps, refs_a, refs_b = ["a b c", "x y"], ["a b c d", "x z"], ["a b c", None]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs_a, refs_b]).score)


@pytest.mark.parametrize("beams", [1, 3])
def test_batched_outputs_equal_one_prompt_at_a_time(run, beams):
    gpt, tok = load_model(run)
    prompts = [
        tok.encode(f"Translate English to German:\n{w}\n") for w in ("A dog.", "Two children play", "x")
    ]
    texts = complete(gpt, tok, prompts, 6, beams=beams, batch_size=2)
    for prompt, text in zip(prompts, texts):
        if beams == 1:
            alone = generate(gpt, [prompt], 6, GREEDY, eos_id=tok.eot_id)[0][len(prompt) :]
        else:
            alone = beam_search(gpt, [prompt], 6, beams, eos_id=tok.eot_id)[0].tokens
        alone = alone[: alone.index(tok.eot_id)] if tok.eot_id in alone else alone
        assert text == tok.decode(alone)


def test_evaluate_uses_the_runs_template_and_fields(run):
    result = evaluate_generation(run, DATA, GenerationOptions(max_new_tokens=5, limit=4, device="cpu"))
    assert set(result.scores) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "n"}
    assert result.scores["n"] == 4 and len(result.items) == 4
    s = result.settings
    assert (s["template"], s["input_field"], s["target_field"]) == (TEMPLATE, "en", "de")
    gpt, tok = load_model(run)
    first = json.loads(DATA.read_text("utf-8").splitlines()[0])
    prompt = encode_prompt(InstructionExample(first["en"]), tok, TEMPLATE)
    assert prompt == tok.encode(TEMPLATE.replace("{input}", first["en"]))
    assert result.items[0]["output"] == complete(gpt, tok, [prompt], 5)[0].strip()
    assert result.items[0]["references"] == [first["de"]] and result.items[0]["line"] == 1
    rescored, _ = score_outputs([i["output"] for i in result.items], [i["references"] for i in result.items])
    assert rescored == result.scores


def test_cli_json_out_and_overwrite(run, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "generation", "--model", str(run), "--data", str(DATA), "--max-new-tokens", "4"]
    args += ["--beams", "2", "--limit", "3", "--metrics", "chrf,exact", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # exactly one JSON document
    assert set(printed) == {"chrf", "exact_match", "n", "settings"} and printed["settings"]["beams"] == 2
    lines = (out / "outputs.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 3 and {"input", "references", "output", "chrf", "exact_match"} <= set(
        json.loads(lines[0])
    )
    assert json.loads((out / "results.json").read_text())["chrf"] == printed["chrf"]
    assert main(args) == 2 and "outputs.jsonl" in capsys.readouterr().err  # never overwritten silently
    assert main([*args, "--force"]) == 0


def test_an_explicit_template_overrides_and_a_plain_run_needs_one(tmp_path, capsys):
    plain = make_run(tmp_path / "plain", extra=None)
    base = ["eval", "generation", "--model", str(plain), "--data", str(DATA), "--device", "cpu", "--json"]
    assert main([*base, "--input-field", "en", "--target-field", "de"]) == 2
    assert "records no prompt template" in capsys.readouterr().err
    assert main([*base, "--template", "Translate:\\n{input}\\n"]) == 2
    assert "records no input field" in capsys.readouterr().err
    code = main(
        [*base, "--template", "Translate:\\n{input}\\n", "--input-field", "en", "--target-field", "de"]
        + ["--limit", "2", "--max-new-tokens", "2"]
    )
    assert (
        code == 0 and json.loads(capsys.readouterr().out)["settings"]["template"] == "Translate:\n{input}\n"
    )


@pytest.mark.parametrize(
    ("extra_args", "lines", "message"),
    [
        ([], ['{"en": "a", "de": "b"}', "[1, 2]"], "line 2: expected a JSON object"),
        ([], ['{"en": "a", "de": ""}'], "line 1: empty text in field 'de'"),
        (["--template", "no slot"], ['{"en": "a", "de": "b"}'], "{input}"),
        (["--metrics", "bleu,meteor"], ['{"en": "a", "de": "b"}'], "metrics must be"),
        (["--target-field", "fr"], ['{"en": "a", "de": "b"}'], "missing field 'fr'"),
    ],
)
def test_bad_input_is_a_clear_error(run, tmp_path, capsys, extra_args, lines, message):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(lines) + "\n")
    args = ["eval", "generation", "--model", str(run), "--data", str(data), "--device", "cpu", "--json"]
    assert main([*args, *extra_args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_options_are_checked():
    with pytest.raises(GptlabError, match="beams"):
        GenerationOptions(beams=0).check()
    with pytest.raises(GptlabError, match="limit"):
        GenerationOptions(limit=0).check()
    with pytest.raises(GptlabError, match="length_penalty"):
        GenerationOptions(length_penalty=float("nan")).check()
