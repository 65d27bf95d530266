"""ROUGE and its Porter stemmer: parity with Google's rouge-score and NLTK, hand-computed values."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, scoring
from rouge_score import tokenize as rouge_score_tokenize
from text_pairs import instruction_outputs, make_pairs, perturb

from gptlab.eval.porter import porter_stem
from gptlab.eval.rouge import ROUGE_TYPES, corpus_rouge, rouge, rouge_tokenize

TOL = 1e-6
N_PAIRS = 300
MAX_SENTENCES = 3
FIELDS = ("precision", "recall", "fmeasure")


def max_difference(ours, theirs, types=ROUGE_TYPES) -> float:
    return max(abs(getattr(ours[t], f) - getattr(theirs[t], f)) for t in types for f in FIELDS)


@pytest.fixture(scope="module")
def pairs(dataset):
    """(prediction, reference) pairs of one to three lines, so ROUGE-Lsum sees several sentences."""
    outputs = instruction_outputs(dataset("instruction-data-subset"))
    vocabulary = sorted({w for line in outputs for w in line.split()})
    rng = random.Random(0)
    single = make_pairs(dataset("instruction-data-subset"), N_PAIRS, seed=0)
    multi = []
    for _ in range(N_PAIRS // 2):
        ref_lines = rng.sample(outputs, rng.randint(2, MAX_SENTENCES))
        pred_lines = [perturb(line, rng, vocabulary) for line in ref_lines]
        rng.shuffle(pred_lines)
        multi.append(("\n".join(pred_lines), "\n".join(ref_lines)))
    return single + multi


@pytest.fixture(scope="module")
def vocabulary_words(dataset):
    """Every distinct [a-z0-9] word of the shared data (about 18k)."""
    words = set()
    for name in ("tinyshakespeare", "the-verdict", "sms-spam-subset"):
        words |= set(re.sub(r"[^a-z0-9]+", " ", dataset(name).read_text("utf-8").lower()).split())
    for item in json.loads(dataset("instruction-data-subset").read_text("utf-8")):
        for value in item.values():
            words |= set(re.sub(r"[^a-z0-9]+", " ", value.lower()).split())
    return sorted(words)


def test_porter_stem_matches_nltk_on_every_word_of_the_shared_data(vocabulary_words):
    stemmer = PorterStemmer()
    assert len(vocabulary_words) > 10_000
    mismatches = [
        (w, porter_stem(w), stemmer.stem(w)) for w in vocabulary_words if porter_stem(w) != stemmer.stem(w)
    ]
    assert mismatches == []


SUFFIXES = [
    *"aeiouyslbdz", "ies", "ied", "eed", "ing", "ed", "at", "bl", "iz", "ational", "tional", "enci", "anci",
    "izer", "bli", "alli", "entli", "eli", "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness",
    "ousness", "aliti", "iviti", "biliti", "fulli", "logi", "icate", "ative", "alize", "iciti", "ical", "ful",
    "ness", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou", "ism",
    "ate", "iti", "ous", "ive", "ize", "ll", "sses", "ss", "yy",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(SUFFIXES), min_size=1, max_size=5).map("".join))
def test_porter_stem_matches_nltk_on_suffix_stacks(word):
    assert porter_stem(word) == PorterStemmer().stem(word)


def test_porter_stem_of_the_paper_examples():
    # Porter (1980), steps 1-5 examples, with NLTK's 'y -> i' after a consonant (happy -> happi)
    examples = {
        "caresses": "caress", "ponies": "poni", "cats": "cat", "feed": "feed", "agreed": "agre",
        "plastered": "plaster", "motoring": "motor", "sing": "sing", "hopping": "hop", "falling": "fall",
        "filing": "file", "happy": "happi", "relational": "relat", "adjustment": "adjust",
        "controll": "control", "generalizations": "gener", "oscillators": "oscil",
    }  # fmt: skip
    assert {w: porter_stem(w) for w in examples} == examples


def test_tokenizer_matches_rouge_score(dataset, pairs):
    texts = [text for pair in pairs for text in pair]
    texts += dataset("unicode-sample").read_text("utf-8").splitlines()
    stemmer = PorterStemmer()
    for text in texts:
        assert rouge_tokenize(text) == rouge_score_tokenize.tokenize(text, None)
        assert rouge_tokenize(text, use_stemmer=True) == rouge_score_tokenize.tokenize(text, stemmer)


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_matches_rouge_score(pairs, use_stemmer):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    worst = max(max_difference(rouge(p, r, use_stemmer=use_stemmer), scorer.score(r, p)) for p, r in pairs)
    assert worst <= TOL


def test_rouge_with_several_references_matches_score_multi(pairs):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
    for (p, r), (_, other) in zip(pairs[:100], pairs[100:200]):
        assert max_difference(rouge(p, [other, r, p]), scorer.score_multi([other, r, p], p)) <= TOL


def test_higher_order_and_single_types_match_rouge_score(pairs):
    types = ["rouge3", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types)
    for p, r in pairs[:100]:
        assert max_difference(rouge(p, r, types), scorer.score(r, p), types) <= TOL


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("", "the cat sat"),
        ("the cat sat", ""),
        ("", ""),
        ("!!! ...", "the cat sat"),  # punctuation only: no tokens
        ("the cat sat", "the cat sat"),
        ("dogs bark", "the cat sat"),
        ("the cat\n\n!!\nsat", "the cat sat\n"),  # empty and token-less lines in Lsum
        ("Running runners ran", "running runner runs"),
    ],
)
@pytest.mark.parametrize("use_stemmer", [False, True])
def test_edge_cases_match_rouge_score(prediction, reference, use_stemmer):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    assert (
        max_difference(
            rouge(prediction, reference, use_stemmer=use_stemmer), scorer.score(reference, prediction)
        )
        == 0
    )


def test_hand_worked_examples():
    # rouge1: "the cat sat" vs "the cat ran": 2 of 3 unigrams on each side
    r1 = rouge("the cat sat", "the cat ran", ["rouge1"])["rouge1"]
    assert (r1.precision, r1.recall, r1.fmeasure) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # rougeL: "a c b d" vs "a b c d": LCS = 3 ("a b d" or "a c d")
    assert rouge("a c b d", "a b c d", ["rougeL"])["rougeL"].fmeasure == pytest.approx(3 / 4)
    # Lin (2004), section 3.2: reference w1..w5; candidate sentences "w1 w2 w6 w7 w8" and
    # "w1 w3 w8 w9 w5": union LCS = w1 w2 w3 w5, so recall 4/5 and precision 4/10
    lsum = rouge("w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", "w1 w2 w3 w4 w5", ["rougeLsum"])["rougeLsum"]
    assert (lsum.precision, lsum.recall) == pytest.approx((4 / 10, 4 / 5))
    identical = rouge("The cat sat.", "the CAT sat")
    assert all(s.fmeasure == pytest.approx(1.0) for s in identical.values())


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_corpus_rouge_mean_and_bootstrap_interval_match_rouge_score(pairs, use_stemmer):
    predictions = [p for p, _ in pairs]
    references = [r for _, r in pairs]
    seed, samples = 3, 200
    ours = corpus_rouge(
        predictions, references, use_stemmer=use_stemmer, bootstrap_samples=samples, seed=seed
    )

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    aggregator = scoring.BootstrapAggregator(n_samples=samples)
    per_pair = [scorer.score(r, p) for p, r in pairs]
    for scores in per_pair:
        aggregator.add_scores(scores)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        theirs = aggregator.aggregate()
    finally:
        np.random.set_state(state)

    for t in ROUGE_TYPES:
        for f in FIELDS:
            mean = np.mean([getattr(s[t], f) for s in per_pair])
            assert getattr(ours[t].mean, f) == pytest.approx(mean, abs=TOL)
            assert getattr(ours[t].low, f) == pytest.approx(getattr(theirs[t].low, f), abs=TOL)
            assert getattr(ours[t].high, f) == pytest.approx(getattr(theirs[t].high, f), abs=TOL)
            assert getattr(ours[t].low, f) <= getattr(ours[t].mean, f) <= getattr(ours[t].high, f)


def test_corpus_rouge_without_bootstrap_has_no_interval():
    result = corpus_rouge(["the cat sat", "a dog"], ["the cat ran", ["no", "a dog barked"]], types=["rouge1"])
    # means of F: 2/3 for the first pair; the second keeps its best reference, F = 2*1*(2/3)/(1+2/3) = 0.8
    assert result["rouge1"].mean.fmeasure == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["rouge1"].low is None and result["rouge1"].high is None


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="unknown ROUGE type 'rougeW'"):
        rouge("a", "a", ["rougeW"])
    with pytest.raises(ValueError, match="list of ROUGE types"):
        rouge("a", "a", "rouge1")
    with pytest.raises(ValueError, match="got 2 predictions but 1 references"):
        corpus_rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="confidence"):
        corpus_rouge(["a"], ["a"], bootstrap_samples=10, confidence=95)
    with pytest.raises(ValueError, match="non-empty list"):
        rouge("a", [])
