"""Task floors (gptlab.eval.baselines): sentence splitting, lead-1 and random-sentence summaries
scored by eval generation's ROUGE, the bag-of-words logistic regression, and their CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.eval.baselines import (
    bag_of_words_accuracy,
    lead_sentence,
    random_sentences,
    split_sentences,
    summary_baselines,
)

SCITLDR = Path(__file__).parents[1] / "data" / "tasks" / "scitldr" / "val.jsonl"
SST2 = Path(__file__).parents[1] / "data" / "tasks" / "sst2"


def test_sentences_split_after_end_marks_and_whitespace():
    text = "  We add a layer. Does it help?  Yes!It does (3.5 points).\nDone "
    assert split_sentences(text) == ["We add a layer.", "Does it help?", "Yes!It does (3.5 points).", "Done"]
    assert lead_sentence(text) == "We add a layer."
    assert lead_sentence("no end mark here") == "no end mark here"
    assert split_sentences("   ") == [] and lead_sentence("") == ""


def test_random_sentences_are_seeded_and_drawn_from_their_own_document():
    docs = [" ".join(f"Doc {d} sentence {i}." for i in range(6)) for d in range(40)]
    picks = random_sentences(docs, seed=3)
    assert picks == random_sentences(docs, seed=3) != random_sentences(docs, seed=4)
    assert all(p in split_sentences(d) for p, d in zip(picks, docs))
    assert len({p.split(" sentence ")[1] for p in picks}) > 1  # not always the same position


def test_summary_baselines_score_rouge_by_hand_values():
    # lead-1 is "the cat sat on the mat ." -> tokens the cat sat on the mat, identical to the
    # reference: ROUGE-1/2/L = 1. The other document's lead "a dog ran ." against "a dog ran far":
    # unigram overlap 3, P = 3/3, R = 3/4 -> F = 6/7; bigrams 2 of 2 and 2 of 3 -> F = 0.8.
    docs = ["The cat sat on the mat. It was warm.", "A dog ran. It barked."]
    refs = [["the cat sat on the mat"], ["a dog ran far", "something else entirely"]]
    scores = summary_baselines(docs, refs, seed=0)
    assert scores["lead1"]["n"] == 2
    assert scores["lead1"]["rouge1"] == pytest.approx((1 + 6 / 7) / 2)
    assert scores["lead1"]["rouge2"] == pytest.approx((1 + 0.8) / 2)
    assert set(scores) == {"lead1", "random"} and 0 <= scores["random"]["rougeL"] <= 1
    with pytest.raises(GptlabError, match="2 documents but 1 reference"):
        summary_baselines(docs, refs[:1])


def test_bag_of_words_learns_a_separable_task_and_ignores_unseen_words():
    train = ["good film", "great film", "good fun", "bad film", "awful film", "bad fun"] * 3
    labels = [1, 1, 1, 0, 0, 0] * 3
    result = bag_of_words_accuracy(train, labels, ["good stuff", "bad stuff", "unseen words"], [1, 0, 1])
    assert result.n_train == 18 and result.n_test == 3
    # unigrams good great fun bad awful film + bigrams "good film" "great film" "good fun" "bad film" "awful film" "bad fun"
    assert result.vocabulary == 12
    # the third text has no known word: the intercept decides, so only the first two are sure
    assert result.accuracy >= 2 / 3
    with pytest.raises(GptlabError, match="two labels"):
        bag_of_words_accuracy(["a", "b"], [1, 1], ["a"], [1])


def test_baseline_cli_summary_and_bow(capsys):
    assert (
        main(
            ["eval", "baseline", "summary", "--data", str(SCITLDR), "--target-field", "references", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in SCITLDR.read_text("utf-8").splitlines()]
    expected = summary_baselines([r["document"] for r in rows], [r["references"] for r in rows], seed=0)
    assert doc["lead1"] == expected["lead1"] and doc["random"] == expected["random"]

    args = [
        "--train",
        str(SST2 / "train.jsonl"),
        "--data",
        str(SST2 / "validation.jsonl"),
        "--text-field",
        "sentence",
    ]
    assert main(["eval", "baseline", "bow", *args, "--json"]) == 0
    bow = json.loads(capsys.readouterr().out)
    assert bow["n_train"] == 5 and bow["n_test"] == 6 and 0 <= bow["accuracy"] <= 1
    assert main(["eval", "baseline", "bow", *args]) == 0
    assert "bag-of-words logistic regression: accuracy" in capsys.readouterr().out
