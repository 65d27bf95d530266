"""Instruction fine-tuning (`gptlab finetune instruct`), the LLMs-from-scratch ch. 7 recipe.

Read Alpaca-format examples (instruction, optional input, output), split them train/val/test,
format each with a prompt template (gptlab.data.tasks: ``alpaca`` text or ``chat`` special
tokens), and train the GPT on next-token prediction of prompt + response + <|endoftext|>
(optionally with the prompt tokens masked out of the loss). Then, for the test split, the
model's greedy responses are generated, cut at the end of the response, saved to
``responses.json`` and scored against the references with ROUGE-L, BLEU and exact match, next
to the same scores for the base model's responses (``base_responses.json``): what the
fine-tune gained. The base model's perplexity on its pretraining val split before and after
shows what it forgot.

The run directory is an ordinary gptlab run (model.json, model.safetensors, tokenizer.json)
whose model.json says ``"extra": {"finetune": "instruct", "template": ...}`` so that
``gptlab chat`` and ``gptlab generate`` use it as is; with LoRA the weights are saved merged,
and ``adapter.safetensors`` holds the adapter alone too.

Input -> output data (translation, summarisation): with ``input_field`` and ``output_field`` the
data is any JSONL of objects (gptlab.data.pairs), and ``template`` a prompt string with
``{input}`` (``"Translate English to German:\\n{input}\\n"``); the model learns prompt + output +
<|endoftext|> with the prompt masked out of the loss (always: the task is the output), and the
run records the template and both field names (model.json ``extra``) for ``gptlab eval
generation`` and ``gptlab chat``. ``val_data`` takes the validation examples from a file of their
own. ``bucket_by_length`` batches examples of similar length together (shuffled within and
across buckets, so epochs still differ): much less padding when lengths vary. ``select_by``
keeps the epoch with the best validation loss (default) or the best task metric (``bleu``,
``chrf``, ``rougeL``) of greedy outputs for the first ``select_examples`` validation examples.

The ``chat`` template needs the special tokens ``<|user|>`` and ``<|assistant|>``. A base
tokenizer without them gets them added (`add_special_tokens`) and the embedding grows by as
many rows: the new tokens start as the mean of the existing embeddings, as Hugging Face's
resize does, so they begin as an "average token" rather than noise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from gptlab.data.pairs import load_pairs
from gptlab.data.tasks import (
    CHAT_SPECIAL_TOKENS,
    InstructionDataset,
    InstructionExample,
    check_template,
    collate_instructions,
    encode_prompt,
    extract_response,
    is_prompt_template,
    load_instructions,
    split_examples,
)
from gptlab.errors import GptlabError
from gptlab.eval.generation import complete
from gptlab.eval.text_metrics import (
    corpus_bleu,
    corpus_chrf,
    corpus_rouge,
    distinct_n,
    exact_match,
    repetition_rate,
)
from gptlab.finetune.anchor import make_penalty, with_penalty
from gptlab.finetune.buckets import LengthBuckets
from gptlab.finetune.common import (
    LoraOptions,
    StepSchedule,
    base_model_option,
    check_label_smoothing,
    check_positive,
    file_size_mb,
    lm_val_loss,
    lora_option,
    make_optimizer,
    training_costs,
    training_option,
)
from gptlab.finetune.continual import (
    chain_record,
    check_continual,
    continual_option,
    mix_replay,
    replay_count,
    replay_pool,
    resolve_start,
)
from gptlab.finetune.loop import EpochRunner, adamw_update
from gptlab.finetune.peft import (
    ADAPTER_FILE,
    PeftOptions,
    add_peft,
    base_gpt,
    merge_peft,
    merges,
    peft_option,
    resolve_peft,
    save_peft,
)
from gptlab.finetune.peft_virtual import virtual_token_count
from gptlab.finetune.report import write_instruct_report
from gptlab.generate import GREEDY, Sampler
from gptlab.io import atomic_write_json
from gptlab.model.gpt import GPT
from gptlab.model.lora import count_trainable
from gptlab.model.modes import eval_mode, resolve_device
from gptlab.options import option, positive_int, template_text
from gptlab.run import Run
from gptlab.rundir import load_model, save_model
from gptlab.tokenizers.base import EOT

SELECT_BY = ("loss", "bleu", "chrf", "rougeL")
RESPONSES_FILE = "responses.json"
BASE_RESPONSES_FILE = "base_responses.json"


@dataclass
class InstructOptions:
    """Everything `finetune_instruct` needs; the CLI flags are built from these fields."""

    model: str | None = base_model_option()
    data: str = training_option("data")  # Alpaca-format JSON list or JSONL, or input -> output JSONL
    out: str = training_option("out")
    template: str = option(
        "alpaca",
        "alpaca, chat, or a prompt string with {input} for input -> output data "
        '(e.g. "Translate English to German:\\n{input}\\n"; \\n and \\t are read as newline and tab)',
        metavar="TEMPLATE",
        type=template_text,
    )
    input_field: str | None = option(
        None, "input -> output data: the field holding the input", metavar="NAME"
    )
    output_field: str | None = option(
        None, "input -> output data: the field holding the output", metavar="NAME"
    )
    val_data: str | None = option(
        None, "validation examples from this file instead of a split of --data", metavar="FILE"
    )
    mask_prompt: bool = option(False, "no loss on the prompt tokens (always so for input -> output data)")
    bucket_by_length: bool = option(False, "batch examples of similar length together (less padding)")
    select_by: str = option(
        "loss",
        "keep the epoch with the best validation loss or task metric of greedy outputs",
        choices=SELECT_BY,
    )
    select_examples: int = option(
        200, "validation examples generated per epoch when --select-by is a metric", type=positive_int
    )
    val_fraction: float = training_option("val_fraction", 0.05)
    test_fraction: float = training_option("test_fraction", 0.1)
    seed: int = training_option("seed", 0)
    lora: LoraOptions = lora_option()
    peft: PeftOptions = peft_option()
    epochs: int = training_option("epochs", 2)
    batch_size: int = training_option("batch_size", 8)
    lr: float = training_option("lr", 1e-4)
    weight_decay: float = training_option("weight_decay", 0.1)
    warmup_fraction: float = 0.1
    grad_clip: float = training_option("grad_clip", 1.0)
    label_smoothing: float = training_option("label_smoothing", 0.0)
    max_minutes: float | None = training_option("max_minutes", None)
    device: str = training_option("device", "auto")
    max_new_tokens: int = option(128, "response length for the evaluation", type=positive_int)
    max_test_examples: int | None = option(  # None: all
        None, "evaluate on the first N test examples only", type=positive_int
    )
    compare_base: bool = option(True, "skip the base model's responses", flag="--no-base-comparison")
    progress: bool = training_option("progress", True)
    after: str | None = continual_option("after", None)
    replay: float | None = continual_option("replay", None)
    replay_data: str | None = continual_option("replay_data", None)
    ewc: float | None = continual_option("ewc", None)
    l2_start: float | None = continual_option("l2_start", None)
    ewc_examples: int = continual_option("ewc_examples", 100)

    @property
    def pairs(self) -> bool:
        """Input -> output data (fields given) rather than Alpaca records."""
        return bool(self.input_field or self.output_field)

    def check(self) -> None:
        check_continual(self)
        check_template(self.template)
        resolve_peft(self.peft, self.lora)
        if self.pairs:
            if not (self.input_field and self.output_field):
                raise GptlabError("input -> output data needs both --input-field and --output-field")
            if not is_prompt_template(self.template):
                raise GptlabError(
                    f"input -> output data needs a --template string with {{input}} where the input goes "
                    f'(e.g. "Translate English to German:\\n{{input}}\\n"), got {self.template!r}'
                )
        elif is_prompt_template(self.template):
            raise GptlabError(
                "a prompt-string template is for input -> output data: give --input-field and --output-field"
            )
        if self.select_by not in SELECT_BY:
            raise GptlabError(f"select_by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        for name in ("epochs", "batch_size", "lr", "max_new_tokens"):
            check_positive(name, getattr(self, name))
        check_positive("grad_clip", self.grad_clip, allow_zero=True)
        check_label_smoothing(self.label_smoothing)
        if self.max_minutes is not None:
            check_positive("max_minutes", self.max_minutes)
        if self.max_test_examples is not None:
            check_positive("max_test_examples", self.max_test_examples)


@dataclass
class InstructResult:
    out_dir: Path
    scores: dict
    base_scores: dict | None
    history: list[dict]
    summary: dict[str, Any]


# --- special tokens -----------------------------------------------------------------------------


def add_special_tokens(gpt: GPT, tokenizer, tokens: Sequence[str]):
    """Return a tokenizer with ``tokens`` added as special tokens (ids after the last one), and
    grow ``gpt``'s embedding (and untied LM head) in place if the new ids do not fit."""
    missing = [t for t in tokens if t not in tokenizer.special_tokens]
    if not missing:
        return tokenizer
    data = tokenizer.to_dict()
    if not isinstance(data.get("special_tokens"), dict):
        raise GptlabError(f"cannot add special tokens to a {type(tokenizer).__name__}")
    for i, token in enumerate(missing):
        data["special_tokens"][token] = tokenizer.vocab_size + i
    new_tokenizer = type(tokenizer).from_dict(data, source="tokenizer with added special tokens")
    if new_tokenizer.vocab_size > gpt.config.vocab_size:
        resize_vocab(gpt, new_tokenizer.vocab_size)
    return new_tokenizer


