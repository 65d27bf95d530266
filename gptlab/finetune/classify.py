"""Fine-tune a pretrained GPT into a text classifier (`gptlab finetune classify`).

The recipe (Radford et al. 2018; LLMs-from-scratch ch. 6): read a labelled file, split it
stratified into train/val/test, put a linear head on the last real token's hidden state
(gptlab.model.heads), train the head alone, the last N blocks, everything, or LoRA adapters, for a
few epochs, keep the checkpoint with the best val macro-F1, and report test metrics once at the
end, next to a prompting baseline (the same GPT, no training) and the forgetting measure.

A classifier run directory:

    classifier.json        label names, pooling, max length, how it was trained, base model path
    head.safetensors       the head (full or partial fine-tune) ...
    model.json, model.safetensors, tokenizer.json   ... with the fine-tuned GPT, or
    adapter.safetensors    (LoRA) adapters + head only; the GPT is re-read from the base model
    metrics.jsonl          one record per epoch: train and val metrics
    results.json           test metrics, baselines, forgetting, costs
    test_split.jsonl       the test split (text, label), for `gptlab eval classify` and audits
    metrics.png, report.html

Train metrics are taken from the batches as they train (in train mode, with dropout), as most
trainers print them; val and test metrics are full passes in eval mode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gptlab.data.tasks import (
    ClassificationData,
    ClassificationDataset,
    balance,
    class_weights,
    collate_classification,
    load_classification,
    stratified_split,
)
from gptlab.errors import GptlabError
from gptlab.eval.classification import ClassificationMetrics, classification_metrics
from gptlab.finetune.classifier_run import (
    ADAPTER_FILE,
    CLASSIFIER_FORMAT,
    CLASSIFIER_JSON,
    CLASSIFIER_VERSION,
    HEAD_FILE,
    TEST_SPLIT_FILE,
    load_classifier,
    pad_id,
)
from gptlab.finetune.common import (
    LoraOptions,
    StepSchedule,
    StepTimer,
    add_lora,
    check_positive,
    file_size_mb,
    lm_val_loss,
    make_optimizer,
    optimizer_step,
    training_costs,
)
from gptlab.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    save_safetensors,
)
from gptlab.model.heads import GPTClassifier
from gptlab.model.lora import count_trainable, save_adapter
from gptlab.model.modes import eval_mode, resolve_device
from gptlab.run import Run
from gptlab.rundir import load_model, save_model

PROMPTING_MAX_EXAMPLES = 300  # test texts scored by the prompting baseline (one forward each)


@dataclass
class ClassifyOptions:
    """Everything `finetune_classifier` needs; the CLI flags map one to one."""

    model: str  # base model: a gptlab run directory or a Hugging Face GPT-2 folder
    data: str  # TSV / CSV / JSONL / JSON with a label and a text column
    out: str
    text_column: str | int = "text"
    label_column: str | int = "label"
    labels: list[str] | None = None  # fixes the label names and their order
    header: bool | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    balance: str = "none"  # none | undersample | oversample (training split only)
    class_weights: bool = False
    max_length: int | None = None  # tokens per text (default: the model's context)
    pooling: str = "last"
    trainable: str = "all"  # head | last:N | all
    lora: LoraOptions = field(default_factory=LoraOptions)
    epochs: int = 3
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    max_minutes: float | None = None
    device: str = "auto"
    prompting_shots: tuple[int, ...] = (0, 4)  # prompting baselines to report; () for none
    progress: bool = True
    dp_epsilon: float | None = None  # DP-SGD to this epsilon (gptlab.train.dp); None: off
    dp_delta: float | None = None  # None: the largest power of ten below 1/N (at most 1e-5)
    dp_max_grad_norm: float = 1.0  # per-example gradient clip C (DP-SGD only)

    def check(self) -> None:
        for name in ("epochs", "batch_size", "lr"):
            check_positive(name, getattr(self, name))
        check_positive("grad_clip", self.grad_clip, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.max_length is not None:
            check_positive("max_length", self.max_length)
        if self.max_minutes is not None:
            check_positive("max_minutes", self.max_minutes)
        if self.dp_epsilon is not None:
            check_positive("dp_epsilon", self.dp_epsilon)
            check_positive("dp_max_grad_norm", self.dp_max_grad_norm)


@dataclass
class ClassifyResult:
    out_dir: Path
    test: ClassificationMetrics
    best_epoch: int
    history: list[dict]
    summary: dict[str, Any]


# --- loading and using a classifier run ---------------------------------------------------------


@torch.no_grad()
def evaluate_classifier(
    model: GPTClassifier, loader: DataLoader, label_names: list[str]
) -> ClassificationMetrics:
    """Loss and metrics of a full pass over ``loader`` in eval mode."""
    device = next(model.parameters()).device
    y_true, y_pred, total, n = [], [], 0.0, 0
    with eval_mode(model):
        for idx, lengths, labels in loader:
            idx, lengths, labels = idx.to(device), lengths.to(device), labels.to(device)
            logits, loss = model(idx, lengths, labels)
            total += float(loss) * len(labels)
            n += len(labels)
            y_true += labels.tolist()
            y_pred += logits.argmax(-1).tolist()
    return classification_metrics(y_true, y_pred, label_names, loss=total / n if n else None)


def evaluate_file(
    run: str | Path, data: str | Path, text_column=None, label_column=None, header=None, device="cpu"
) -> ClassificationMetrics:
    """Metrics of a classifier run on a labelled file (columns default to the run's training ones)."""
    clf = load_classifier(run, device=device)
    cols = clf.meta.get("columns", {})
    is_json = Path(data).suffix.lower() in (".json", ".jsonl", ".ndjson")
    # a JSON file names its fields; positions (headerless TSV training data) mean "text"/"label" there
    text_default = cols.get("text", "text")
    label_default = cols.get("label", "label")
    if is_json:
        text_default = text_default if isinstance(text_default, str) else "text"
        label_default = label_default if isinstance(label_default, str) else "label"
    labelled = load_classification(
        data,
        text_column=text_default if text_column is None else text_column,
        label_column=label_default if label_column is None else label_column,
        labels=clf.label_names,
        header=cols.get("header") if header is None else header,
    )
    loader = _loader(ClassificationDataset(labelled, clf.tokenizer, clf.max_length), 32, clf.pad_id, False, 0)
    return evaluate_classifier(clf.model, loader, clf.label_names)


def _loader(dataset, batch_size: int, pad_id: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda batch: collate_classification(batch, pad_id),
    )


# --- training -----------------------------------------------------------------------------------


def _prompting_baselines(
    gpt, tokenizer, train: ClassificationData, test: ClassificationData, shots, seed
) -> dict:
    """Accuracy of the untrained GPT classifying by prompting, k shots from the training split."""
    from gptlab.eval.prompting import classify_by_prompting, select_shots

    n = min(len(test), PROMPTING_MAX_EXAMPLES)
    out = {}
    for k in shots:
        chosen = select_shots(train.texts, train.labels, train.label_names, k, seed=seed)
        try:
            result = classify_by_prompting(
                gpt, tokenizer, test.texts[:n], test.label_names, labels=test.labels[:n], shots=chosen
            )
        except GptlabError as e:  # e.g. a char tokenizer that cannot spell the prompt: report, go on
            out[f"{k}-shot"] = {"accuracy": None, "examples": 0, "error": str(e)}
            continue
        out[f"{k}-shot"] = {"accuracy": result.accuracy, "examples": n}
    return out


def _save(run: Path, model: GPTClassifier, tokenizer, meta: dict, lora: bool) -> None:
    if lora:
        save_adapter(model, run / ADAPTER_FILE)
        atomic_write(run / "tokenizer.json", lambda tmp: tokenizer.save(tmp))
    else:
        save_model(run, model.gpt, tokenizer, extra={"finetune": "classify"})
        save_safetensors({k: v.detach() for k, v in model.head.state_dict().items()}, run / HEAD_FILE)
    atomic_write_json(run / CLASSIFIER_JSON, meta)


def _write_split(path: Path, data: ClassificationData) -> None:
    rows = zip(data.texts, data.labels)
    atomic_write_text(
        path,
        "".join(
            json.dumps({"text": t, "label": data.label_names[y]}, ensure_ascii=False) + "\n" for t, y in rows
        ),
    )


def _is_better(val: ClassificationMetrics, best: tuple[float, float] | None) -> bool:
    score = (val.macro_f1, -(val.loss or 0.0))
    return best is None or score > best


def finetune_classifier(
    options: ClassifyOptions, on_epoch: Callable[[dict], None] | None = None
) -> ClassifyResult:
    """Train a classifier per ``options``; write the run directory; return test metrics."""
    options.check()
    torch.manual_seed(options.seed)
    device = resolve_device(options.device)
    out = Path(options.out)  # claimed by the caller (gptlab.run.Run.create)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    gpt, tokenizer = load_model(options.model, device=device)
    max_length = min(options.max_length or gpt.config.block_size, gpt.config.block_size)
    data = load_classification(
        options.data, options.text_column, options.label_column, options.labels, options.header
    )
    train_data, val_data, test_data = stratified_split(
        data, options.val_fraction, options.test_fraction, options.seed
    )
    if len(val_data) == 0 or len(test_data) == 0:
        raise GptlabError(
            f"{options.data}: too few examples ({len(data)}) for a val and a test split; "
            "raise --val-fraction/--test-fraction or give more data"
        )
    train_data = balance(train_data, options.balance, options.seed)
    pad = pad_id(tokenizer)

    summary: dict[str, Any] = {
        "base_model": str(Path(options.model).resolve()),
        "data": str(options.data),
        "splits": {"train": len(train_data), "val": len(val_data), "test": len(test_data)},
        "class_counts_train": dict(zip(data.label_names, train_data.counts())),
    }
    base = Run.open(options.model)  # the val split of its pretraining data measures forgetting
    baseline_data = base.data_dir if base.has_split("val") else None
    if baseline_data is not None:
        summary["forgetting"] = {"before": lm_val_loss(gpt, baseline_data)}
    if options.prompting_shots:
        summary["prompting"] = _prompting_baselines(
            gpt, tokenizer, train_data, test_data, options.prompting_shots, options.seed
        )

    weights = class_weights(train_data) if options.class_weights else None
    model = GPTClassifier(gpt, data.num_classes, pooling=options.pooling, class_weights=weights)
    add_lora(model.gpt, options.lora)
    model.set_trainable(options.trainable)
    model.to(device)
    params = count_trainable(model)

    datasets = {
        name: ClassificationDataset(part, tokenizer, max_length)
        for name, part in (("train", train_data), ("val", val_data), ("test", test_data))
    }
    summary["truncated_texts"] = {name: ds.truncated for name, ds in datasets.items()}
    _write_split(out / TEST_SPLIT_FILE, test_data)
    train_loader = _loader(datasets["train"], options.batch_size, pad, True, options.seed)
    val_loader = _loader(datasets["val"], 32, pad, False, 0)
    test_loader = _loader(datasets["test"], 32, pad, False, 0)

    optimizer = make_optimizer(model, options.lr, options.weight_decay, device)
    total_steps = options.epochs * len(train_loader)
    dp_plan = None
    if options.dp_epsilon is not None:  # DP-SGD: Poisson batches, as many steps per epoch as before
        from gptlab.train.dp import DPPlan, PoissonSampler

        dp_plan = DPPlan.make(
            options.dp_epsilon,
            options.dp_max_grad_norm,
            len(datasets["train"]),
            options.batch_size,
            total_steps,
            options.dp_delta,
            unit="one text of the training split",
        )
        dp_sampler = PoissonSampler(len(datasets["train"]), dp_plan.sample_rate, options.seed)
    schedule = StepSchedule(optimizer, options.lr, total_steps, options.warmup_fraction)
    meta = {
        "format": CLASSIFIER_FORMAT,
        "version": CLASSIFIER_VERSION,
        "label_names": data.label_names,
        "pooling": options.pooling,
        "max_length": max_length,
        "trainable": options.trainable,
        "lora": options.lora.to_dict() if options.lora.enabled else None,
        "base_model": summary["base_model"],
        "columns": {"text": options.text_column, "label": options.label_column, "header": options.header},
    }

    history: list[dict] = []
    metrics_file = (out / "metrics.jsonl").open("w", encoding="utf-8")
    timer = StepTimer()
    best_score, best_epoch, step = None, 0, 0
    deadline = started + options.max_minutes * 60 if options.max_minutes else None
    stopped_early = False
    try:
        for epoch in range(1, options.epochs + 1):
            model.train()
            y_true, y_pred, loss_sum = [], [], 0.0
            if dp_plan is None:
                batches = _progress(train_loader, epoch, options)
            else:
                dp_batches = _dp_batches(datasets["train"], dp_sampler, step, len(train_loader), pad)
                batches = _progress(dp_batches, epoch, options)
            for idx, lengths, labels in batches:
                timer.start()
                schedule.set(step)
                idx, lengths, labels = idx.to(device), lengths.to(device), labels.to(device)
                if dp_plan is None:
                    logits, loss = model(idx, lengths, labels)
                    optimizer_step(model, optimizer, loss, options.grad_clip)
                else:
                    logits, loss = _dp_step(
                        model, optimizer, dp_plan, idx, lengths, labels, options.batch_size
                    )
                timer.stop()
                step += 1
                loss_sum += loss.item() * len(labels)
                y_true += labels.tolist()
                y_pred += logits.argmax(-1).tolist()
                if hasattr(batches, "set_postfix"):
                    batches.set_postfix(loss=f"{float(loss):.4f}")
                if deadline and time.time() > deadline:
                    stopped_early = True
                    break
            train_m = classification_metrics(
                y_true, y_pred, data.label_names, loss=loss_sum / max(1, len(y_true))
            )
            val_m = evaluate_classifier(model, val_loader, data.label_names)
            record = {
                "epoch": epoch,
                "step": step,
                "seconds": round(time.time() - started, 2),
                "train": _brief(train_m),
                "val": _brief(val_m),
            }
            if _is_better(val_m, best_score):
                best_score, best_epoch = (val_m.macro_f1, -(val_m.loss or 0.0)), epoch
                _save(out, model, tokenizer, meta | {"best_epoch": epoch}, options.lora.enabled)
                record["best"] = True
            history.append(record)
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            if on_epoch:
                on_epoch(record)
            if stopped_early:
                break
    finally:
        metrics_file.close()

    summary["train_seconds"] = round(time.time() - started, 2)
    summary["stopped_early"] = stopped_early
    summary["costs"] = training_costs(params, timer) | {
        "checkpoint_mb": file_size_mb(*(out / f for f in (ADAPTER_FILE, HEAD_FILE, "model.safetensors"))),
    }
    if device.type == "cuda":
        summary["costs"]["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    best = load_classifier(out, device=str(device))
    test_m = evaluate_classifier(best.model, test_loader, data.label_names)
    if "forgetting" in summary:
        summary["forgetting"]["after"] = lm_val_loss(best.model.gpt, baseline_data)
    summary["best_epoch"] = best_epoch
    summary["test"] = test_m.to_dict()
    if dp_plan is not None:  # all the steps taken: the best epoch's weights are one of their outputs
        summary["privacy"] = dp_plan.report(step)
    summary["options"] = _options_dict(options)
    atomic_write_json(out / "results.json", summary)
    _write_report(out, history, summary, test_m)
    return ClassifyResult(out, test_m, best_epoch, history, summary)


def _dp_batches(dataset, sampler, first_step: int, steps: int, pad_id: int):
    """One epoch of DP-SGD batches: ``steps`` Poisson samples (sizes vary; an empty one is a step
    too: the noise alone), drawn as a function of the global step."""
    for step in range(first_step, first_step + steps):
        items = [dataset[i] for i in sampler.indices(step).tolist()]
        if items:
            yield collate_classification(items, pad_id)
        else:
            empty = torch.empty(0, 1, dtype=torch.long)
            yield empty, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)


def _dp_step(model, optimizer, plan, idx, lengths, labels, chunk_size: int):
    """One DP-SGD step (gptlab.train.dp): private gradient into .grad, then AdamW. The usual
    global-norm clip is not applied: per-example clipping bounds the update already. Returns the
    batch's logits (B, K) and mean loss, for the train metrics (which are not private)."""
    from gptlab.train.dp import ClassifierSampleLoss, classifier_sample_loss, dp_sgd_gradients, set_gradients

    wrapper = ClassifierSampleLoss(model)
    grads, stats = dp_sgd_gradients(
        wrapper,
        classifier_sample_loss,
        (idx, lengths, labels),
        plan.max_grad_norm,
        plan.noise_multiplier,
        plan.expected_batch_size,
        chunk_size,
    )
    optimizer.zero_grad(set_to_none=True)
    set_gradients(wrapper, grads)
    optimizer.step()
    logits = stats.aux if stats.aux is not None else torch.empty(0, model.num_classes)
    return logits, torch.tensor(stats.loss_sum / max(1, stats.batch_size))


def _brief(m: ClassificationMetrics) -> dict:
    """One split's epoch record: loss, accuracy, macro-F1, per-class P/R/F1, confusion matrix."""
    per_class = {}
    for name, p, r, f in zip(m.label_names, m.precision, m.recall, m.f1):
        per_class |= {f"precision_{name}": p, f"recall_{name}": r, f"f1_{name}": f}
    return (
        {"loss": m.loss, "accuracy": m.accuracy, "macro_f1": m.macro_f1}
        | per_class
        | {"confusion": m.confusion}
    )


def _options_dict(options: ClassifyOptions) -> dict:
    d = asdict(options)
    d["lora"] = options.lora.to_dict()
    d["prompting_shots"] = list(options.prompting_shots)
    return d


def _progress(loader, epoch: int, options: ClassifyOptions):
    if not options.progress:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch}/{options.epochs}", leave=False, dynamic_ncols=True)


