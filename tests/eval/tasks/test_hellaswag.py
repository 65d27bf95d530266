"""HellaSwag: the harness's preprocessing of contexts and endings, the loader, acc and acc_norm."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.base import Loglikelihood as LL
from gptlab.eval.tasks.hellaswag import load

FIXTURE = Path(__file__).parents[2] / "data" / "tasks" / "hellaswag" / "hellaswag_val.jsonl"


def test_the_loader_builds_the_harness_query_and_choices():
    docs = load([FIXTURE])
    # activity_label + ": " + ctx_a + " " + ctx_b.capitalize()
    assert docs[0]["query"] == "Washing a car: A man sprays soap over a red car parked in a driveway. He"
    assert docs[0]["choices"][0] == "takes the soap to the roof of the house. and waves."
    assert docs[0]["gold"] == 3
    # WikiHow markup: " [title]" becomes ". ", other [...] go, double spaces become one; an empty
    # ctx_b leaves a trailing space that strip() removes
    assert docs[1]["query"] == "Home and Garden: How to water a plant. Check the soil."
    assert docs[1]["choices"] == [
        " Push a finger into the soil If it is dry, water it.",  # "[step]" goes after strip(): a space stays
        " Paint the pot blue.",
        "Sing to it loudly.",
        "Put it in the freezer. overnight.",
    ]
    assert [d.where for d in docs] == [f"{FIXTURE}:1", f"{FIXTURE}:2"]


def test_acc_and_acc_norm():
    task, doc = get_task("hellaswag"), load([FIXTURE])[0]
    lengths = [len(c) for c in doc["choices"]]
    assert lengths == [51, 23, 31, 40]
    # raw: choice 1 wins (-20 > -30); per character: -20/23 = -0.87 < -30/40 = -0.75, so choice 3 wins
    answers = [LL(-60.0, False), LL(-20.0, False), LL(-40.0, False), LL(-30.0, False)]
    assert task.process_results(doc, answers) == {"acc": 0.0, "acc_norm": 1.0}
    assert task.doc_to_target(doc) == 3 and task.doc_to_choice(doc) == doc["choices"]
    assert task.fewshot[0].dataset == "hellaswag-train"


@pytest.mark.slow  # imports lm-evaluation-harness (a few seconds)
def test_docs_match_lm_evaluation_harness_process_docs():
    harness = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    theirs = harness.process_docs(datasets.Dataset.from_list(rows))
    for ours, their in zip(load([FIXTURE]), theirs, strict=True):
        assert (ours["query"], ours["choices"], ours["gold"]) == (
            their["query"],
            their["choices"],
            their["gold"],
        )


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"activity_label": "a", "ctx_a": "b", "ctx_b": "", "endings": ["x", "y"], "label": 2},
            "'label' must be",
        ),
        (
            {"activity_label": "a", "ctx_a": "b", "ctx_b": "", "endings": ["x"], "label": 0},
            "'endings' must be",
        ),
        (
            {"activity_label": "a", "ctx_a": "", "ctx_b": "", "endings": ["x", "y"], "label": 0},
            "'ctx_a' must be",
        ),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "val.jsonl"
    good = {"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["x", "y"], "label": "1"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(GptlabError, match=re.escape(f"{path}:2: {message}")):
        load([path])
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(GptlabError, match=re.escape(f"{path} line 2: bad JSON")):
        load([path])