@torch.no_grad()
def resize_vocab(gpt: GPT, vocab_size: int) -> None:
    """Grow the token embedding (and the LM head; tied or not) to ``vocab_size`` rows; new rows
    are the mean of the old ones."""
    old = gpt.transformer.wte.weight
    if vocab_size <= old.shape[0]:
        return
    rows = old.mean(dim=0, keepdim=True).expand(vocab_size - old.shape[0], -1)
    wte = nn.Embedding(vocab_size, old.shape[1], device=old.device, dtype=old.dtype)
    wte.weight.copy_(torch.cat([old, rows]))
    gpt.transformer.wte = wte
    if gpt.config.tie_weights:
        gpt.lm_head = nn.Linear(old.shape[1], vocab_size, bias=False, device=old.device, dtype=old.dtype)
        gpt.lm_head.weight = wte.weight
    else:
        head = gpt.lm_head.weight
        new_head = nn.Linear(old.shape[1], vocab_size, bias=False, device=old.device, dtype=old.dtype)
        new_head.weight.copy_(
            torch.cat([head, head.mean(dim=0, keepdim=True).expand(vocab_size - head.shape[0], -1)])
        )
        gpt.lm_head = new_head
    gpt.config.vocab_size = vocab_size


# --- responses and their scores -----------------------------------------------------------------


