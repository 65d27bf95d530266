"""Run benchmark tasks on a model, the way lm-evaluation-harness runs them.

    result = evaluate_run("runs/gpt2", ["lambada", "sst2"], TaskOptions(limit=100))
    result.results["lambada"]["acc"], result.items["sst2"][0]["answer"]

Every task is read and every prompt built before the model runs (an unknown task, a missing file,
a malformed row or too few few-shot examples fails in seconds, and nothing is scored half). Then,
per request type (gptlab/eval/tasks/base.py):

- Log-likelihood (``multiple_choice``, ``loglikelihood``): a pair is encoded as the harness's
  ``_encode_pair`` does: trailing whitespace of the context moves onto the continuation, the
  whole text is encoded and the continuation is what follows the context's own tokens; an empty
  context is ``<|endoftext|>``. A pair longer than the model's context loses the context's first
  tokens (``block_size + 1`` kept, as the harness does); the items so cut are counted per task.
  The choices of an item share one run of the context (`gptlab.eval.scoring.score_choices`).
- Rolling log-likelihood: the text in disjoint windows of ``block_size`` tokens, the first after
  ``<|endoftext|>`` (the harness's ``get_rolling_token_windows`` + ``make_disjoint_window``).
- Generation: greedy (the KV-cache engine, `gptlab.generate.decode_steps`), the context cut from
  the left to leave room for ``max_gen_tokens``, the text cut at the first stop string.

Few-shot: ``shots`` examples per item, drawn with ``random.Random(seed)`` from the task's few-shot
file, a fresh draw per item in file order (the harness's sampler); a few-shot file that is the
scored file gives only the items not scored. An instruction-tuned run (``template``) gets each non-empty
context wrapped in its prompt template, so the answer follows the response marker directly.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gptlab.data.tasks import InstructionExample, format_prompt
from gptlab.errors import GptlabError
from gptlab.eval.scoring import score_choices, score_pairs
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.base import Doc, Loglikelihood, Task
from gptlab.eval.tasks.files import local_paths
from gptlab.eval.tasks.metrics import by_category, summarize

ITEMS_PER_STEP = 64  # items scored between progress updates (sorted by length first)
GENERATE_BATCH = 16  # prompts decoded together when no batch size is given


@dataclass
class TaskOptions:
    """How to run tasks: ``shots`` few-shot examples per item, the first ``limit`` items in file
    order, ``seed`` of the few-shot draws and the bootstrap, ``batch_size`` rows per forward pass
    (None: as many as the logits budget allows), the ``dtype`` and ``device`` a run is loaded in,
    ``data_dir`` for local task files, ``show_prompts`` prompts kept per task (to print)."""

    shots: int = 0
    limit: int | None = None
    seed: int = 1234
    batch_size: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    data_dir: str | None = None
    show_prompts: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.shots < 0:
            raise GptlabError(f"shots must be >= 0, got {self.shots}")
        if self.limit is not None and self.limit < 1:
            raise GptlabError(f"limit must be at least 1, got {self.limit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise GptlabError(f"batch size must be at least 1, got {self.batch_size}")
        if self.show_prompts < 0:
            raise GptlabError(f"show_prompts must be >= 0, got {self.show_prompts}")


@dataclass
class TasksResult:
    """What `evaluate` found, per task name: ``results`` (each metric, its ``_stderr`` and
    ``_ci95``, and ``n``), ``categories`` (per category: each metric and ``n``), ``truncated``
    (items whose prompt was cut to the model's context), ``items`` (every item's context, answer,
    metrics, gold and the model's choice), ``prompts`` (the first ``show_prompts`` prompts),
    ``timing`` (seconds and items/s of scoring). An item's ``gold`` and ``choice`` are indices into
    its ``choices`` for a multiple-choice task; for a log-likelihood task ``gold`` is the target and
    ``choice`` whether greedy decoding reproduces it; for generation, the target and the text."""

    model: str
    options: TaskOptions
    tasks: dict[str, Task]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    prompts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timing: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self, items: bool = False) -> dict[str, Any]:
        """The JSON document of ``--json`` (with ``items``: every per-item score, tasks.json)."""
        doc = {
            "model": self.model,
            "results": self.results,
            "categories": self.categories,
            "truncated": self.truncated,
            "timing": self.timing,
            "options": asdict(self.options),
            "tasks": {
                name: {
                    "family": task.family,
                    "output_type": task.output_type,
                    "description": task.description,
                    "higher_is_better": dict(task.higher_is_better),
                    "chance": dict(task.chance),
                }
                for name, task in self.tasks.items()
            },
        }
        if items:
            doc["items"] = self.items
        return doc


@dataclass
class _Prepared:
    """One task ready to score: its docs and each doc's requests as text."""

    task: Task
    docs: list[Doc]
    contexts: list[str]
    continuations: list[list[str]]  # per doc: the choices, the target, or the rolling text


# --- building requests ------------------------------------------------------------------------------


def _target_text(task: Task, doc: Doc) -> str:
    """What a few-shot example shows after its prompt: the gold choice's text, or the target."""
    target = task.doc_to_target(doc)
    if task.output_type == "multiple_choice":
        return task.doc_to_choice(doc)[target]
    return str(target)


def _load(task: Task, options: TaskOptions) -> tuple[list[Doc], list[Doc]]:
    """The task's docs to score (the first ``limit``) and its few-shot pool (empty without shots)."""
    all_docs = task.load(local_paths(task.data, options.data_dir))
    docs = all_docs[: options.limit]
    if not docs:
        raise GptlabError(f"task {task.name}: its data holds no items")
    if options.shots == 0:
        return docs, []
    if task.fewshot is None:
        raise GptlabError(f"task {task.name} takes no few-shot examples: use --shots 0")
    own_items = tuple(task.fewshot) == tuple(task.data)
    if own_items:
        pool = all_docs[len(docs) :]  # never an item being scored
    else:
        pool = (task.fewshot_load or task.load)(local_paths(task.fewshot, options.data_dir))
    if options.shots > len(pool):
        hint = " (its few-shot examples are its items not scored: lower --limit)" if own_items else ""
        raise GptlabError(
            f"task {task.name}: --shots {options.shots} is more than its few-shot pool of {len(pool)} examples{hint}"
        )
    return docs, pool


def _answer(task: Task, text: str, template: str | None) -> str:
    """The continuation scored after the context: the delimiter and the text, or for an instruction
    run the text alone (its response starts right after the template's response marker)."""
    return text.lstrip() if template else task.target_delimiter + text


def _prepare(task: Task, options: TaskOptions, template: str | None) -> _Prepared:
    docs, pool = _load(task, options)
    rnd = random.Random(options.seed)
    contexts, continuations = [], []
    for doc in docs:
        try:
            shots = rnd.sample(pool, options.shots) if options.shots else []
            examples = [task.doc_to_text(ex) + task.target_delimiter + _target_text(task, ex) for ex in shots]
            context = "".join(e + task.fewshot_delimiter for e in examples) + task.doc_to_text(doc)
            # an empty context scores the text itself (CrowS-Pairs, WinoBias): no instruction to wrap
            wrap = template if context else None
            if wrap:
                context = format_prompt(InstructionExample(instruction=context), wrap)
            if task.output_type == "multiple_choice":
                conts = [_answer(task, choice, wrap) for choice in task.doc_to_choice(doc)]
            elif task.output_type == "loglikelihood":
                conts = [_answer(task, str(task.doc_to_target(doc)), wrap)]
            elif task.output_type == "loglikelihood_rolling":
                context, conts = "", [task.doc_to_rolling_text(doc)]
            else:
                conts = []
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise GptlabError(
                f"{doc.where}: task {task.name} cannot read this item ({type(e).__name__}: {e})"
            ) from None
        contexts.append(context)
        continuations.append(conts)
    return _Prepared(task, docs, contexts, continuations)


def encode_pair(
    tokenizer, context: str, continuation: str, special: Any = frozenset()
) -> tuple[list[int], list[int]]:
    """Token ids of a (context, continuation) pair, as the harness encodes them (module docstring)."""

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, allowed_special=special) if text else []

    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if context:
        ctx = encode(context)
        return ctx, encode(context + continuation)[len(ctx) :]
    eot = tokenizer.eot_id
    if eot is None:
        raise GptlabError("an empty context is conditioned on <|endoftext|>, and this tokenizer has none")
    cont = encode(continuation)
    return (cont[:1], cont[1:]) if cont and cont[0] == eot else ([eot], cont)


