"""PopQA: the loader, the prompt, the paper's answer match (computed by hand on 3 items) and the
popularity bins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.popqa import load, matches, popularity_bin

FIXTURE = Path(__file__).parents[2] / "data" / "tasks" / "popqa" / "popQA.tsv"


def test_the_loader_and_the_prompt():
    task, docs = get_task("popqa"), load([FIXTURE])
    assert [d["answers"] for d in docs] == [
        ["Exampleland", "Land of Examples"],
        ["painter", "artist"],
        ["Norway", "Kingdom of Norway"],
    ]
    assert task.doc_to_text(docs[0]) == "Q: What is Exampleton the capital of? A:"
    assert task.output_type == "generate_until" and task.until == ("\n",) and task.max_gen_tokens == 15
    assert [d.where for d in docs] == [f"{FIXTURE}:{n}" for n in (2, 3, 4)]


def test_any_answer_match_and_popularity_bins_by_hand():
    task, docs = get_task("popqa"), load([FIXTURE])
    replies = [
        " exampleland, a small country",  # "Exampleland".lower() is in it: right
        " He was an Artist.",  # "artist".capitalize() = "Artist" is in it: right
        " NORWAY",  # neither "Norway", "norway" nor "Norway" (capitalised) is in it: wrong, as in the paper
    ]
    scores = [task.process_results(d, r)["acc"] for d, r in zip(docs, replies, strict=True)]
    assert scores == [1.0, 1.0, 0.0]  # acc = 2/3
    # s_pop 250000 -> 10^5 and above; 4200 -> 10^3..10^4; 37 -> below 10^2
    assert [task.category(d) for d in docs] == ["s_pop >=10^5", "s_pop 10^3-10^4", "s_pop <10^2"]


def test_popularity_bin_edges():
    assert [popularity_bin(n) for n in (0, 99, 100, 999, 1000, 99_999, 100_000, 10**9)] == [
        "s_pop <10^2",
        "s_pop <10^2",
        "s_pop 10^2-10^3",
        "s_pop 10^2-10^3",
        "s_pop 10^3-10^4",
        "s_pop 10^4-10^5",
        "s_pop >=10^5",
        "s_pop >=10^5",
    ]


def test_matches_tries_the_answer_as_written_lower_cased_and_capitalised_as_substrings():
    assert matches("Paris, France", ["paris"]) is True  # "paris".capitalize() == "Paris"
    assert matches("in paris", ["Paris"]) is True  # "Paris".lower()
    assert matches("PARIS", ["Paris"]) is False  # no upper-cased variant in the paper's test
    assert matches("Parisian food", ["Paris"]) is True  # a substring, not a whole word
    assert matches("", ["Paris"]) is False


@pytest.mark.parametrize(
    "change, message",
    [
        ({"possible_answers": "[not json"}, "possible_answers is not a JSON list"),
        ({"possible_answers": "[]"}, "possible_answers must be a non-empty JSON list"),
        ({"s_pop": "many"}, "s_pop must be a whole number"),
        ({"question": " "}, "empty question"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path, change, message):
    header, *rows = FIXTURE.read_text().splitlines()
    columns = header.split("\t")
    fields = dict(zip(columns, rows[1].split("\t"), strict=True)) | change
    path = tmp_path / "popQA.tsv"
    path.write_text("\n".join([header, rows[0], "\t".join(fields[c] for c in columns)]) + "\n")
    with pytest.raises(GptlabError, match=re.escape(f"{path}:3: {message}")):
        load([path])
    path.write_text("\n".join([header, rows[0] + "\textra"]) + "\n")
    with pytest.raises(GptlabError, match=re.escape(f"{path}:2: 18 tab-separated fields, the header has 17")):
        load([path])
