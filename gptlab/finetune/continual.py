"""Chained fine-tunes (base -> A -> A->B) and replay, the first mitigation of forgetting.

``--after RUN`` starts a fine-tune from an earlier fine-tuned run instead of ``--model``. What
carries over is the GPT (embeddings, blocks, LM head): a classifier run's head is task A's and
stays behind (an instruct fine-tune after a classifier trains the same GPT body on next-token
prediction; `gptlab eval forgetting` measures task A afterwards with A's own head put back on
the new body). Every fine-tune records the chain it ends (model.json ``extra``, or
classifier.json for a classifier): one step per fine-tune with a label (the data file's name,
or its folder's for a generic name like train.jsonl), the kind, the run, the data and how it
was read, so that rows of the forgetting matrix read "base", "sst2", "sst2→multi30k", and replay
and EWC find the earlier task's data. ``pretraining_data`` passes the base run's prepared data
down the chain (the forgetting measure of each fine-tune scores its val split).

Replay (``--replay F``, `finetune instruct` only: it mixes examples into a next-token loss):
the later task's training split is extended with earlier examples so that they make up the
fraction F of the mixed split: k = round(n * F / (1 - F)) for n new examples, drawn without
replacement (seeded; the pool reshuffled and drawn again when k exceeds it). The earlier examples
are ``--replay-data FILE`` (plain text, one example per non-empty line: pretraining-style text),
or the data the ``--after`` run recorded: an instruct step's examples with its own template, or
a classifier step's texts as plain text (the head does not train in a later instruct fine-tune;
what can be kept is how the body reads those texts). The whole recorded file is the pool, not
only the earlier run's train split: evaluate the earlier task on a separate file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.options import nonnegative_float, option, positive_int, unit_interval_from_zero

CONTINUAL_GROUP = "continual learning: chains, replay, EWC (gptlab.finetune.continual, anchor)"
GENERIC_NAMES = {"train", "training", "data", "dev", "val", "valid", "validation", "test", "all"}

CONTINUAL_FLAGS: dict[str, dict[str, Any]] = {
    "after": {
        "help": "start from this earlier fine-tuned run (instead of --model); its GPT is reused, "
        "a classifier's head is not; the chain is recorded",
        "metavar": "RUN",
    },
    "replay": {
        "type": unit_interval_from_zero,
        "help": "mix earlier-task examples into the training split as this fraction of it (instruct only)",
        "metavar": "F",
    },
    "replay_data": {
        "help": "the earlier examples for --replay: a text file, one per line "
        "(default: the data the --after run recorded)",
        "metavar": "FILE",
    },
    "ewc": {
        "type": nonnegative_float,
        "help": "EWC penalty lambda/2 * sum F (w - w_start)^2, Fisher from the earlier task",
        "metavar": "LAMBDA",
    },
    "l2_start": {
        "type": nonnegative_float,
        "help": "L2-to-start penalty lambda/2 * sum (w - w_start)^2",
        "metavar": "LAMBDA",
    },
    "ewc_examples": {
        "type": positive_int,
        "help": "earlier-task examples (one backward pass each) the diagonal Fisher averages",
        "metavar": "N",
    },
}


def continual_option(name: str, default: Any) -> Any:
    return option(default, group=CONTINUAL_GROUP, **CONTINUAL_FLAGS[name])


def check_continual(options) -> None:
    """The continual flags of a fine-tune's options (the fields `continual_option` makes)."""
    if bool(options.model) == bool(options.after):
        raise GptlabError("give the model to start from: --model RUN, or --after RUN for a chain (not both)")
    if options.ewc is not None and options.l2_start is not None:
        raise GptlabError("--ewc and --l2-start are two versions of one penalty: give one")
    for name in ("ewc", "l2_start"):
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not value >= 0):
            raise GptlabError(f"{name} must be a number >= 0, got {value!r}")
    if not isinstance(options.ewc_examples, int) or options.ewc_examples < 1:
        raise GptlabError(f"ewc_examples must be a positive integer, got {options.ewc_examples!r}")
    replay = getattr(options, "replay", None)
    if replay is not None and not 0 <= replay < 1:
        raise GptlabError(f"replay must be a fraction in [0, 1), got {replay!r}")
    if replay and not options.after and not getattr(options, "replay_data", None):
        raise GptlabError(
            "--replay needs the earlier examples: --after RUN (its recorded data) or --replay-data"
        )
    if options.lora.enabled and (options.ewc is not None or options.l2_start is not None):
        raise GptlabError(
            "--ewc/--l2-start anchor the full weights: not with --lora-rank (LoRA is frozen already)"
        )


# --- the chain ------------------------------------------------------------------------------------


def recorded(run) -> dict:
    """What a fine-tune recorded about itself: classifier.json for a classifier, else model.json extra."""
    return run.classifier_meta if run.kind == "classifier" else run.extra