def _write_report(out: Path, history: list[dict], summary: dict, test: ClassificationMetrics) -> None:
    from gptlab.report import html_page, image, table

    png = plot_classifier_history(history)
    (out / "metrics.png").write_bytes(png)
    rows: list[tuple[str, Any]] = [
        ("test accuracy", test.accuracy),
        ("test macro F1", test.macro_f1),
        ("best epoch", summary["best_epoch"]),
        (
            "trainable params",
            f"{summary['costs']['trainable_params']:,} ({summary['costs']['trainable_percent']:.2f}%)",
        ),
        ("train seconds", summary["train_seconds"]),
    ]
    if summary.get("privacy"):
        from gptlab.train.dp import format_privacy

        rows.append(("differential privacy", format_privacy(summary["privacy"])))
    for name, r in summary.get("prompting", {}).items():
        value = r["accuracy"] if r["accuracy"] is not None else r.get("error")
        rows.append((f"prompting baseline, {name} (first {r['examples']} test texts)", value))
    forgetting = summary.get("forgetting") or {}
    if forgetting.get("before") and forgetting.get("after"):
        rows.append(("pretraining val perplexity before", forgetting["before"]["perplexity"]))
        rows.append(("pretraining val perplexity after", forgetting["after"]["perplexity"]))
    body = table(rows) + "<h2>Test set</h2><pre>" + _escape(test.format()) + "</pre>" + image(png, "metrics")
    (out / "report.html").write_text(html_page("Classifier fine-tuning", body), encoding="utf-8")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def plot_classifier_history(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, train vs val, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax1.plot(epochs, [r[split]["loss"] for r in history], style, label=split)
        ax2.plot(epochs, [r[split]["accuracy"] for r in history], style, label=split)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


__all__ = [
    "ClassifyOptions",
    "ClassifyResult",
    "evaluate_classifier",
    "evaluate_file",
    "finetune_classifier",
]
