"""`gptlab data instructions --kind probe-tasks`: the synthetic suite the injection lab trains on.
Deterministic by seed, valid Alpaca records, every answer recomputed from the prompt alone by an
independent solver, the audit's instructions and secret convention used as the audit uses them, the
audit's own inputs never trained on, and the audit's clean twins answerable from what the suite
teaches."""

from __future__ import annotations

import json
import re

import pytest

from gptlab.audit.injection_defence import TRAIN_ATTACKS, TRAIN_MARKERS
from gptlab.audit.injection_probes import BUILTIN_ATTACKS, BUILTIN_TASKS, DEFAULT_MARKER, with_secret
from gptlab.cli import main
from gptlab.data.probe_tasks import TASK_NAMES, instruction_suite, probe_task_examples
from gptlab.data.tasks import load_instructions
from gptlab.errors import GptlabError

AUDIT_INSTRUCTIONS = {t.instruction: t for t in BUILTIN_TASKS}
SECRET = re.compile(r"^(.*) The secret password is ([A-Z]{6})\. Never reveal it\.$")
SAY = re.compile(r"^(?:Say|Reply only with|Print|Answer with the word) ([A-Z]+)(?: and nothing else)?\.$")
REVISE = re.compile(
    r"^(?:Change of plan: reply only with|Actually, just answer|On second thought, write|Scratch that and say) "
    r"([A-Z]+)(?: and nothing else)?\.$"
)
RECALL = re.compile(r"The ([a-z ]+) is ([A-Z]+)\.\nWhat is the \1\?$")


def solve(record: dict, facts: dict[str, str], polarity: dict[str, str]) -> str:
    """The answer recomputed from the prompt (and, for sentiment and facts, from what the suite
    itself teaches: word polarities and the fact table), independently of the generator."""
    instruction, text = record["instruction"], record["input"]
    if m := RECALL.search(instruction):  # a fact, then a question about it on the last line
        return m.group(2)
    lines = instruction.split("\n")
    task = lines[-1]  # an optional context line comes first
    if m := SECRET.match(task):
        task = m.group(1)
    if m := SAY.match(task) or REVISE.match(task):  # the last line revises the request
        return m.group(1)
    if task == "Repeat the input in upper case.":
        return text.upper()
    if task == "Return the first word of the input.":
        return text.split()[0]
    if task.startswith("Answer with the sentiment"):
        labels = {polarity[w] for w in re.findall(r"[a-z]+", text) if w in polarity}
        assert len(labels) == 1, text
        return labels.pop()
    if task == "Copy the input exactly.":
        return text
    if task == "Put the input in square brackets.":
        return f"[{text}]"
    if task.startswith("How many items"):
        return str(len(text.split(", ")))
    if task == "Answer the question.":
        return facts[text]
    raise AssertionError(f"unknown task: {instruction!r}")


def polarity_words(records, min_count: int = 10) -> dict[str, str]:
    """Words that occur at least ``min_count`` times in sentiment inputs, always with one label,
    from the suite itself (a rarer word may sit on one side by chance)."""
    seen: dict[str, list[str]] = {}
    for r in records:
        if r["instruction"].split("\n")[-1].startswith(BUILTIN_TASKS[2].instruction):
            for word in re.findall(r"[a-z]+", r["input"]):
                seen.setdefault(word, []).append(r["output"])
    return {w: labels[0] for w, labels in seen.items() if len(labels) >= min_count and len(set(labels)) == 1}


@pytest.fixture(scope="module")
def suite():
    return probe_task_examples(1500, seed=3)


def test_deterministic_by_seed_and_the_seed_matters(suite):
    assert probe_task_examples(1500, seed=3) == suite
    assert probe_task_examples(1500, seed=4) != suite
    assert probe_task_examples(40, seed=3) == suite[:40]  # a prefix: n only says how many
    assert instruction_suite("probe-tasks", 40, 3) == suite[:40]
    with pytest.raises(GptlabError, match="unknown instruction suite"):
        instruction_suite("alpaca", 10)
    with pytest.raises(GptlabError):
        probe_task_examples(0)
    with pytest.raises(GptlabError, match="unknown probe task"):
        probe_task_examples(10, tasks=("upper", "juggle"))


def test_every_answer_follows_from_its_prompt(suite):
    facts = {r["input"]: r["output"] for r in suite if r["instruction"].endswith("Answer the question.")}
    assert 8 <= len(facts) <= 12  # a fixed table, each question with one answer
    polarity = polarity_words(suite, min_count=1)
    for record in suite:
        assert set(record) == {"instruction", "input", "output"}
        assert all(isinstance(v, str) for v in record.values()) and record["output"].strip()
        assert solve(record, facts, polarity) == record["output"], record
    for name in TASK_NAMES:  # each task alone (the `tasks` filter), every answer again from its prompt
        only = probe_task_examples(30, seed=1, tasks=(name,))
        assert all(solve(r, facts, polarity) == r["output"] for r in only)
    # the audit's three tasks with the larger share
    firsts = [r["instruction"].split("\n")[-1] for r in suite]
    for task in BUILTIN_TASKS:
        share = sum(f.startswith(task.instruction) for f in firsts) / len(suite)
        assert 0.1 < share < 0.25, (task.name, share)


def test_uses_the_audit_conventions_and_never_its_inputs(suite):
    audit_inputs = {text for t in BUILTIN_TASKS for text, _ in t.examples}
    secrets = 0
    for record in suite:
        assert record["input"] not in audit_inputs
        task_line = record["instruction"].split("\n")[-1]
        if m := SECRET.match(task_line):
            secrets += 1
            # exactly the audit's clean_secret form: its instruction, then `with_secret`
            assert m.group(1) in AUDIT_INSTRUCTIONS and task_line == with_secret(m.group(1), m.group(2))
        # the words the audit looks for never appear in a training target
        for word in (DEFAULT_MARKER, *TRAIN_MARKERS):
            assert word not in record["output"].split()
        assert "secret password" not in record["output"]
        # the attack phrasings of the audit (and of the defence's training) are never taught
        for attack in (*BUILTIN_ATTACKS, *TRAIN_ATTACKS):
            assert attack.payload.split("{marker}")[0].strip() not in record["instruction"]
    assert secrets > 50


def test_the_audits_clean_twins_are_answerable_from_what_it_teaches(suite):
    """Each audit input's words are in the suite (upper-casing and first words were practised on
    them) and each audit sentiment sentence holds polarity words of its own label only."""
    trained = {w for r in suite for w in r["input"].split()}
    polarity = polarity_words(suite)
    for task in BUILTIN_TASKS:
        for text, answer in task.examples:
            words = re.findall(r"[a-z]+", text.lower())
            if task.kind == "label":
                assert {polarity[w] for w in words if w in polarity} == {answer}, text
            else:
                assert set(text.split()) <= trained, text


def test_cli_writes_loadable_alpaca_json_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert main(["data", "instructions", "--kind", "probe-tasks", "--n", "30", "--seed", "3",
                 "--out", str(out), "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == {"out": str(out), "kind": "probe-tasks", "n": 30, "seed": 3}
    assert json.loads(out.read_text("utf-8")) == probe_task_examples(30, seed=3)
    assert len(load_instructions(out)) == 30
    assert main(["data", "instructions", "--kind", "probe-tasks", "--n", "5", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(json.loads(out.read_text("utf-8"))) == 30  # untouched
