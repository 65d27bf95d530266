"""BLEU: parity with sacrebleu on real sentences, hand-computed values, edge cases, bad input."""

from __future__ import annotations

import json
import math
import random

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from text_pairs import instruction_outputs, make_pairs, perturb

from gptlab.eval.bleu import bleu_from_stats, corpus_bleu, sentence_bleu, tokenize_13a

TOL = 1e-6
N_PAIRS = 300
SMOOTH_METHODS = ("exp", "floor", "add-k", "none")
TOKENIZE = ("13a", "none")


@pytest.fixture(scope="module")
def pairs(dataset):
    return make_pairs(dataset("instruction-data-subset"), N_PAIRS, seed=0)


def assert_same_bleu(ours, theirs):
    assert ours.score == pytest.approx(theirs.score, abs=TOL)
    assert ours.bp == pytest.approx(theirs.bp, abs=TOL)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.precisions == pytest.approx(theirs.precisions, abs=TOL)
    assert ours.counts == pytest.approx(theirs.counts, abs=TOL)
    assert ours.totals == pytest.approx(theirs.totals, abs=TOL)


def test_13a_tokenizer_matches_sacrebleu_on_real_text(dataset):
    items = json.loads(dataset("instruction-data-subset").read_text("utf-8"))
    texts = [v for item in items for v in item.values()]
    texts += dataset("unicode-sample").read_text("utf-8").splitlines()
    reference = Tokenizer13a()
    assert [tokenize_13a(t) for t in texts] == [reference(t) for t in texts]


PUNCTUATION_SOUP = [*"ab1 9.,-&;:'\"()$%/\n<>é", "&quot;", "&amp;", "<skipped>", "-\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PUNCTUATION_SOUP), max_size=30).map("".join))
def test_13a_tokenizer_matches_sacrebleu_on_punctuation_soup(text):
    assert tokenize_13a(text) == Tokenizer13a()(text)


@pytest.mark.parametrize("smooth_method", SMOOTH_METHODS)
@pytest.mark.parametrize("tokenize", TOKENIZE)
def test_sentence_bleu_matches_sacrebleu(pairs, smooth_method, tokenize):
    for hyp, ref in pairs:
        ours = sentence_bleu(hyp, [ref], smooth_method=smooth_method, tokenize=tokenize)
        theirs = sacrebleu.sentence_bleu(hyp, [ref], smooth_method=smooth_method, tokenize=tokenize)
        assert_same_bleu(ours, theirs)


def test_sentence_bleu_defaults_match_sacrebleu_defaults(pairs):
    for hyp, ref in pairs:
        assert_same_bleu(sentence_bleu(hyp, [ref]), sacrebleu.sentence_bleu(hyp, [ref]))


def test_sentence_bleu_without_effective_order_matches_sacrebleu(pairs):
    for hyp, ref in pairs[:100]:
        ours = sentence_bleu(hyp, [ref], effective_order=False)
        assert_same_bleu(ours, sacrebleu.sentence_bleu(hyp, [ref], use_effective_order=False))


def test_sentence_bleu_with_several_references_matches_sacrebleu(pairs, dataset):
    rng = random.Random(1)
    outputs = instruction_outputs(dataset("instruction-data-subset"))
    vocabulary = sorted({w for line in outputs for w in line.split()})
    for hyp, ref in pairs:
        refs = [ref, perturb(ref, rng, vocabulary), rng.choice(outputs)]
        assert_same_bleu(sentence_bleu(hyp, refs), sacrebleu.sentence_bleu(hyp, refs))


@pytest.mark.parametrize("smooth_method", SMOOTH_METHODS)
@pytest.mark.parametrize("tokenize", TOKENIZE)
@pytest.mark.parametrize("effective_order", [False, True])
def test_corpus_bleu_matches_sacrebleu(pairs, smooth_method, tokenize, effective_order):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    options = {"smooth_method": smooth_method, "tokenize": tokenize}
    ours = corpus_bleu(hyps, [refs], effective_order=effective_order, **options)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], use_effective_order=effective_order, **options)
    assert_same_bleu(ours, theirs)


@pytest.mark.parametrize("lowercase", [False, True])
def test_corpus_bleu_with_two_reference_sets_and_gaps_matches_sacrebleu(pairs, dataset, lowercase):
    rng = random.Random(2)
    outputs = instruction_outputs(dataset("instruction-data-subset"))
    vocabulary = sorted({w for line in outputs for w in line.split()})
    hyps = [h for h, _ in pairs]
    refs_a = [r for _, r in pairs]
    # every 7th segment has only one reference; others a perturbed, upper-cased second one
    refs_b = [None if i % 7 == 0 else perturb(r, rng, vocabulary).upper() for i, r in enumerate(refs_a)]
    ours = corpus_bleu(hyps, [refs_a, refs_b], lowercase=lowercase)
    theirs = sacrebleu.corpus_bleu(hyps, [refs_a, refs_b], lowercase=lowercase)
    assert_same_bleu(ours, theirs)


