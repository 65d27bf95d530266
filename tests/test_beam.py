"""Beam search: a beam as wide as every sequence finds the best one (exhaustive search over a
tiny vocabulary, with and without an end token and length penalty), one beam is greedy
decoding, batches with padding and a sliding context, bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from gptlab.beam import Hypothesis, beam_search, hypothesis_score
from gptlab.errors import GptlabError
from gptlab.generate import GREEDY, generate
from gptlab.model import GPT, GPTConfig

V = 5
EOS = 4


def peaked_model(seed: int, block_size: int = 16) -> GPT:
    """A random GPT over 5 tokens whose next-token distributions are far from uniform, so the
    best sequence is not the greedy one by accident of near-ties."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model.eval()


@torch.no_grad()
def next_logprobs(model: GPT, context: list[int]) -> list[float]:
    logits, _ = model(torch.tensor([context[-model.config.block_size :]]))
    return torch.log_softmax(logits[0, -1].double(), dim=-1).tolist()


def exhaustive(model, prompt, steps, eos_id, length_penalty) -> tuple[list[int], float]:
    """Score every possible continuation (up to ``steps`` tokens, ending at the first ``eos_id``)
    and return the best one and its score."""
    best: tuple[list[int], float] = ([], -math.inf)

    def visit(prefix: list[int], logprob: float) -> None:
        nonlocal best
        if len(prefix) == steps or (prefix and prefix[-1] == eos_id):
            score = hypothesis_score(logprob, len(prefix), length_penalty)
            if score > best[1]:
                best = (prefix, score)
            return
        for token, lp in enumerate(next_logprobs(model, prompt + prefix)):
            visit(prefix + [token], logprob + lp)

    visit([], 0.0)
    return best


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("eos_id", "length_penalty"),
    [
        (None, 0.0),
        (EOS, 1.0),
        pytest.param(None, 1.0, marks=SLOW),
        pytest.param(EOS, 0.0, marks=SLOW),
        pytest.param(EOS, 2.0, marks=SLOW),
        pytest.param(EOS, -0.5, marks=SLOW),
    ],
)
def test_beam_as_wide_as_every_sequence_finds_the_best_one(eos_id, length_penalty):
    steps = 4
    for seed, prompts in ((0, [[1, 2, 3]]), (1, [[3], [0, 1, 2, 1, 0]])):  # the second: two prompts, padded
        model = peaked_model(seed)
        found = beam_search(
            model, prompts, steps, num_beams=V**steps, eos_id=eos_id, length_penalty=length_penalty
        )
        for prompt, hyp in zip(prompts, found):
            tokens, score = exhaustive(model, prompt, steps, eos_id, length_penalty)
            assert hyp.tokens == tokens
            assert hyp.score == pytest.approx(score, abs=1e-4)
            assert hyp.logprob == pytest.approx(hyp.score * len(tokens) ** length_penalty, abs=1e-4)


def test_wider_beams_never_score_worse_than_narrower_ones_on_total_logprob():
    model = peaked_model(2)
    prompt = [[1, 0, 2]]
    scores = [
        beam_search(model, prompt, 5, num_beams=k, length_penalty=0.0)[0].score for k in (1, 5, 25, 125)
    ]
    assert scores == sorted(scores)  # without an end token, a K-beam keeps the K best prefixes


def test_one_beam_is_greedy_decoding():
    model = peaked_model(3)
    prompts = [[1, 2], [3, 3, 0, 1]]
    greedy = generate(model, prompts, 8, GREEDY)
    beams = beam_search(model, prompts, 8, num_beams=1)
    assert [p + h.tokens for p, h in zip(prompts, beams)] == greedy
    # with an end token, HF's rules (an end counts only among the top K; stop once K finished)
    greedy = generate(model, prompts, 8, GREEDY, eos_id=EOS)
    beams = beam_search(model, prompts, 8, num_beams=1, eos_id=EOS, early_stopping=True)
    assert [p + h.tokens for p, h in zip(prompts, beams)] == greedy


def test_the_context_slides_past_block_size_as_in_greedy_decoding():
    model = peaked_model(4, block_size=8)
    prompts = [[1, 2, 3, 0, 1, 2], [2]]
    greedy = generate(model, prompts, 7, GREEDY)
    assert [p + h.tokens for p, h in zip(prompts, beam_search(model, prompts, 7, num_beams=1))] == greedy
    found = beam_search(model, prompts[:1], 4, num_beams=V**4, length_penalty=0.0)[0]
    tokens, score = exhaustive(model, prompts[0], 4, None, 0.0)
    assert found.tokens == tokens and found.score == pytest.approx(score, abs=1e-4)


def test_finished_hypotheses_end_with_the_end_token_and_zero_steps_give_nothing():
    model = peaked_model(5)
    for hyp in beam_search(model, [[1], [2, 3]], 6, num_beams=3, eos_id=EOS):
        assert EOS not in hyp.tokens[:-1] and 1 <= len(hyp.tokens) <= 6
    assert beam_search(model, [[1]], 0, num_beams=3) == [Hypothesis([], 0.0, 0.0)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_beams": 0},
        {"num_beams": 1.5},
        {"max_new_tokens": -1},
        {"length_penalty": math.nan},
        {"prompts": []},
        {"prompts": [[]]},
    ],
)
def test_bad_settings_are_clear_errors(kwargs):
    args = {"prompts": [[1]], "max_new_tokens": 3, "num_beams": 2} | kwargs
    with pytest.raises(GptlabError):
        beam_search(peaked_model(0), **args)
