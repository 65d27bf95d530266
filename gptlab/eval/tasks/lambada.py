"""LAMBADA (OpenAI's detokenised test set, as GPT-2 was scored on it): predict the last word of a
passage whose answer needs the whole passage. The harness's ``lambada_openai``: the context is the
passage without its last word, the target is one space plus that word; ``acc`` is whether greedy
decoding reproduces the word (every target token is the argmax), ``perplexity`` is exp of minus
the mean log-likelihood of the targets. The file stores ``context`` and ``continuation`` apart."""

from __future__ import annotations

from gptlab.eval.tasks.base import Doc, Loglikelihood, Task, TaskFile
from gptlab.eval.tasks.readers import jsonl_docs


def _load(paths) -> list[Doc]:
    return jsonl_docs(paths[0], {"context": str, "continuation": str})


def _results(doc: Doc, answer: Loglikelihood) -> dict[str, float]:
    return {"perplexity": answer.logprob, "acc": float(answer.is_greedy)}


DATA = (TaskFile("lambada-openai-subset", "lambada/lambada_openai.jsonl"),)

TASKS = [
    Task(
        name="lambada",
        family="lambada",
        description="long-range last-word prediction (LAMBADA, OpenAI's version)",
        output_type="loglikelihood",
        data=DATA,
        # LAMBADA has only its test passages: few-shot examples are the passages not scored
        # (the harness draws them from the test split too)
        fewshot=DATA,
        load=_load,
        doc_to_text=lambda doc: doc["context"],
        doc_to_target=lambda doc: " " + doc["continuation"],
        target_delimiter="",  # the target carries its space, as lambada_openai's doc_to_target does
        process_results=_results,
        metrics={"perplexity": "perplexity", "acc": "mean"},
        higher_is_better={"perplexity": False, "acc": True},
    )
]
