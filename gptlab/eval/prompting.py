"""Zero- and few-shot classification by prompting: the baseline fine-tuning has to beat.

No training: the text to classify is put in a prompt after k labelled examples ("shots"),

    Text: Free entry in a weekly competition!
    Label: spam

    Text: See you at lunch?
    Label: ham

    Text: <the text to classify>
    Label:

and each label word is scored by the log-probability the language model gives it as the
continuation (summed over its tokens; ``normalize=True`` averages instead, so that a label
spelled with more tokens is not penalized). The highest-scoring label is the prediction. This is
how GPT-2/GPT-3 were evaluated on classification without fine-tuning (Radford et al. 2019; Brown
et al. 2020); with k = 0 it is zero-shot.

A prompt longer than the model's context keeps its last tokens (the text to classify and the
shots nearest to it); `build_prompt` with fewer shots avoids that.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.eval.scoring import continuation_scores, fit_to_context
from gptlab.tokenizers.base import Tokenizer


@dataclass(frozen=True)
class PromptFormat:
    """How shots and the query are written. ``{text}`` and ``{label}`` are filled in; the label
    word is scored as ``label_prefix + word`` right after the query."""

    example: str = "Text: {text}\nLabel: {label}\n\n"
    query: str = "Text: {text}\nLabel:"
    label_prefix: str = " "
    instruction: str = ""  # an optional first line, e.g. "Is each message spam or ham?\n\n"

    def check(self) -> None:
        for name, value, fields in (
            ("example", self.example, ("{text}", "{label}")),
            ("query", self.query, ("{text}",)),
        ):
            for f in fields:
                if f not in value:
                    raise GptlabError(f"prompt format: {name} template {value!r} must contain {f}")


def build_prompt(text: str, shots: Sequence[tuple[str, str]] = (), fmt: PromptFormat = PromptFormat()) -> str:
    """The prompt for one text: the instruction, each (text, label word) shot, then the query."""
    fmt.check()
    parts = [fmt.instruction]
    parts += [fmt.example.format(text=shot_text, label=label) for shot_text, label in shots]
    parts.append(fmt.query.format(text=text))
    return "".join(parts)


def select_shots(
    texts: Sequence[str], labels: Sequence[int], label_words: Sequence[str], k: int, seed: int = 0
) -> list[tuple[str, str]]:
    """k labelled examples drawn from the training data, taking the classes in turn so that every
    class is shown when k >= the number of classes; the shots come out shuffled (seeded)."""
    if k < 0:
        raise GptlabError(f"the number of shots must be >= 0, got {k}")
    rng = random.Random(seed)
    pools: list[list[int]] = [[] for _ in label_words]
    for i, label in enumerate(labels):
        pools[label].append(i)
    for pool in pools:
        rng.shuffle(pool)
    classes = [c for c in range(len(label_words)) if pools[c]]
    rng.shuffle(classes)
    if k > sum(len(p) for p in pools):
        raise GptlabError(f"asked for {k} shots but there are only {len(texts)} examples")
    chosen: list[int] = []
    while len(chosen) < k:
        for c in classes:
            if pools[c] and len(chosen) < k:
                chosen.append(pools[c].pop())
    rng.shuffle(chosen)
    return [(texts[i], label_words[labels[i]]) for i in chosen]


def label_log_probs(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    label_words: Sequence[str],
    label_prefix: str = " ",
    normalize: bool = False,
) -> torch.Tensor:
    """log P(label_prefix + word | prompt) for each label word (L,), summed over the word's tokens
    (averaged with ``normalize``), teacher-forced (`gptlab.eval.scoring`). A prompt too long for
    the context keeps the end the longest label leaves room for, and every label is scored after
    that same prompt, so that the labels compete on equal terms."""
    label_ids = [tokenizer.encode(label_prefix + word) for word in label_words]
    for word, ids in zip(label_words, label_ids):
        if not ids:
            raise GptlabError(f"label word {word!r} encodes to no tokens")
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids:
        raise GptlabError("the prompt encodes to no tokens")
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    prompt_ids, _ = fit_to_context(prompt_ids, max(label_ids, key=len), block_size)
    scores = continuation_scores(model, [prompt_ids] * len(label_ids), label_ids, normalize=normalize)
    return torch.tensor(scores, dtype=torch.float32)


@dataclass
class PromptingResult:
    predictions: list[int]
    scores: torch.Tensor  # (N, L) label log-probabilities
    accuracy: float | None  # when true labels were given

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "predictions": self.predictions}


def classify_by_prompting(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    label_words: Sequence[str],
    labels: Sequence[int] | None = None,
    shots: Sequence[tuple[str, str]] = (),
    fmt: PromptFormat = PromptFormat(),
    normalize: bool = False,
) -> PromptingResult:
    """Predict each text's label index by prompting (`label_log_probs` after the shots); with true
    ``labels``, the accuracy too."""
    if len(label_words) < 2:
        raise GptlabError(f"need at least two label words, got {list(label_words)!r}")
    if labels is not None and len(labels) != len(texts):
        raise GptlabError(f"got {len(texts)} texts but {len(labels)} labels")
    scores = torch.empty(len(texts), len(label_words))  # (N, L)
    for i, text in enumerate(texts):
        prompt = build_prompt(text, shots, fmt)
        scores[i] = label_log_probs(model, tokenizer, prompt, label_words, fmt.label_prefix, normalize)
    predictions = scores.argmax(dim=-1).tolist()
    accuracy = None
    if labels is not None and len(texts):
        accuracy = sum(p == y for p, y in zip(predictions, labels)) / len(texts)
    return PromptingResult(predictions, scores, accuracy)
