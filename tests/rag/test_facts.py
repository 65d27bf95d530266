"""gptlab.rag.facts: the invented-people collection and the rag-copy training prompts
(`gptlab data instructions --kind rag-copy`). Every answer is recomputed from its prompt's sources
by an independent reader, the training and evaluation names never meet, and the prompt is the one
`gptlab rag ask` builds."""

from __future__ import annotations

import json
import re

import pytest

from gptlab.cli import main
from gptlab.data.tasks import load_instructions
from gptlab.errors import GptlabError
from gptlab.rag.facts import copy_examples, held_out_name, make_facts, name_count
from gptlab.rag.prompt import format_prompt

QUESTION = re.compile(r"\n\nQ: (.*) A:$")
SOURCE = re.compile(r"^\[(\d+)\] (.*)$", re.M)


def read_answer(question: str, sources: list[str]) -> str:
    """The answer found in the sources by the question's pattern, independently of the generator."""
    if m := re.fullmatch(r"What is (\w+)'s occupation\?", question):
        pattern = rf"\b{m[1]} was an? (\w+)"
    elif m := re.fullmatch(r"In what country is (\w+)\?", question):
        pattern = rf"\b{m[1]} is a small town in (\w+)\."
    elif m := re.fullmatch(r"In what town was (\w+) born\?", question):
        pattern = rf"\b{m[1]} was an? \w+ born in the town of (\w+)\."
    else:
        raise AssertionError(f"unexpected question {question!r}")
    found = {hit for text in sources for hit in re.findall(pattern, text)}
    assert len(found) == 1, (question, sources)
    return found.pop()


def test_collection_answers_are_in_the_gold_article_and_name_halves_do_not_meet():
    docs, qa = make_facts(40, seed=3, names="held-out", questions=("occupation", "country", "birthplace"))
    assert len(docs) == 40 and len(qa) == 120
    text = {d["id"]: d["text"] for d in docs}
    for row in qa:
        assert read_answer(row["question"], [text[row["doc"]]]) == row["answers"][0]
    invented = {d["id"] for d in docs} | {re.search(r"town of (\w+)", d["text"])[1] for d in docs}
    assert len(invented) == 80 and all(held_out_name(n) for n in invented)
    train = copy_examples(300, seed=3)
    trained_names = {w for r in train for w in re.findall(r"\b[A-Z][a-z]{4,}\b", r["instruction"])}
    assert not invented & trained_names  # an evaluated entity is never in the training text
    assert make_facts(40, seed=3, names="held-out") == make_facts(40, seed=3, names="held-out")


def test_copy_examples_are_rag_prompts_whose_answer_is_in_one_source():
    records = copy_examples(200, seed=0, k=3)
    assert len({r["instruction"] for r in records}) == 200
    kinds = set()
    for r in records:
        prompt = r["instruction"]
        question = QUESTION.search(prompt)[1]
        sources = [text for _, text in SOURCE.findall(prompt)]
        assert [int(i) for i, _ in SOURCE.findall(prompt)] == [1, 2, 3]
        assert prompt == format_prompt(question, sources)  # exactly `rag ask`'s prompt
        assert read_answer(question, sources) == r["output"]
        assert r["text"] == f"{prompt} {r['output']}" and r["input"] == ""
        assert all(len(s.split()) <= 32 for s in sources)  # chunks of the index's size
        kinds.add(re.sub(r"(?<= )[A-Z]\w+", "X", question))
    assert kinds == {"What is X's occupation?", "In what country is X?", "In what town was X born?"}
    assert copy_examples(20, seed=1) == copy_examples(20, seed=1) != copy_examples(20, seed=2)


def test_bad_sizes_are_refused():
    for call in (
        lambda: copy_examples(0),
        lambda: copy_examples(5, k=0),
        lambda: make_facts(0),
        lambda: make_facts(5, names="some"),
        lambda: make_facts(5, questions=("age",)),
        lambda: make_facts(name_count("training")),  # two names an entity: more than there are
    ):
        with pytest.raises(GptlabError):
            call()


def test_cli_writes_a_rag_copy_suite_that_loads_as_instructions(tmp_path, capsys):
    out = tmp_path / "rag-copy.json"
    assert main(["data", "instructions", "--kind", "rag-copy", "--n", "30", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(out), "kind": "rag-copy", "n": 30, "seed": 0}
    examples = load_instructions(out)
    assert len(examples) == 30 and all(ex.output in ex.instruction for ex in examples)