def read_chain(path) -> list[dict]:
    """The chain of fine-tunes that made the run at ``path`` ([] for a pretrained or imported model)."""
    from gptlab.run import Run

    chain = recorded(Run.open(path)).get("chain")
    if not isinstance(chain, list) or not all(
        isinstance(s, dict) and isinstance(s.get("label"), str) for s in chain
    ):
        return []
    return chain


def chain_label(chain: list[dict]) -> str:
    """ "base" for no fine-tune, else the steps' labels joined by arrows ("sst2→multi30k")."""
    return "→".join(step["label"] for step in chain) if chain else "base"


def task_label(data: str | Path) -> str:
    """A short name for a task from its data file: the stem, or the folder's for a generic stem."""
    path = Path(data)
    stem = path.stem
    return (
        path.resolve().parent.name if stem.lower() in GENERIC_NAMES and path.resolve().parent.name else stem
    )


@dataclass
class Start:
    """Where a fine-tune starts: the run, the chain that made it, the base's pretraining data."""

    path: str
    chain: list[dict]
    pretraining_data: Path | None


def resolve_start(options) -> Start:
    """The start of a fine-tune from ``--model`` or ``--after``, its chain and pretraining data."""
    from gptlab.data.shards import has_split
    from gptlab.run import Run

    path = options.after or options.model
    run = Run.open(path)
    chain = read_chain(path) if options.after else []
    data = run.data_dir if run.has_split("val") else None
    if data is None and isinstance(recorded(run).get("pretraining_data"), str):
        candidate = Path(recorded(run)["pretraining_data"])
        data = candidate if has_split(candidate, "val") else None
    return Start(str(path), chain, data)


def chain_record(start: Start, step: dict) -> dict:
    """The fields a fine-tune adds to what it records: the chain with its own step last."""
    step = {"label": task_label(step["data"]), **step}
    step["data"] = str(Path(step["data"]).resolve())
    step["run"] = str(Path(step["run"]).resolve())
    record: dict[str, Any] = {"chain": [*start.chain, step]}
    if start.pretraining_data is not None:
        record["pretraining_data"] = str(Path(start.pretraining_data).resolve())
    return record


# --- replay ---------------------------------------------------------------------------------------


def replay_count(n_new: int, fraction: float) -> int:
    """Earlier examples to add to ``n_new`` new ones so that they are ``fraction`` of the mix."""
    if not 0 <= fraction < 1:
        raise GptlabError(f"replay fraction must be in [0, 1), got {fraction!r}")
    return round(n_new * fraction / (1 - fraction))


def mix_replay(new: list, pool: list, fraction: float, seed: int = 0) -> list:
    """``new`` followed by `replay_count` items drawn from ``pool`` (see the module docstring)."""
    k = replay_count(len(new), fraction)
    if k and not pool:
        raise GptlabError("--replay: the earlier task has no examples to replay")
    rng = random.Random(seed)
    drawn: list = []
    while len(drawn) < k:
        order = list(range(len(pool)))
        rng.shuffle(order)
        drawn += [pool[i] for i in order[: k - len(drawn)]]
    return list(new) + drawn


def replay_pool(options, start: Start, tokenizer) -> tuple[list[tuple[list[int], int]], str]:
    """(encoded earlier examples as (ids, prompt length) items, where they came from)."""
    from gptlab.data.corpus import read_text_file

    if options.replay_data:
        lines = read_text_file(options.replay_data).splitlines()
        return text_items(lines, tokenizer), f"{options.replay_data} (text lines)"
    if not start.chain:
        raise GptlabError(f"--replay: {start.path} records no earlier task data; give --replay-data FILE")
    return step_items(start.chain[-1], tokenizer)


def text_items(texts, tokenizer) -> list[tuple[list[int], int]]:
    """Plain texts as items with nothing masked: text + <|endoftext|>."""
    return [(tokenizer.encode(t) + [tokenizer.eot_id], 0) for t in texts if t.strip()]


def step_items(step: dict, tokenizer) -> tuple[list[tuple[list[int], int]], str]:
    """The examples a chain step trained on, encoded as it read them (see the module docstring)."""
    if step.get("finetune") == "classify":
        from gptlab.data.tasks import load_classification

        columns = step.get("columns") or {}
        data = load_classification(
            step["data"],
            columns.get("text", "text"),
            columns.get("label", "label"),
            header=columns.get("header"),
        )
        return text_items(
            data.texts, tokenizer
        ), f"{step['data']} (texts of classifier step {step['label']!r})"
    from gptlab.data.tasks import InstructionExample, encode_example, load_instructions

    template = step.get("template", "alpaca")
    if step.get("input_field"):
        from gptlab.data.pairs import load_pairs

        pairs = load_pairs(step["data"], step["input_field"], step["output_field"])
        examples = [InstructionExample("", p.input, p.output) for p in pairs]
    else:
        examples = load_instructions(step["data"])
    return [encode_example(ex, tokenizer, template) for ex in examples], f"{step['data']} (instruct step)"
