"""Generation evaluation on a dataset (``gptlab eval generation``): prompt a model with every
input of an input -> output file (gptlab.data.pairs), decode greedily or by beam search, and
score the outputs against the references.

    result = evaluate_generation("runs/translate", "multi30k/val.jsonl", GenerationOptions(beams=4))
    result.scores   # {"bleu": ..., "chrf": ..., "rouge1": ..., "rouge2": ..., "rougeL": ..., "exact_match": ..., "n": ...}
    result.items    # per example: input, references, output and its own scores

- Prompt: the run's own template and fields (recorded by ``gptlab finetune instruct`` with a
  prompt string, `gptlab.run.Run.template` / ``Run.fields``) unless given. A prompt longer than
  the context minus ``max_new_tokens`` keeps its last tokens; the output is the generated text up
  to ``<|endoftext|>``, stripped of surrounding whitespace.
- Decoding: greedy (``beams=1``, the KV-cache engine, batched; each row gets what it would get
  alone) or beam search (gptlab.beam; ``length_penalty`` is HF's). Prompts are batched in order
  of length, so little padding is computed; outputs come back in the file's order.
- Metrics (``metrics``: any of bleu, chrf, rouge, exact): corpus BLEU and chrF on 0-100 as
  sacrebleu computes them (BLEU with its 13a tokenizer and default ``exp`` smoothing; chrF2),
  ROUGE-1/2/L F-measures on 0-1 averaged over examples as rouge-score's (no stemming), and the
  exact-match rate (whitespace-normalised, case-sensitive; any reference counts). A target
  field may hold several references (a list of strings): BLEU and chrF use them all, ROUGE and
  exact match the best. Per-example scores are sentence BLEU (sacrebleu's sentence defaults),
  sentence chrF, ROUGE F and exact match.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptlab.data.pairs import Pair, load_pairs
from gptlab.data.tasks import (
    InstructionExample,
    check_template,
    encode_prompt,
    extract_response,
    is_prompt_template,
)
from gptlab.errors import GptlabError
from gptlab.eval.bleu import corpus_bleu, sentence_bleu
from gptlab.eval.chrf import corpus_chrf, sentence_chrf
from gptlab.eval.rouge import rouge
from gptlab.eval.text_metrics import exact_match
from gptlab.generate import GREEDY, Sampler, generate
from gptlab.io import atomic_write_json, atomic_write_text
from gptlab.model.modes import resolve_device

METRICS = ("bleu", "chrf", "rouge", "exact")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
OUTPUTS_FILE = "outputs.jsonl"
RESULTS_FILE = "results.json"


@dataclass
class GenerationOptions:
    """How `evaluate_generation` prompts, decodes and scores; None: the run's recorded value."""

    input_field: str | None = None
    target_field: str | None = None
    template: str | None = None
    metrics: tuple[str, ...] = METRICS
    max_new_tokens: int = 128
    beams: int = 1
    length_penalty: float = 1.0
    batch_size: int = 16
    limit: int | None = None  # the first N examples only
    device: str = "auto"

    def check(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise GptlabError(
                f"metrics must be some of {', '.join(METRICS)}, got {', '.join(self.metrics) or 'none'}"
            )
        check_positive_ints(self, ("max_new_tokens", "beams", "batch_size"), optional=("limit",))
        if self.template is not None:
            check_template(self.template)
        if not math.isfinite(self.length_penalty):
            raise GptlabError(f"length_penalty must be a finite number, got {self.length_penalty!r}")


def check_positive_ints(options, names: Sequence[str], optional: Sequence[str] = ()) -> None:
    """GptlabError unless each field ``names`` of ``options`` is a positive integer (those in
    ``optional`` may be None too)."""
    for name in (*names, *optional):
        value = getattr(options, name)
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GptlabError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class GenerationResult:
    scores: dict[str, float]  # the requested metrics' keys and n
    items: list[dict[str, Any]]  # per example: input, references, output, its scores
    settings: dict[str, Any] = field(default_factory=dict)  # model, data, template, fields, decoding

    def to_dict(self) -> dict[str, Any]:
        return {**self.scores, "settings": self.settings}


@torch.no_grad()
def complete(
    gpt,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    beams: int = 1,
    length_penalty: float = 1.0,
    batch_size: int = 16,
    sampler: Sampler = GREEDY,
) -> list[str]:
    """The text each prompt's continuation decodes to, up to <|endoftext|> (not stripped).

    Greedy (or ``sampler``) through `gptlab.generate.generate`, or beam search with ``beams > 1``.
    Prompts longer than the context minus ``max_new_tokens`` keep their last tokens; batches are
    formed in order of prompt length (less padding) and the results put back in order."""
    from gptlab.beam import beam_search

    room = max(1, gpt.config.block_size - max_new_tokens)
    eot = tokenizer.eot_id
    cropped = [list(p)[-room:] for p in prompts]
    order = sorted(range(len(cropped)), key=lambda i: len(cropped[i]))
    texts: list[str] = [""] * len(cropped)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = [cropped[i] for i in chunk]
        if beams > 1:
            found = beam_search(gpt, batch, max_new_tokens, beams, eos_id=eot, length_penalty=length_penalty)
            completions = [h.tokens for h in found]
        else:
            rows = generate(gpt, batch, max_new_tokens, sampler, eos_id=eot)
            completions = [row[len(prompt) :] for prompt, row in zip(batch, rows)]
        for i, tokens in zip(chunk, completions):
            if eot is not None and eot in tokens:
                tokens = tokens[: tokens.index(eot)]
            texts[i] = tokenizer.decode(tokens)
    return texts


def score_outputs(
    outputs: Sequence[str], references: Sequence[Sequence[str]], metrics: Sequence[str] = METRICS
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(corpus scores with ``n``, per-example scores) of ``outputs`` against their references
    (one or more strings each); the keys are those of ``metrics`` (see the module docstring)."""
    if not outputs:
        raise GptlabError("no outputs to score")
    if len(outputs) != len(references):
        raise GptlabError(f"got {len(outputs)} outputs but {len(references)} reference lists")
    n_sets = max(len(refs) for refs in references)
    reference_sets = [[refs[k] if k < len(refs) else None for refs in references] for k in range(n_sets)]
    scores: dict[str, float] = {}
    items: list[dict[str, Any]] = [{} for _ in outputs]
    if "bleu" in metrics:
        scores["bleu"] = corpus_bleu(list(outputs), reference_sets).score
        for item, out, refs in zip(items, outputs, references):
            item["bleu"] = sentence_bleu(out, list(refs)).score
    if "chrf" in metrics:
        scores["chrf"] = corpus_chrf(list(outputs), reference_sets).score
        for item, out, refs in zip(items, outputs, references):
            item["chrf"] = sentence_chrf(out, list(refs)).score
    if "rouge" in metrics:
        for item, out, refs in zip(items, outputs, references):
            pair = rouge(out, list(refs), types=ROUGE_KEYS)
            item.update({t: pair[t].fmeasure for t in ROUGE_KEYS})
        for t in ROUGE_KEYS:
            scores[t] = sum(item[t] for item in items) / len(items)
    if "exact" in metrics:
        for item, out, refs in zip(items, outputs, references):
            item["exact_match"] = any(exact_match(out, r) for r in refs)
        scores["exact_match"] = sum(item["exact_match"] for item in items) / len(items)
    scores["n"] = len(outputs)
    return scores, items


def _resolve(run, options: GenerationOptions) -> tuple[str, str, str]:
    """(template, input field, target field): the options', else what the run recorded."""
    template = options.template
    if template is None:
        if not is_prompt_template(run.template):
            raise GptlabError(
                f"{run.path} records no prompt template (it was not fine-tuned on input -> output "
                'pairs): give one, e.g. --template "Translate English to German:\\n{input}\\n"'
            )
        template = run.template
    recorded_input, recorded_target = run.fields
    input_field = options.input_field or recorded_input
    target_field = options.target_field or recorded_target
    for name, value in (("input", input_field), ("target", target_field)):
        if not value:
            raise GptlabError(f"{run.path} records no {name} field: give --{name}-field")
    return template, input_field, target_field


def evaluate_generation(
    model, data: str | os.PathLike, options: GenerationOptions | None = None
) -> GenerationResult:
    """Generate an output for every example of ``data`` with ``model`` (a run directory or a
    `gptlab.run.Run`) and score them (see the module docstring)."""
    from gptlab.run import Run

    options = options or GenerationOptions()
    options.check()
    run = model if isinstance(model, Run) else Run.open(model)
    template, input_field, target_field = _resolve(run, options)
    pairs: list[Pair] = load_pairs(data, input_field, target_field, multiple_references=True)
    if options.limit:
        pairs = pairs[: options.limit]
    gpt, tokenizer = run.load(device=str(resolve_device(options.device)))
    prompts = [encode_prompt(InstructionExample(p.input), tokenizer, template) for p in pairs]
    texts = complete(
        gpt,
        tokenizer,
        prompts,
        options.max_new_tokens,
        beams=options.beams,
        length_penalty=options.length_penalty,
        batch_size=options.batch_size,
    )
    outputs = [extract_response(t, template) for t in texts]
    references = [list(p.references) for p in pairs]
    scores, per_item = score_outputs(outputs, references, options.metrics)
    items = [
        {"line": p.line, "input": p.input, "references": list(p.references), "output": out} | s
        for p, out, s in zip(pairs, outputs, per_item)
    ]
    settings = {
        "model": str(run.path),
        "data": str(data),
        "template": template,
        "input_field": input_field,
        "target_field": target_field,
    } | {k: v for k, v in asdict(options).items() if k not in ("template", "input_field", "target_field")}
    settings["metrics"] = list(options.metrics)
    return GenerationResult(scores, items, settings)


def write_outputs(result: GenerationResult, out_dir: str | os.PathLike) -> Path:
    """``outputs.jsonl`` (one object per example, with its scores) and ``results.json`` (the
    corpus scores and settings) in ``out_dir``; the caller claims the files first
    (gptlab.outputs.claim_files: existing ones are replaced only when the user said so)."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in result.items)
    atomic_write_text(out / OUTPUTS_FILE, lines)
    atomic_write_json(out / RESULTS_FILE, result.to_dict())
    return out