@torch.no_grad()
def generate_responses(
    gpt: GPT,
    tokenizer,
    examples: Sequence[InstructionExample],
    template: str,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    sampler: Sampler = GREEDY,
) -> list[str]:
    """Responses to ``examples`` (greedy unless ``sampler`` says otherwise), each cut at
    <|endoftext|> and after the response marker. Prompts longer than the context minus
    ``max_new_tokens`` (and minus the virtual tokens of prefix/prompt tuning) keep their last tokens."""
    prompts = [encode_prompt(ex, tokenizer, template) for ex in examples]
    virtual = virtual_token_count(gpt)
    if virtual:  # prefix/prompt tuning: the virtual tokens take room, and cannot follow left padding
        room = max(1, gpt.config.block_size - max_new_tokens - virtual)
        prompts, batch_size = [p[-room:] for p in prompts], 1
    texts = complete(gpt, tokenizer, prompts, max_new_tokens, batch_size=batch_size, sampler=sampler)
    return [extract_response(text, template) for text in texts]


def score_responses(generated: Sequence[str], references: Sequence[str]) -> dict:
    """ROUGE-L F (mean over pairs, rouge-score's), corpus BLEU and chrF (sacrebleu's), exact match rate,
    and reference-free diversity numbers of the generations."""
    if not generated:
        raise GptlabError("no responses to score")
    rouge = corpus_rouge(generated, references, types=("rougeL",))["rougeL"].mean
    bleu = corpus_bleu(generated, [list(references)])
    return {
        "n": len(generated),
        "rougeL_f": rouge.fmeasure,
        "bleu": bleu.score,
        "chrf": corpus_chrf(generated, [list(references)]).score,
        "exact_match": sum(exact_match(g, r, ignore_case=True) for g, r in zip(generated, references))
        / len(generated),
        "distinct_2": distinct_n(list(generated), 2),
        "repetition_rate_3": sum(repetition_rate(g, 3) for g in generated) / len(generated),
        "mean_words": sum(len(g.split()) for g in generated) / len(generated),
        "empty": sum(not g.strip() for g in generated),
    }


def _responses_records(examples, generated) -> list[dict]:
    return [
        {"instruction": ex.instruction, "input": ex.input, "reference": ex.output, "generated": g}
        for ex, g in zip(examples, generated)
    ]


# --- training -----------------------------------------------------------------------------------


def _load_examples(options: InstructOptions, path: str) -> list[InstructionExample]:
    """Alpaca records, or input -> output pairs as examples whose input fills the template."""
    if not options.pairs:
        return load_instructions(path)
    pairs = load_pairs(path, options.input_field, options.output_field)
    return [InstructionExample("", p.input, p.output) for p in pairs]


