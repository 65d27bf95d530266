"""Answer a question from an index: retrieve, build the cited prompt, generate greedily.

Generation follows PopQA's evaluation: greedy, up to ``max_new_tokens`` (15) new tokens, cut at
the first newline; the prompt leaves room for them in the model's context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gptlab.generate import Sampler, encode_prompt, generate_text
from gptlab.rag.dense import Embedder
from gptlab.rag.index import Hit, RagIndex
from gptlab.rag.prompt import fit_prompt, question_prompt

MAX_NEW_TOKENS = 15
STOP = ("\n",)


@dataclass
class RagAnswer:
    question: str
    answer: str
    prompt: str
    hits: list[Hit] = field(default_factory=list)
    sources_used: int = 0

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "prompt": self.prompt,
            "sources_used": self.sources_used,
            "chunks": [h.to_dict() | {"source": i} for i, h in enumerate(self.hits, 1)],
        }


def complete(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    return generate_text(model, tokenizer, prompt, max_new_tokens, Sampler(temperature=0.0), STOP).strip()


def prompt_budget(model, max_new_tokens: int) -> int:
    return model.config.block_size - max_new_tokens


def answer(
    model,
    tokenizer,
    index: RagIndex,
    embedder: Embedder | None,
    question: str,
    k: int = 4,
    mode: str = "hybrid",
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> RagAnswer:
    hits = index.search(question, embedder, k, mode)
    prompt, used = fit_prompt(
        question,
        [h.chunk.text for h in hits],
        lambda text: len(encode_prompt(tokenizer, text)),
        prompt_budget(model, max_new_tokens),
    )
    return RagAnswer(question, complete(model, tokenizer, prompt, max_new_tokens), prompt, hits, used)


def answer_closed_book(model, tokenizer, question: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """The same question with no sources: the baseline retrieval is measured against."""
    return complete(model, tokenizer, question_prompt(question), max_new_tokens)
