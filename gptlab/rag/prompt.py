"""The retrieval prompt: numbered sources, then the question in the form the model is asked
without retrieval (PopQA's ``"Q: {question} A:"``), so the two prompts differ only by the sources.

    Sources:
    [1] <chunk text>
    [2] <chunk text>

    Q: <question> A:

The sources are the retrieved chunks best first; when the prompt would not leave room for the
answer in the model's context, the lowest-ranked sources are dropped, then the last one kept is cut
word by word from its end, so the question itself is never cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from gptlab.errors import GptlabError


def question_prompt(question: str) -> str:
    return f"Q: {question} A:"


def format_prompt(question: str, sources: Sequence[str]) -> str:
    if not sources:
        return question_prompt(question)
    lines = "\n".join(f"[{i}] {text}" for i, text in enumerate(sources, 1))
    return f"Sources:\n{lines}\n\n{question_prompt(question)}"


def fit_prompt(question: str, sources: Sequence[str], count_tokens, budget: int) -> tuple[str, int]:
    """(prompt, number of sources kept) with ``count_tokens(prompt) <= budget``: lower-ranked
    sources dropped first, then the last kept one shortened. GptlabError if the question alone is
    too long."""
    if count_tokens(question_prompt(question)) > budget:
        raise GptlabError(f"the question alone is longer than the {budget} tokens the prompt may use")
    kept = list(sources)
    while kept and count_tokens(format_prompt(question, kept)) > budget:
        if len(kept) > 1 and count_tokens(format_prompt(question, kept[:-1])) > budget:
            kept.pop()
            continue
        words = kept[-1].split(" ")
        # the longest prefix of the last source that fits, by bisection on its words
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(format_prompt(question, [*kept[:-1], " ".join(words[:mid])])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            kept.pop()
        else:
            kept[-1] = " ".join(words[:lo])
            break
    return format_prompt(question, kept), len(kept)