def rolling_windows(tokens: Sequence[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Disjoint (context, prediction) windows that score every token of ``tokens`` once, the first
    after ``prefix``; each fits ``max_len + 1`` tokens (the harness's rolling windows)."""
    tokens = list(tokens)
    windows, done = [], 0
    while done < len(tokens):
        n = min(max_len, len(tokens) - done)
        end = done + n
        context = [prefix] if done == 0 else tokens[max(0, end - max_len - 1) : end - n]
        windows.append((context, tokens[done:end]))
        done = end
    return windows


# --- scoring --------------------------------------------------------------------------------------


def _loglikelihoods(model, tokenizer, prep: _Prepared, options, special, bar) -> tuple[list[Any], int]:
    """The answers of a log-likelihood task (a Loglikelihood per choice, or one) and the number of
    items whose pairs were cut to the model's context."""
    block = model.config.block_size
    groups, truncated = [], 0
    for doc, context, conts in zip(prep.docs, prep.contexts, prep.continuations):
        pairs = [encode_pair(tokenizer, context, c, special) for c in conts]
        for (_, cont), text in zip(pairs, conts):
            if not cont:
                raise GptlabError(f"{doc.where}: the continuation {text!r} encodes to no tokens")
        truncated += any(len(ctx) + len(cont) > block + 1 for ctx, cont in pairs)
        groups.append((pairs[0][0], [cont for _, cont in pairs]))  # the context's ids: the same for each
    answers: list[Any] = [None] * len(groups)
    order = sorted(range(len(groups)), key=lambda g: -len(groups[g][0]) - max(map(len, groups[g][1])))
    for start in range(0, len(order), ITEMS_PER_STEP):
        chunk = order[start : start + ITEMS_PER_STEP]
        scores = score_choices(model, [groups[g] for g in chunk], max_batch_size=options.batch_size)
        for g, scored in zip(chunk, scores):
            lls = [Loglikelihood(float(s.logprobs.sum()), s.is_greedy) for s in scored]
            answers[g] = lls if prep.task.output_type == "multiple_choice" else lls[0]
        bar.update(len(chunk))
    return answers, truncated


def _rolling(model, tokenizer, prep: _Prepared, options, bar) -> list[float]:
    """Each text's summed log-likelihood over its disjoint windows (the windows of several texts
    batched together)."""
    if tokenizer.eot_id is None:
        raise GptlabError("rolling log-likelihood starts after <|endoftext|>, and this tokenizer has none")
    windows = []  # per doc: its (context, prediction) windows
    for doc, conts in zip(prep.docs, prep.continuations):
        tokens = tokenizer.encode(conts[0], allowed_special=frozenset())
        if not tokens:
            raise GptlabError(f"{doc.where}: the text to score encodes to no tokens")
        windows.append(rolling_windows(tokens, tokenizer.eot_id, model.config.block_size))
    answers = []
    for start in range(0, len(windows), ITEMS_PER_STEP):
        chunk = windows[start : start + ITEMS_PER_STEP]
        flat = [w for doc_windows in chunk for w in doc_windows]
        scores = iter(
            score_pairs(model, [c for c, _ in flat], [p for _, p in flat], max_batch_size=options.batch_size)
        )
        answers += [sum(float(next(scores).logprobs.sum()) for _ in doc_windows) for doc_windows in chunk]
        bar.update(len(chunk))
    return answers


def _generations(model, tokenizer, prep: _Prepared, options, special, bar) -> tuple[list[str], int]:
    """Greedy completions cut at the task's stop strings, and how many contexts were cut."""
    from gptlab.generate import GREEDY, TextStream, decode_steps, encode_prompt

    task = prep.task
    room = max(1, model.config.block_size - task.max_gen_tokens)  # the harness leaves max_gen_tokens
    prompts = [
        tokenizer.encode(c, allowed_special=special) if c else encode_prompt(tokenizer, c)
        for c in prep.contexts
    ]
    truncated = sum(len(p) > room for p in prompts)
    prompts = [p[-room:] for p in prompts]
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    size = options.batch_size or GENERATE_BATCH
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        streams = [TextStream(tokenizer, task.until) for _ in chunk]
        ended = [False] * len(chunk)
        steps = decode_steps(
            model, [prompts[i] for i in chunk], task.max_gen_tokens, GREEDY, tokenizer.eot_id
        )
        for next_ids in steps:
            for b, token in enumerate(next_ids.tolist()):
                if not ended[b]:
                    ended[b] = token == tokenizer.eot_id
                    if not ended[b]:
                        streams[b].push(token)
                    ended[b] = ended[b] or streams[b].stopped
            if all(ended):
                steps.close()
                break
        for i, stream in zip(chunk, streams):
            stream.finish()
            answers[i] = stream.text
        bar.update(len(chunk))
    return answers, truncated


def _describe(task: Task, doc: Doc, answer: Any) -> tuple[Any, Any, Any]:
    """(answer as JSON, gold, the model's choice) of one item, for tasks.json and the report."""
    if task.output_type == "multiple_choice":
        lls = [ll.logprob for ll in answer]
        return [list(ll) for ll in answer], task.doc_to_target(doc), max(range(len(lls)), key=lls.__getitem__)
    if task.output_type == "loglikelihood":
        return list(answer), task.doc_to_target(doc), bool(answer.is_greedy)
    if task.output_type == "loglikelihood_rolling":
        return answer, None, None
    return answer, task.doc_to_target(doc), answer


def _score_task(
    model, tokenizer, prep: _Prepared, options: TaskOptions, special, result: TasksResult
) -> None:
    from tqdm import tqdm

    task = prep.task
    started = time.perf_counter()
    with tqdm(
        total=len(prep.docs), desc=task.name, unit="item", disable=not options.progress, file=sys.stderr
    ) as bar:
        truncated = 0
        if task.output_type in ("multiple_choice", "loglikelihood"):
            answers, truncated = _loglikelihoods(model, tokenizer, prep, options, special, bar)
        elif task.output_type == "loglikelihood_rolling":
            answers = _rolling(model, tokenizer, prep, options, bar)
        else:
            answers, truncated = _generations(model, tokenizer, prep, options, special, bar)
    seconds = time.perf_counter() - started
    items = []
    for doc, context, conts, answer in zip(prep.docs, prep.contexts, prep.continuations, answers):
        metrics = task.process_results(doc, answer)
        missing = set(task.metrics) - set(metrics)
        if missing:
            raise GptlabError(f"task {task.name}: process_results gave no {', '.join(sorted(missing))}")
        shown, gold, choice = _describe(task, doc, answer)
        category = task.category(doc) if task.category else None
        item = {"index": doc.index, "category": category, "context": context, "answer": shown,
                "metrics": metrics, "gold": gold, "choice": choice}  # fmt: skip
        if task.output_type == "multiple_choice":
            item["choices"] = conts  # the continuations scored, in the order of the answer
        items.append(item)
    summary: dict[str, Any] = {}
    for metric, aggregation in task.metrics.items():
        s = summarize(aggregation, [it["metrics"][metric] for it in items], seed=options.seed)
        summary |= {metric: s.value, f"{metric}_stderr": s.stderr, f"{metric}_ci95": list(s.ci95)}
    result.results[task.name] = summary | {"n": len(items)}
    if task.category:
        values = [it["metrics"] for it in items]
        result.categories[task.name] = by_category(task.metrics, values, [it["category"] for it in items])
    result.truncated[task.name] = int(truncated)
    result.items[task.name] = items
    result.prompts[task.name] = [
        {"context": c, "continuations": conts}
        for c, conts in list(zip(prep.contexts, prep.continuations))[: options.show_prompts]
    ]
    result.timing[task.name] = {"seconds": seconds, "items_per_s": len(items) / max(seconds, 1e-9)}


def evaluate(
    model: torch.nn.Module,
    tokenizer,
    tasks: Sequence[str | Task],
    options: TaskOptions | None = None,
    template: str | None = None,
    name: str = "model",
) -> TasksResult:
    """Score ``model`` on ``tasks`` (names or Task definitions): see the module docstring.
    ``template``: the prompt template of an instruction-tuned model (None: a plain language model).
    The model is used as given (its device and dtype); `evaluate_run` loads a run for it."""
    options = options or TaskOptions()
    if not tasks:
        raise GptlabError("no tasks given: name at least one (gptlab eval tasks --list)")
    resolved = [t if isinstance(t, Task) else get_task(t) for t in tasks]
    names = [t.name for t in resolved]
    if len(set(names)) != len(names):
        raise GptlabError(f"a task is named twice: {', '.join(names)}")
    if getattr(getattr(model, "config", None), "block_size", None) is None:
        raise GptlabError("the model has no config.block_size: give a gptlab GPT")
    prepared = [_prepare(task, options, template) for task in resolved]  # every input checked first
    special: Any = "all" if template else frozenset()  # a template writes its special tokens as text
    result = TasksResult(model=name, options=options, tasks={t.name: t for t in resolved})
    with torch.no_grad():
        for prep in prepared:
            _score_task(model, tokenizer, prep, options, special, result)
    return result


def evaluate_run(run_path, tasks: Sequence[str | Task], options: TaskOptions | None = None) -> TasksResult:
    """Load any model gptlab reads (a run, an instruction run with its template, a quantised run,
    a Hugging Face GPT-2 folder or a run converted from one) in ``options.dtype`` on
    ``options.device``, and `evaluate` it."""
    from gptlab.run import Run

    options = options or TaskOptions()
    run = Run.open(run_path)
    if run.kind == "classifier":
        raise GptlabError(f"{run_path} is a classifier run: benchmark tasks score a language model")
    resolved = [
        t if isinstance(t, Task) else get_task(t) for t in tasks
    ]  # an unknown name fails before loading
    dtype = None if run.kind == "quantized" else options.dtype  # a quantised model keeps its own format
    model, tokenizer = run.load(device=options.device, dtype=dtype)
    template = run.template if run.kind == "instruct" else None
    return evaluate(model, tokenizer, resolved, options, template=template, name=str(run_path))
