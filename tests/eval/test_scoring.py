"""The teacher-forced scoring primitive against a plain forward pass on a tiny random GPT."""

from __future__ import annotations

import random

import pytest
import torch

from gptlab.errors import GptlabError
from gptlab.eval import scoring
from gptlab.eval.scoring import continuation_logprobs, continuation_scores, fit_to_context, text_window
from gptlab.model import GPT, GPTConfig
from gptlab.tokenizers import CharTokenizer

VOCAB, BLOCK = 19, 8


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    config.dropout = 0.5  # scoring must switch it off
    return GPT(config).train()


def random_pairs(n: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Pairs of every shape that fits one window: short, exactly block + 1 tokens, one-token contexts."""
    rng = random.Random(seed)
    contexts, continuations = [], []
    for _ in range(n):
        k = rng.randint(1, BLOCK)  # continuation tokens
        c = rng.randint(1, BLOCK + 1 - k)  # context tokens
        contexts.append([rng.randrange(VOCAB) for _ in range(c)])
        continuations.append([rng.randrange(VOCAB) for _ in range(k)])
    return contexts, continuations


def plain(model: GPT, context: list[int], continuation: list[int]) -> torch.Tensor:
    """One unpadded forward over the pair, log_softmax over every position, gather the targets."""
    row = context + continuation
    with torch.no_grad():
        logits, _ = model.eval()(torch.tensor([row[:-1]]))  # (1, T, V)
    model.train()
    logp = logits[0].float().log_softmax(-1).gather(-1, torch.tensor(row[1:])[:, None])[:, 0]  # (T,)
    return logp[len(context) - 1 :]


def test_matches_a_plain_forward_and_restores_the_mode(model):
    contexts, continuations = random_pairs(12)
    got = continuation_logprobs(model, contexts, continuations)
    for context, continuation, lp in zip(contexts, continuations, got):
        assert lp.shape == (len(continuation),) and lp.dtype == torch.float32
        torch.testing.assert_close(lp, plain(model, context, continuation), atol=1e-5, rtol=0)
    assert model.training
    sums = continuation_scores(model, contexts, continuations)
    means = continuation_scores(model, contexts, continuations, normalize=True)
    for lp, total, mean in zip(got, sums, means):
        assert total == pytest.approx(float(lp.sum()), abs=1e-5)
        assert mean == pytest.approx(float(lp.mean()), abs=1e-5)


@pytest.mark.parametrize("max_batch_size", [1, 2, 5, None])
def test_any_batch_size_and_order_give_the_same_numbers(model, max_batch_size):
    contexts, continuations = random_pairs(11, seed=1)
    reference = continuation_logprobs(model, contexts, continuations, max_batch_size=1)
    order = list(range(len(contexts)))
    random.Random(max_batch_size).shuffle(order)
    got = continuation_logprobs(
        model, [contexts[i] for i in order], [continuations[i] for i in order], max_batch_size=max_batch_size
    )
    for i, lp in zip(order, got):
        torch.testing.assert_close(lp, reference[i], atol=1e-5, rtol=0)


def test_a_long_pair_scores_exactly_its_last_block_plus_one_tokens(model):
    context, continuation = list(range(15)), [3, 1, 4]
    kept = fit_to_context(context, continuation, BLOCK)
    assert kept == (list(range(15))[-(BLOCK + 1 - 3) :], [3, 1, 4])
    assert len(kept[0]) + len(kept[1]) == BLOCK + 1
    (got,) = continuation_logprobs(model, [context], [continuation])
    torch.testing.assert_close(got, plain(model, *kept), atol=1e-5, rtol=0)
    # a continuation of block_size tokens keeps one token of context; a short pair is left alone
    assert fit_to_context([1, 2], list(range(BLOCK)), BLOCK) == ([2], list(range(BLOCK)))
    assert fit_to_context([1, 2], [3], BLOCK) == ([1, 2], [3])
    assert fit_to_context(list(range(50)), [1], None) == (list(range(50)), [1])


def test_the_memory_budget_splits_batches(model, monkeypatch):
    calls = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda idx, *a, **k: calls.append(idx.shape) or forward(idx, *a, **k)
    )
    contexts, continuations = [[1] * 5] * 6, [[2, 3]] * 6  # rows of 7 tokens: T = 6 inputs
    row_bytes = 6 * VOCAB * scoring.LOGIT_BYTES  # one row's float32 logits
    reference = continuation_logprobs(model, contexts, continuations)
    assert calls == [(6, 6)]  # the default budget holds them all
    calls.clear()
    got = continuation_logprobs(model, contexts, continuations, max_logits_bytes=2 * row_bytes + 1)
    assert calls == [(2, 6)] * 3
    calls.clear()
    continuation_logprobs(model, contexts, continuations, max_logits_bytes=1)  # one row always runs
    assert calls == [(1, 6)] * 6
    calls.clear()
    continuation_logprobs(model, contexts, continuations, max_logits_bytes=4 * row_bytes, max_batch_size=3)
    assert calls == [(3, 6)] * 2  # the smaller of the two limits
    for a, b in zip(got, reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_a_model_without_vocab_size_in_its_config_learns_it_from_the_logits(model):
    class Bare(torch.nn.Module):  # the GPT as a submodule (so eval mode reaches it), no config
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, idx):
            return self.inner(idx)

    contexts, continuations = random_pairs(5, seed=2)
    got = continuation_logprobs(Bare(), contexts, continuations)  # no config: no window, V from logits
    for a, b in zip(got, continuation_logprobs(model, contexts, continuations)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_text_window_scores_after_endoftext_or_from_the_second_token():
    with_eot = CharTokenizer.train("abcd", special_tokens=["<|endoftext|>"])
    context, scored = text_window(with_eot, "abcdabcd", block_size=4)
    assert context == [with_eot.eot_id] and scored == with_eot.encode("abcd")  # the first window
    plain_tok = CharTokenizer.train("abcd")
    assert text_window(plain_tok, "abc") == ([plain_tok.encode("a")[0]], plain_tok.encode("bc"))
    with pytest.raises(GptlabError, match="too short to score: it encodes to 1 token"):
        text_window(plain_tok, "a")


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(GptlabError, match="pair 1: the continuation has no tokens"):
        continuation_logprobs(model, [[1], [1]], [[2], []])
    with pytest.raises(GptlabError, match="pair 0: the context has no tokens"):
        continuation_logprobs(model, [[]], [[2]])
    with pytest.raises(GptlabError, match=r"a continuation of 9 tokens does not fit the model's context \(8"):
        continuation_logprobs(model, [[1]], [[2] * (BLOCK + 1)])
    with pytest.raises(GptlabError, match="2 contexts but 1 continuations"):
        continuation_logprobs(model, [[1], [1]], [[2]])
    with pytest.raises(GptlabError, match=f"token id {VOCAB} is outside the model's vocabulary"):
        continuation_logprobs(model, [[1]], [[VOCAB]])
    with pytest.raises(GptlabError, match="token id -1 is negative"):
        continuation_logprobs(model, [[-1]], [[2]])
    with pytest.raises(GptlabError, match="must be a sequence of integers"):
        continuation_logprobs(model, [[1.5]], [[2]])
    with pytest.raises(GptlabError, match="max_batch_size must be at least 1"):
        continuation_logprobs(model, [[1]], [[2]], max_batch_size=0)
    with pytest.raises(GptlabError, match="max_logits_bytes must be positive"):
        continuation_logprobs(model, [[1]], [[2]], max_logits_bytes=0)
    assert continuation_logprobs(model, [], []) == []


@pytest.mark.parametrize("tokens", [1, 6, 1000])
def test_choices_in_length_sorted_row_batches_score_as_each_pair_alone(model, monkeypatch, tokens):
    """score_choices runs the choices of a batch sorted by length, about ``CHOICE_TOKENS`` positions per forward:
    however they are cut, every choice gets its own context's keys/values and its own logits."""
    monkeypatch.setattr(scoring, "CHOICE_TOKENS", tokens)
    rng = random.Random(tokens)
    groups = []
    for _ in range(7):  # 2 to 4 choices of 1 to 5 tokens after 1 to 3 context tokens: all fit BLOCK + 1
        context = [rng.randrange(VOCAB) for _ in range(rng.randint(1, 3))]
        choices = [[rng.randrange(VOCAB) for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(2, 4))]
        groups.append((context, choices))
    for (context, choices), scored in zip(groups, scoring.score_choices(model, groups)):
        alone = scoring.score_pairs(model, [context] * len(choices), choices)
        for got, ref in zip(scored, alone):
            torch.testing.assert_close(got.logprobs, ref.logprobs, atol=1e-5, rtol=0)
            assert got.is_greedy == ref.is_greedy


def test_choices_of_contexts_at_the_edge_of_the_window_score_as_pairs(model):
    # a long context with short choices batched beside a short context with a long choice: the
    # first group's padding (to the longest choice) must not run past the model's positions
    groups = [([1] * (BLOCK - 1), [[2, 3], [4]]), ([5, 6], [[7] * (BLOCK - 1), [8]])]
    shared = scoring.score_choices(model, groups)
    for (ctx, conts), scored in zip(groups, shared):
        for cont, score in zip(conts, scored):
            torch.testing.assert_close(score.logprobs, plain(model, ctx, cont), atol=1e-5, rtol=0)