@torch.no_grad()
def _val_loss(gpt: GPT, loader: DataLoader) -> float:
    device = next(gpt.parameters()).device
    total, count = 0.0, 0
    with eval_mode(gpt):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            n = int((y != -100).sum())
            if n == 0:
                continue
            _, loss = gpt(x, y)
            total += float(loss) * n
            count += n
    return total / count if count else float("nan")


class _TokenLoss:
    """The train loss of one epoch: its batches' mean losses, weighed by their target tokens."""

    def __init__(self) -> None:
        self.total, self.tokens = 0.0, 0

    def add(self, batch, output, loss: torch.Tensor) -> None:
        n = int((batch[1] != -100).sum())  # target tokens of y (B, T); -100: masked out
        self.total += loss.item() * n
        self.tokens += n

    def pop_mean(self) -> float:
        """The mean so far, then start over for the next epoch."""
        mean = self.total / max(1, self.tokens)
        self.total, self.tokens = 0.0, 0
        return mean


def _save_run(out: Path, gpt: GPT, tokenizer, extra: dict, peft: tuple[str | None, dict | None]) -> None:
    """The run as a plain gptlab model, plus the adapter alone. LoRA and IA3 are merged into a copy;
    the other methods cannot be, so the run holds the base weights and names its adapter in
    model.json (``extra.peft.adapter``), which gptlab.rundir.load_model then adds back."""
    method, settings = peft
    if method is None:
        save_model(out, gpt, tokenizer, extra=extra)
        return
    save_peft(gpt, out / ADAPTER_FILE, method, settings)
    record = {"method": method, "settings": settings}
    if merges(method):
        plain = merge_peft(copy.deepcopy(gpt), method)
    else:
        plain, record = base_gpt(gpt, method), record | {"adapter": ADAPTER_FILE}
    save_model(out, plain, tokenizer, extra=extra | {"peft": record})


