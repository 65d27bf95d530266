"""chrF / chrF++: parity with sacrebleu on random and real-looking text, hand-computed values,
properties (bounds, identity, symmetry of beta), bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from text_pairs import make_pairs, perturb

from gptlab.eval.chrf import chrf_from_stats, chrf_words, corpus_chrf, sentence_chrf

TOL = 1e-9
DATA = Path(__file__).parent.parent / "data"
VARIANTS = [
    {},  # chrF2 (sacrebleu's default)
    {"word_order": 2},  # chrF++
    {"beta": 1},
    {"char_order": 3, "lowercase": True},
    {"whitespace": True},
    {"eps_smoothing": True},
    {"word_order": 2, "eps_smoothing": True},
]


def sacre_corpus(hyps, refs, **options):
    return sacrebleu.metrics.CHRF(**options).corpus_score(hyps, refs).score


def sacre_sentence(hyp, refs, **options):
    return sacrebleu.metrics.CHRF(**options).sentence_score(hyp, refs).score


def translation_pairs(seed: int = 0) -> list[tuple[str, str]]:
    """German captions (tests/data/translations.jsonl) and seeded perturbations of them."""
    refs = [json.loads(line)["de"] for line in (DATA / "translations.jsonl").read_text("utf-8").splitlines()]
    vocabulary = sorted({w for r in refs for w in r.split()})
    rng = random.Random(seed)
    return [(perturb(r, rng, vocabulary), r) for r in refs for _ in range(3)]


@pytest.mark.parametrize(
    "options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_corpus_and_sentence_chrf_match_sacrebleu_on_captions(options):
    pairs = translation_pairs() + make_pairs(DATA / "instructions.json", 40, seed=1)
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    assert corpus_chrf(hyps, [refs], **options).score == pytest.approx(
        sacre_corpus(hyps, [refs], **options), abs=TOL
    )
    for h, r in pairs:
        assert sentence_chrf(h, [r], **options).score == pytest.approx(
            sacre_sentence(h, [r], **options), abs=TOL
        )


def test_corpus_chrf_matches_sacrebleu_on_real_instruction_outputs(dataset):
    pairs = make_pairs(dataset("instruction-data-subset"), 300, seed=0)
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    for options in ({}, {"word_order": 2}):
        ours = corpus_chrf(hyps, [refs], **options).score
        assert ours == pytest.approx(sacre_corpus(hyps, [refs], **options), abs=TOL)


def test_corpus_chrf_matches_sacrebleu_on_multi30k_german(dataset):
    refs = [json.loads(line)["de"] for line in dataset("multi30k-val-subset").read_text("utf-8").splitlines()]
    vocabulary = sorted({w for r in refs for w in r.split()})
    rng = random.Random(0)
    hyps = [perturb(r, rng, vocabulary) for r in refs]
    for options in ({}, {"word_order": 2}):
        ours = corpus_chrf(hyps, [refs], **options).score
        assert ours == pytest.approx(sacre_corpus(hyps, [refs], **options), abs=TOL)


def test_several_references_and_missing_ones_match_sacrebleu():
    pairs = translation_pairs(seed=3)
    hyps = [h for h, _ in pairs]
    refs_a = [r for _, r in pairs]
    rng = random.Random(0)
    refs_b = [None if i % 4 == 0 else perturb(r, rng, r.split()) for i, r in enumerate(refs_a)]
    for options in ({}, {"word_order": 2}):
        ours = corpus_chrf(hyps, [refs_a, refs_b], **options).score
        assert ours == pytest.approx(sacre_corpus(hyps, [refs_a, refs_b], **options), abs=TOL)


SOUP = [*"ab äß 1.,!?()-'\"", "  ", "\t", "der", "Die", "ein"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(SOUP), max_size=12).map("".join),
            st.lists(st.sampled_from(SOUP), max_size=12).map("".join),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(VARIANTS),
)
def test_random_text_matches_sacrebleu(pairs, options):
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    assert corpus_chrf(hyps, [refs], **options).score == pytest.approx(
        sacre_corpus(hyps, [refs], **options), abs=TOL
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcde .,", min_size=1, max_size=30), st.text(alphabet="abcde .,", max_size=30))
def test_score_is_bounded_and_identity_scores_100(hyp, ref):
    score = sentence_chrf(hyp, [ref]).score
    assert 0.0 <= score <= 100.0 + 1e-9
    if "".join(hyp.split()):  # something to compare once whitespace is gone
        assert sentence_chrf(hyp, [hyp]).score == pytest.approx(100.0)


def test_hand_computed_unigram_and_bigram_chrf():
    # hyp "ab", ref "abc", orders 1-2, beta 1: unigrams P = 2/2, R = 2/3; bigrams P = 1/1, R = 1/2
    # mean P = 1, mean R = (2/3 + 1/2) / 2 = 7/12; F1 = 2 * 1 * 7/12 / (1 + 7/12) = 14/19
    score = sentence_chrf("ab", ["abc"], char_order=2, beta=1).score
    assert score == pytest.approx(100 * 14 / 19)
    # beta 2 weighs recall: 5 * P * R / (4 P + R)
    assert sentence_chrf("ab", ["abc"], char_order=2).score == pytest.approx(
        100 * 5 * (7 / 12) / (4 + 7 / 12)
    )


def test_orders_missing_on_either_side_are_left_out():
    # "ab" has no 3-grams: with char_order 3 only orders 1 and 2 count, so the score equals order 2's
    assert chrf_from_stats([(2, 3, 2), (1, 2, 1), (0, 1, 0)], beta=1) == pytest.approx(100 * 14 / 19)
    assert chrf_from_stats([(0, 0, 0)]) == 0.0


def test_chrf_words_peel_one_punctuation_mark():
    assert chrf_words("(hi) there, you! . a-b") == ["(hi", ")", "there", ",", "you", "!", ".", "a-b"]


def test_name_and_dict():
    score = corpus_chrf(["ein Hund"], [["ein Hund"]], word_order=2)
    assert score.name == "chrF2++" and str(score) == "chrF2++ = 100.00"
    assert score.to_dict()["score"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: corpus_chrf([], [[]]),
        lambda: corpus_chrf("abc", [["abc"]]),
        lambda: corpus_chrf(["a"], ["a"]),
        lambda: corpus_chrf(["a", "b"], [["a"]]),
        lambda: corpus_chrf(["a"], [[None]]),
        lambda: corpus_chrf(["a"], [["a"]], char_order=0),
        lambda: corpus_chrf(["a"], [["a"]], beta=0),
        lambda: sentence_chrf("a", "a"),
    ],
)
def test_bad_input_is_a_clear_value_error(call):
    with pytest.raises(ValueError):
        call()