def test_bleu_of_a_hand_worked_example():
    # hyp: the cat sat on the mat / ref: the cat is on the mat (6 tokens each, BP = 1)
    # matches per order: 1-grams 5/6, 2-grams 3/5 (the cat, on the, the mat), 3-grams 1/4, 4-grams 0/3
    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    p4_exp = 1 / (2 * 3)  # exp smoothing: the first zero precision becomes 1 / (2 * total)
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(p4_exp)) / 4)
    assert sentence_bleu(hyp, [ref]).score == pytest.approx(expected, abs=TOL)
    expected_floor = 100 * math.exp(
        (math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(0.1 / 3)) / 4
    )
    assert sentence_bleu(hyp, [ref], smooth_method="floor").score == pytest.approx(expected_floor, abs=TOL)
    assert sentence_bleu(hyp, [ref], smooth_method="none").score == 0.0


def test_brevity_penalty_uses_the_closest_reference_length():
    # 4 hypothesis tokens; references of 5 and 8 tokens: r = 5, BP = exp(1 - 5/4)
    score = sentence_bleu("a b c d", ["a b c d e", "a b c d e f g h"])
    assert score.ref_len == 5
    assert score.bp == pytest.approx(math.exp(1 - 5 / 4), abs=TOL)
    # on a tie (3 and 5 around 4) the shorter reference wins, so no penalty
    assert sentence_bleu("a b c d", ["a b c", "a b c d e"]).ref_len == 3


@pytest.mark.parametrize(
    "hyp, refs",
    [
        ("", ["The cat sat on the mat."]),  # empty hypothesis
        ("The cat", ["The cat sat on the mat."]),  # shorter than 4 tokens
        ("cat sat", ["The cat sat on the mat."]),  # 2 tokens, partial match
        ("The cat sat on the mat.", ["The cat sat on the mat."]),  # identical
        ("dogs bark loudly at night", ["The cat sat on the mat."]),  # no overlap
        ("The cat sat on the mat.", [""]),  # empty reference
        ("", [""]),
    ],
)
@pytest.mark.parametrize("smooth_method", SMOOTH_METHODS)
def test_edge_cases_match_sacrebleu(hyp, refs, smooth_method):
    ours = sentence_bleu(hyp, refs, smooth_method=smooth_method)
    assert_same_bleu(ours, sacrebleu.sentence_bleu(hyp, refs, smooth_method=smooth_method))
    assert_same_bleu(
        corpus_bleu([hyp], [refs], smooth_method=smooth_method),
        sacrebleu.corpus_bleu([hyp], [refs], smooth_method=smooth_method),
    )


def test_edge_case_values_follow_the_definition():
    ref = "The cat sat on the mat."
    assert sentence_bleu(ref, [ref]).score == pytest.approx(100.0, abs=TOL)
    assert sentence_bleu("dogs bark loudly", [ref]).score == 0.0
    empty = sentence_bleu("", [ref])
    assert (empty.score, empty.bp, empty.sys_len) == (0.0, 0.0, 0)
    # "The cat" has only 1- and 2-grams: effective order averages over those two (both 100%)
    short = sentence_bleu("The cat", [ref])
    assert short.score == pytest.approx(100 * math.exp(1 - 7 / 2), abs=TOL)


vocab = st.sampled_from(["the", "a", "cat", "dog", "sat", "on", "mat", "."])
sentences = st.lists(vocab, max_size=12).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(sentences, st.lists(sentences, min_size=1, max_size=3), st.sampled_from(SMOOTH_METHODS))
def test_sentence_bleu_matches_sacrebleu_on_random_sentences(hyp, refs, smooth_method):
    ours = sentence_bleu(hyp, refs, smooth_method=smooth_method)
    assert_same_bleu(ours, sacrebleu.sentence_bleu(hyp, refs, smooth_method=smooth_method))


def test_bleu_from_stats_smooth_value_overrides_the_default():
    ours = bleu_from_stats([3, 1, 0, 0], [4, 3, 2, 1], 4, 4, smooth_method="floor", smooth_value=0.5)
    assert ours.precisions[2] == pytest.approx(100 * 0.5 / 2)


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="list of reference sets"):
        corpus_bleu(["a b"], ["a b"])  # a flat list instead of [refs]
    with pytest.raises(ValueError, match="reference set 0 has 1 segments, expected 2"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="references must be a list"):
        sentence_bleu("a b", "a b")
    with pytest.raises(ValueError, match="tokenize must be one of"):
        sentence_bleu("a", ["a"], tokenize="intl")
    with pytest.raises(ValueError, match="smooth_method must be one of"):
        sentence_bleu("a", ["a"], smooth_method="add-one")
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu(["a"], [[None]])
