"""Few-shot classification by prompting: a hand-built induction model, exact scores vs a naive loop."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.eval.prompting import (
    PromptFormat,
    build_prompt,
    classify_by_prompting,
    label_log_probs,
    select_shots,
)
from gptlab.model import GPT, GPTConfig
from gptlab.tokenizers import CharTokenizer

WORDS = ["apple", "pear", "plum", "carrot", "leek", "kale", "=>", "fruit", "vegetable", "\n"]
BOOST = 5.0  # the logit the induction model gives its guess; every other token gets 0


class WordTokenizer:
    """One token per word or newline; spaces only separate (enough for the hand-built case)."""

    vocab = {w: i for i, w in enumerate(WORDS)}

    def encode(self, text: str) -> list[int]:
        return [self.vocab[w] for w in re.findall(r"[^\s]+|\n", text)]


class InductionModel(nn.Module):
    """A hand-built "induction head": at position t it predicts the token that followed the most
    recent earlier occurrence of the pair (idx[t-1], idx[t]), with logit BOOST; otherwise all
    logits are 0 (uniform). Few-shot prompting works on it exactly when the shots show the label."""

    config = SimpleNamespace(block_size=64)

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        B, T = idx.shape
        logits = torch.zeros(B, T, len(WORDS))
        for b in range(B):
            row = idx[b].tolist()
            for t in range(1, T):
                for j in range(t - 1, 0, -1):
                    if (row[j - 1], row[j]) == (row[t - 1], row[t]):
                        logits[b, t, row[j + 1]] = BOOST
                        break
        return logits, None


FMT = PromptFormat(example="{text} => {label}\n", query="{text} =>", label_prefix=" ")
SHOTS = [("apple", "fruit"), ("carrot", "vegetable"), ("pear", "fruit"), ("leek", "vegetable")]


def test_few_shot_prompting_on_a_hand_built_induction_model():
    result = classify_by_prompting(
        InductionModel(), WordTokenizer(), ["pear", "carrot", "apple"], ["fruit", "vegetable"],
        labels=[0, 1, 0], shots=SHOTS, fmt=FMT,
    )  # fmt: skip
    assert result.predictions == [0, 1, 0] and result.accuracy == 1.0
    # by hand: log softmax of one logit BOOST among len(WORDS) - 1 zeros
    log_z = math.log(math.exp(BOOST) + len(WORDS) - 1)
    torch.testing.assert_close(result.scores[0], torch.tensor([BOOST - log_z, -log_z]))


def test_zero_shot_on_the_induction_model_is_uniform_and_unseen_texts_get_no_help():
    model, tok = InductionModel(), WordTokenizer()
    uniform = torch.full((2,), -math.log(len(WORDS)))
    torch.testing.assert_close(label_log_probs(model, tok, "pear =>", ["fruit", "vegetable"]), uniform)
    # "kale" is not among the shots: the prompt does not tell, so the scores tie
    scores = label_log_probs(model, tok, build_prompt("kale", SHOTS, FMT), ["fruit", "vegetable"])
    assert scores[0] == scores[1]


def test_build_prompt_and_format_checks():
    prompt = build_prompt("hi there", [("win cash", "spam"), ("lunch?", "ham")])
    assert prompt == "Text: win cash\nLabel: spam\n\nText: lunch?\nLabel: ham\n\nText: hi there\nLabel:"
    fmt = PromptFormat(instruction="Spam or ham?\n\n")
    assert build_prompt("a {b}", (), fmt) == "Spam or ham?\n\nText: a {b}\nLabel:"  # braces in text are fine
    with pytest.raises(GptlabError, match="label"):
        build_prompt("x", (), PromptFormat(example="{text}"))


TEXT = "spam ham: buy now! see you at lunch. Label"
TOKENIZER = CharTokenizer.train(TEXT)


def tiny_gpt(block_size: int = 64) -> GPT:
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16)
    )


def naive_scores(model: GPT, prompt_ids: list[int], label_ids: list[list[int]]) -> list[float]:
    """One forward per label over the full sequence, log-probabilities read one position at a time."""
    out = []
    for ids in label_ids:
        seq = torch.tensor([prompt_ids + ids[:-1]])  # the last label token is predicted, not read
        with torch.no_grad():
            log_probs = model(seq)[0][0].log_softmax(-1)
        out.append(sum(log_probs[len(prompt_ids) - 1 + i, tok].item() for i, tok in enumerate(ids)))
    return out


@pytest.mark.parametrize("normalize", [False, True])
def test_scores_match_a_naive_computation_for_multi_token_labels(normalize):
    model = tiny_gpt()
    prompt = "buy now! see you. Label:"
    words = ["spam", "ham", "no"]  # 5, 4 and 3 tokens with the leading space: padding is exercised
    scores = label_log_probs(model, TOKENIZER, prompt, words, normalize=normalize)
    label_ids = [TOKENIZER.encode(" " + w) for w in words]
    expected = naive_scores(model, TOKENIZER.encode(prompt), label_ids)
    if normalize:
        expected = [s / len(ids) for s, ids in zip(expected, label_ids)]
    torch.testing.assert_close(scores, torch.tensor(expected), atol=1e-5, rtol=0)
    assert model.training  # restored after scoring in eval mode


def test_long_prompts_keep_their_end_and_oversized_labels_fail():
    model = tiny_gpt(block_size=12)
    prompt = "see you at lunch. buy now! ham:"
    scores = label_log_probs(model, TOKENIZER, prompt, ["spam", "ham"])
    label_ids = [TOKENIZER.encode(" spam"), TOKENIZER.encode(" ham")]
    kept = TOKENIZER.encode(prompt)[-(12 - 4) :]  # the longest label (5 tokens) reads 4 of its own
    torch.testing.assert_close(scores, torch.tensor(naive_scores(model, kept, label_ids)), atol=1e-5, rtol=0)
    with pytest.raises(GptlabError, match="does not fit"):
        label_log_probs(tiny_gpt(block_size=4), TOKENIZER, prompt, ["spam spam", "ham"])


def test_select_shots_covers_every_class_and_is_seeded():
    texts = [f"t{i}" for i in range(10)]
    labels = [0] * 8 + [1] * 2
    shots = select_shots(texts, labels, ["ham", "spam"], k=4, seed=1)
    assert sorted(label for _, label in shots) == ["ham", "ham", "spam", "spam"]
    assert all(labels[texts.index(t)] == ["ham", "spam"].index(label) for t, label in shots)
    assert select_shots(texts, labels, ["ham", "spam"], k=4, seed=1) == shots
    assert len(select_shots(texts, labels, ["ham", "spam"], k=5, seed=1)) == 5  # spam runs out: ham fills in
    with pytest.raises(GptlabError):
        select_shots(texts, labels, ["ham", "spam"], k=11)