def finetune_instruct(
    options: InstructOptions, on_epoch: Callable[[dict], None] | None = None
) -> InstructResult:
    options.check()
    torch.manual_seed(options.seed)
    device = resolve_device(options.device)
    out = Path(options.out)  # claimed by the caller (gptlab.run.Run.create)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    examples = _load_examples(options, options.data)
    val_fraction = 0.0 if options.val_data else options.val_fraction
    train_ex, val_ex, test_ex = split_examples(examples, val_fraction, options.test_fraction, options.seed)
    if options.val_data:
        val_ex = _load_examples(options, options.val_data)
    if not train_ex or not val_ex or not test_ex:
        raise GptlabError(
            f"{options.data}: {len(examples)} examples are too few for train/val/test splits of "
            f"{1 - options.val_fraction - options.test_fraction:.2f}/{options.val_fraction}/{options.test_fraction}"
        )
    if options.max_test_examples:
        test_ex = test_ex[: options.max_test_examples]

    start = resolve_start(options)
    gpt, tokenizer = Run.open(start.path).load(device=str(device))
    if tokenizer.eot_id is None:
        raise GptlabError(f"{start.path}: the tokenizer has no {EOT} token, which ends every response")
    if options.template == "chat":
        tokenizer = add_special_tokens(gpt, tokenizer, CHAT_SPECIAL_TOKENS)
    summary: dict[str, Any] = {
        "base_model": str(Path(start.path).resolve()),
        "data": str(options.data),
        "splits": {"train": len(train_ex), "val": len(val_ex), "test": len(test_ex)},
        "template": options.template,
        "fields": [options.input_field, options.output_field] if options.pairs else None,
    }
    baseline_data = start.pretraining_data  # its val split measures forgetting
    if baseline_data is not None:
        summary["forgetting"] = {"before": lm_val_loss(gpt, baseline_data)}
    base_scores = None
    if options.compare_base:
        base_generated = generate_responses(gpt, tokenizer, test_ex, options.template, options.max_new_tokens)
        atomic_write_json(out / BASE_RESPONSES_FILE, _responses_records(test_ex, base_generated))
        base_scores = score_responses(base_generated, [ex.output for ex in test_ex])

    peft = resolve_peft(options.peft, options.lora)
    add_peft(gpt, *peft)
    gpt.train()
    params = count_trainable(gpt)
    pad_id = tokenizer.eot_id
    block = gpt.config.block_size - virtual_token_count(gpt)  # prefix/prompt tokens take room

    mask_prompt = options.mask_prompt or options.pairs

    replay = None
    if options.replay:
        replay, source = replay_pool(options, start, tokenizer)
        summary["replay"] = {"fraction": options.replay, "source": source, "pool": len(replay)}

    def loader(items, shuffle, replay=None):
        dataset = InstructionDataset(items, tokenizer, options.template)
        if replay is not None:  # the earlier task's examples join the training split (continual)
            dataset.items = mix_replay(dataset.items, replay, options.replay, options.seed)
        collate = lambda b: collate_instructions(b, pad_id, block, mask_prompt)  # noqa: E731
        if options.bucket_by_length:
            lengths = [len(ids) for ids, _ in dataset.items]
            buckets = LengthBuckets(lengths, options.batch_size, shuffle=shuffle, seed=options.seed)
            return DataLoader(dataset, batch_sampler=buckets, collate_fn=collate)
        return DataLoader(
            dataset,
            batch_size=options.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(options.seed),
            collate_fn=collate,
        )

    train_loader, val_loader = loader(train_ex, True, replay), loader(val_ex, False)
    if replay is not None:
        summary["replay"]["examples"] = replay_count(len(train_ex), options.replay)
    penalty, summary["penalty"] = make_penalty(options, start, gpt, device)
    optimizer = make_optimizer(gpt, options.lr, options.weight_decay, device)
    schedule = StepSchedule(
        optimizer, options.lr, options.epochs * len(train_loader), options.warmup_fraction
    )
    extra = {"finetune": "instruct", "template": options.template, "base_model": summary["base_model"]}
    if options.pairs:
        extra |= {"input_field": options.input_field, "output_field": options.output_field}
    step = {"finetune": "instruct", "run": str(out), "data": str(options.data), "template": options.template}
    extra |= chain_record(start, step | {k: extra[k] for k in ("input_field", "output_field") if k in extra})
    summary["val_loss_before"] = _val_loss(gpt, val_loader)

    train_loss = _TokenLoss()
    select_ex = val_ex[: options.select_examples]

    def end_epoch() -> dict:
        record = {"train_loss": train_loss.pop_mean(), "val_loss": _val_loss(gpt, val_loader)}
        if options.select_by != "loss":
            outputs = generate_responses(gpt, tokenizer, select_ex, options.template, options.max_new_tokens)
            scores = score_responses(outputs, [ex.output for ex in select_ex])
            record[f"val_{options.select_by}"] = scores[
                "rougeL_f" if options.select_by == "rougeL" else options.select_by
            ]
        return record

    def score(record: dict) -> float:
        return -record["val_loss"] if options.select_by == "loss" else record[f"val_{options.select_by}"]

    trained = EpochRunner(
        model=gpt,
        options=options,
        batches=lambda step: train_loader,
        update=adamw_update(
            gpt,
            optimizer,
            with_penalty(lambda batch: gpt(*batch, label_smoothing=options.label_smoothing), penalty),
            options.grad_clip,
        ),
        schedule=schedule,
        device=device,
        on_batch=train_loss.add,
        end_epoch=end_epoch,
        score=score,
        save=lambda epoch: _save_run(out, gpt, tokenizer, extra | {"best_epoch": epoch}, peft),
        started=started,
        on_epoch=on_epoch,
    ).run(out / "metrics.jsonl")

    summary["train_seconds"] = round(time.time() - started, 2)
    summary["stopped_early"] = trained.stopped_early
    summary["costs"] = training_costs(params, trained.timer) | {
        "adapter_mb": file_size_mb(out / ADAPTER_FILE) if peft[0] else None,
        "model_mb": file_size_mb(out / "model.safetensors"),
    }
    tuned, tuned_tok = load_model(out, device=device)
    generated = generate_responses(tuned, tuned_tok, test_ex, options.template, options.max_new_tokens)
    atomic_write_json(out / RESPONSES_FILE, _responses_records(test_ex, generated))
    scores = score_responses(generated, [ex.output for ex in test_ex])
    if "forgetting" in summary:
        summary["forgetting"]["after"] = lm_val_loss(tuned, baseline_data)
    summary["best_val_loss"] = trained.best["val_loss"]
    summary["selected_by"] = options.select_by
    summary["best_epoch"] = trained.best["epoch"]
    summary["scores"] = scores
    summary["base_scores"] = base_scores
    d = asdict(options)
    d["lora"] = options.lora.to_dict()
    d["peft"] = asdict(options.peft)
    summary["options"] = d
    atomic_write_json(out / "results.json", summary)
    write_instruct_report(out, trained.history, summary, test_ex, generated)
    return InstructResult(out, scores, base_scores, trained.history, summary)
