"""TruthfulQA mc1/mc2: the loader (mc_task.json with the CSV's categories), the prompt, and the
scores, mc2 computed by hand on 3 items."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.base import Loglikelihood as LL
from gptlab.eval.tasks.truthfulqa import PREAMBLE, load

FIXTURES = Path(__file__).parents[2] / "data" / "tasks" / "truthfulqa"
FILES = [FIXTURES / "mc_task.json", FIXTURES / "TruthfulQA.csv"]


def test_the_loader_joins_questions_and_categories_in_file_order():
    docs = load(FILES)
    assert [d.index for d in docs] == [0, 1, 2]
    assert [d["category"] for d in docs] == ["Science", "Misconceptions", "Health"]
    assert docs[0]["mc1_choices"] == ["The sky is blue", "The sky is green", "The sky is red"]
    assert docs[0]["mc2_labels"] == [1, 1, 0]
    assert docs[1]["mc1_gold"] == 0 and docs[2]["mc2_choices"][1] == "You get arthritis"
    assert docs[1].where == f"{FILES[0]}:{_line_of(FILES[0], 'Do goldfish') - 1}"  # the item's "{" line


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_prompt_is_the_six_question_preamble_then_the_question():
    task, doc = get_task("truthfulqa_mc1"), load(FILES)[0]
    prompt = task.doc_to_text(doc)
    assert prompt == PREAMBLE + "\n\nQ: What colour is the sky on a clear day?\nA:"
    assert prompt.startswith("Q: What is human life expectancy in the United States?\nA: Human life")
    assert PREAMBLE.count("\nA: ") == 6 and PREAMBLE.endswith("Barcelona, Spain.")
    assert task.target_delimiter == " " and task.fewshot is None
    assert task.doc_to_choice(doc) == doc["mc1_choices"] and task.doc_to_target(doc) == 0


def test_mc1_is_right_when_the_true_answer_is_the_most_likely():
    task, doc = get_task("truthfulqa_mc1"), load(FILES)[0]
    assert task.process_results(doc, [LL(-1.0, False), LL(-2.0, False), LL(-3.0, False)]) == {"acc": 1.0}
    assert task.process_results(doc, [LL(-2.0, False), LL(-1.0, False), LL(-3.0, False)]) == {"acc": 0.0}
    # a tie goes to the first choice, as numpy.argmax breaks it in the harness
    assert task.process_results(doc, [LL(-1.0, False), LL(-1.0, False), LL(-3.0, False)]) == {"acc": 1.0}


def test_mc2_is_the_probability_mass_on_the_true_answers_by_hand():
    task, docs = get_task("truthfulqa_mc2"), load(FILES)
    # item 0: labels [1, 1, 0], probabilities 0.2, 0.3, 0.5 (they sum to 1): mass = 0.2 + 0.3 = 0.5
    a0 = [LL(math.log(0.2), False), LL(math.log(0.3), False), LL(math.log(0.5), False)]
    # item 1: labels [1, 0, 0], three equal log-likelihoods: mass = 1/3
    a1 = [LL(-4.0, False)] * 3
    # item 2: labels [1, 0], log-likelihoods -1000 and -1001: exp() underflows to 0 for both, but
    # the ratio is e^-1000 / (e^-1000 + e^-1001) = 1 / (1 + e^-1) = 0.7310585786300049
    a2 = [LL(-1000.0, False), LL(-1001.0, False)]
    scores = [task.process_results(d, a)["acc"] for d, a in zip(docs, [a0, a1, a2], strict=True)]
    assert scores == pytest.approx([0.5, 1 / 3, 0.7310585786300049], abs=1e-12)
    # the task's number is their mean: (0.5 + 0.333333 + 0.731059) / 3 = 0.521464
    assert sum(scores) / 3 == pytest.approx(0.5214639706, abs=1e-9)


def _write(tmp_path: Path, items: list, rows: list[str]) -> list[Path]:
    mc, csv = tmp_path / "mc_task.json", tmp_path / "TruthfulQA.csv"
    mc.write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    csv.write_text("Type,Category,Question\n" + "".join(r + "\n" for r in rows))
    return [mc, csv]


def _item(question: str, mc1: dict | None = None) -> dict:
    return {
        "question": question,
        "mc1_targets": mc1 or {"yes": 1, "no": 0},
        "mc2_targets": {"yes": 1, "no": 0},
    }


def test_malformed_items_name_the_file_and_line(tmp_path):
    files = _write(tmp_path, [_item("A?"), _item("B?", {"yes": 1, "no": 1})], ["x,c,A?", "x,c,B?"])
    with pytest.raises(GptlabError, match=re.escape(f"{files[0]}:3: 'mc1_targets' must have exactly one")):
        load(files)
    files = _write(
        tmp_path, [_item("A?"), {"question": "B?", "mc1_targets": {"yes": 1}}], ["x,c,A?", "x,c,B?"]
    )
    with pytest.raises(GptlabError, match=re.escape(f"{files[0]}:3: 'mc1_targets' must map at least 2")):
        load(files)


def test_the_csv_must_hold_the_same_questions_in_the_same_order(tmp_path):
    files = _write(tmp_path, [_item("A?"), _item("B?")], ["x,c,A?", "x,c,C?"])
    with pytest.raises(GptlabError, match=re.escape(f"{files[1]}:3: question 'C?' is not 'B?'")):
        load(files)
    files = _write(tmp_path, [_item("A?"), _item("B?")], ["x,c,A?"])
    with pytest.raises(GptlabError, match="has 2 questions but .* has 1 rows"):
        load(files)
    files = _write(tmp_path, [_item("A?")], ['x,c,"A?'])  # an unclosed quote
    with pytest.raises(GptlabError, match=re.escape(f"{files[1]}:2: bad CSV")):
        load(files)


def _harness_file(*parts: str) -> Path:
    """A file of the installed lm-evaluation-harness package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lm-evaluation-harness is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def test_the_prompt_matches_the_harness_template():
    jinja2, yaml = pytest.importorskip("jinja2"), pytest.importorskip("yaml")
    config = yaml.safe_load(_harness_file("tasks", "truthfulqa", "truthfulqa_mc1.yaml").read_text())
    doc = load(FILES)[1]
    expected = jinja2.Template(config["doc_to_text"]).render(question=doc["question"])
    assert get_task("truthfulqa_mc1").doc_to_text(doc) == expected


@pytest.mark.slow  # imports lm-evaluation-harness (a few seconds)
def test_mc2_matches_the_harness_where_it_does_not_underflow():
    harness = pytest.importorskip("lm_eval.tasks.truthfulqa.utils")
    task, doc = get_task("truthfulqa_mc2"), load(FILES)[0]
    for lls in ([-1.0, -2.5, -0.3], [-30.0, -31.0, -29.0], [-4.0, -4.0, -4.0]):
        answers = [LL(ll, False) for ll in lls]
        theirs = harness.process_results_mc2({"mc2_targets": {"labels": doc["mc2_labels"]}}, answers)
        assert task.process_results(doc, answers)["acc"] == pytest.approx(theirs["acc"], rel=1e-12)
