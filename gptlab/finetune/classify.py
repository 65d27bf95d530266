"""Fine-tune a pretrained GPT into a text classifier (`gptlab finetune classify`).

The recipe (Radford et al. 2018; LLMs-from-scratch ch. 6): read a labelled file, split it
stratified into train/val/test, put a linear head on the last real token's hidden state
(gptlab.model.heads), train the head alone, the last N blocks, everything, or LoRA adapters, for a
few epochs, keep the checkpoint with the best val macro-F1, and report test metrics once at the
end, next to a prompting baseline (the same GPT, no training) and the forgetting measure.

The run directory's format (classifier.json, the weights, test_split.jsonl) and loading a run
are gptlab.finetune.classifier_run; the loop is gptlab.finetune.loop's; the report
gptlab.finetune.report's. This file writes metrics.jsonl (one record per epoch: train and val
metrics) and results.json (test metrics, baselines, forgetting, costs, and the test split's
error analysis: gptlab.eval.error_analysis).

Train metrics are taken from the batches as they train (in train mode, with dropout), as most
trainers print them; val and test metrics are full passes in eval mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
from gptlab.eval.error_analysis import error_analysis
from gptlab.finetune.anchor import make_penalty, with_penalty
from gptlab.finetune.classifier_run import (
    ADAPTER_FILE,
    HEAD_FILE,
    classifier_meta,
    load_classifier,
    pad_id,
    save_classifier,
    write_test_split,
)
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
from gptlab.finetune.continual import chain_record, check_continual, continual_option, resolve_start
from gptlab.finetune.loop import EpochRunner, adamw_update, dp_sgd_update
from gptlab.finetune.peft import PeftOptions, add_peft, keep_trainable, peft_option, resolve_peft
from gptlab.finetune.peft_virtual import virtual_token_count
from gptlab.finetune.report import write_classifier_report
from gptlab.io import atomic_write_json
from gptlab.model.heads import GPTClassifier
from gptlab.model.lora import count_trainable
from gptlab.model.modes import eval_mode, resolve_device
from gptlab.options import fraction, open_unit_interval, option, positive_float, positive_int
from gptlab.run import Run

PROMPTING_MAX_EXAMPLES = 300  # test texts scored by the prompting baseline (one forward each)
DP_GROUP = "differential privacy (DP-SGD, gptlab.train.dp)"  # the CLI's group of the DP flags
DISTILL_GROUP = "knowledge distillation (gptlab.train.distill)"


@dataclass
class ClassifyOptions:
    """Everything `finetune_classifier` needs; the CLI flags are built from these fields."""

    model: str | None = base_model_option()  # a gptlab run directory or a Hugging Face GPT-2 folder
    data: str = training_option("data")  # TSV / CSV / JSONL / JSON with a label and a text column
    out: str = training_option("out")
    text_column: str | int = option("text", "name or 0-based position")
    label_column: str | int = option("label", "name or 0-based position")
    labels: list[str] | None = option(None, "label names in order (others are an error)", nargs="+")
    header: bool | None = option(None, "first row names columns", no_help="no header row (TSV/CSV)")
    val_fraction: float = training_option("val_fraction", 0.1)
    test_fraction: float = training_option("test_fraction", 0.2)
    seed: int = training_option("seed", 0)
    balance: str = option("none", choices=("none", "undersample", "oversample"))  # training split only
    class_weights: bool = option(False, "weigh the loss by inverse class frequency")
    max_length: int | None = option(None, "tokens per text (default: the model's context)", type=positive_int)
    pooling: str = option("last", choices=("last", "mean"))
    trainable: str = option("all", "head | last:N (last N blocks + final norm + head) | all", metavar="WHAT")
    lora: LoraOptions = lora_option()
    peft: PeftOptions = peft_option()
    epochs: int = training_option("epochs", 3)
    batch_size: int = training_option("batch_size", 16)
    lr: float = training_option("lr", 3e-4)
    weight_decay: float = training_option("weight_decay", 0.01)
    warmup_fraction: float = 0.1
    grad_clip: float = training_option("grad_clip", 1.0)
    label_smoothing: float = training_option("label_smoothing", 0.0)
    max_minutes: float | None = training_option("max_minutes", None)
    device: str = training_option("device", "auto")
    prompting_shots: tuple[int, ...] = option(  # () for none
        (0, 4),
        "prompting baselines to report (k-shot, label words = label names); none to skip",
        nargs="*",
        metavar="K",
    )
    progress: bool = training_option("progress", True)
    after: str | None = continual_option("after", None)
    ewc: float | None = continual_option("ewc", None)
    l2_start: float | None = continual_option("l2_start", None)
    ewc_examples: int = continual_option("ewc_examples", 100)
    dp_epsilon: float | None = option(  # None: off
        None,
        "train with DP-SGD, noise calibrated to spend this epsilon over the run (default: off)",
        type=positive_float,
        metavar="EPS",
        group=DP_GROUP,
    )
    dp_delta: float | None = option(  # None: the largest power of ten below 1/N (at most 1e-5)
        None,
        "DP delta (default: the largest power of 10 below 1/N)",
        type=open_unit_interval,
        metavar="DELTA",
        group=DP_GROUP,
    )
    dp_max_grad_norm: float = option(
        1.0, "per-example gradient clip (DP-SGD)", type=positive_float, metavar="C", group=DP_GROUP
    )
    teacher: str | None = option(  # None: no distillation
        None, "a classifier run to distil (same labels, same tokenizer)", metavar="RUN", group=DISTILL_GROUP
    )
    distill_temperature: float = option(
        2.0, "softening temperature T of the KL term", type=positive_float, metavar="T", group=DISTILL_GROUP
    )
    distill_alpha: float = option(
        0.5,
        "weight of the hard-label loss (1 - A on the KL term)",
        type=fraction,
        metavar="A",
        group=DISTILL_GROUP,
    )

    def check(self) -> None:
        check_continual(self)
        resolve_peft(self.peft, self.lora)
        for name in ("epochs", "batch_size", "lr"):
            check_positive(name, getattr(self, name))
        check_positive("grad_clip", self.grad_clip, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_label_smoothing(self.label_smoothing)
        if self.dp_epsilon is not None and self.label_smoothing:
            raise GptlabError(
                "DP-SGD fine-tuning does not apply label smoothing: leave --label-smoothing at 0"
            )
        if self.max_length is not None:
            check_positive("max_length", self.max_length)
        if self.max_minutes is not None:
            check_positive("max_minutes", self.max_minutes)
        if self.dp_epsilon is not None and (self.ewc is not None or self.l2_start is not None):
            raise GptlabError("DP-SGD fine-tuning takes no --ewc/--l2-start penalty")
        if self.teacher is not None and self.dp_epsilon is not None:
            raise GptlabError("distillation (--teacher) does not run under DP-SGD: give one of them")
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


@dataclass
class Predictions:
    """A full pass of a classifier over a loader, in the loader's order."""

    gold: list[int]
    predicted: list[int]
    confidence: list[float]  # the probability of the predicted class
    lengths: list[int]  # tokens of each text the model read (after truncation)
    loss: float | None


@torch.no_grad()
def predict(model: GPTClassifier, loader: DataLoader) -> Predictions:
    """Predictions, probabilities and the mean loss of a full pass over ``loader`` in eval mode."""
    device = next(model.parameters()).device
    out = Predictions([], [], [], [], None)
    total, n = 0.0, 0
    with eval_mode(model):
        for idx, lengths, labels in loader:
            idx, lengths, labels = idx.to(device), lengths.to(device), labels.to(device)
            logits, loss = model(idx, lengths, labels)
            total += float(loss) * len(labels)
            n += len(labels)
            confidence, predicted = logits.float().softmax(-1).max(-1)
            out.gold += labels.tolist()
            out.predicted += predicted.tolist()
            out.confidence += confidence.tolist()
            out.lengths += lengths.tolist()
    out.loss = total / n if n else None
    return out


def evaluate_classifier(
    model: GPTClassifier, loader: DataLoader, label_names: list[str]
) -> ClassificationMetrics:
    """Loss and metrics of a full pass over ``loader`` in eval mode."""
    p = predict(model, loader)
    return classification_metrics(p.gold, p.predicted, label_names, loss=p.loss)


def analyse_errors(predictions: Predictions, texts: list[str], label_names: list[str]) -> dict:
    """gptlab.eval.error_analysis of ``predictions`` made on ``texts`` (the loader's order)."""
    p = predictions
    return error_analysis(texts, p.gold, p.predicted, p.confidence, p.lengths, label_names)


def evaluate_file(
    run: str | Path, data: str | Path, text_column=None, label_column=None, header=None, device="cpu"
) -> ClassificationMetrics:
    """Metrics of a classifier run on a labelled file (columns default to the run's training ones)."""
    return evaluate_file_with_errors(run, data, text_column, label_column, header, device)[0]


def evaluate_file_with_errors(
    run: str | Path, data: str | Path, text_column=None, label_column=None, header=None, device="cpu"
) -> tuple[ClassificationMetrics, dict]:
    """`evaluate_file`'s metrics and the error analysis (gptlab.eval.error_analysis) of the file."""
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
    p = predict(clf.model, loader)
    metrics = classification_metrics(p.gold, p.predicted, clf.label_names, loss=p.loss)
    return metrics, analyse_errors(p, labelled.texts, clf.label_names)


def _loader(dataset, batch_size: int, pad: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda batch: collate_classification(batch, pad),
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


class _TrainMetrics:
    """The train metrics of one epoch, gathered from its batches as they train."""

    def __init__(self, label_names: list[str]) -> None:
        self.label_names = label_names
        self.reset()

    def reset(self) -> None:
        self.y_true: list[int] = []
        self.y_pred: list[int] = []
        self.loss_sum = 0.0

    def add(self, batch, logits: torch.Tensor | None, loss: torch.Tensor) -> None:
        labels = batch[2]  # (B,)
        self.loss_sum += loss.item() * len(labels)
        self.y_true += labels.tolist()
        if logits is not None:  # None: an empty DP-SGD batch
            self.y_pred += logits.argmax(-1).tolist()  # logits (B, K)

    def metrics(self) -> ClassificationMetrics:
        loss = self.loss_sum / max(1, len(self.y_true))
        return classification_metrics(self.y_true, self.y_pred, self.label_names, loss=loss)


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

    start = resolve_start(options)
    gpt, tokenizer = Run.open(start.path).load(device=str(device))
    if options.dp_epsilon is not None:
        from gptlab.train.dp import check_dp_model

        check_dp_model(gpt.config)
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
        "base_model": str(Path(start.path).resolve()),
        "data": str(options.data),
        "splits": {"train": len(train_data), "val": len(val_data), "test": len(test_data)},
        "class_counts_train": dict(zip(data.label_names, train_data.counts())),
    }
    baseline_data = start.pretraining_data  # its val split measures forgetting
    if baseline_data is not None:
        summary["forgetting"] = {"before": lm_val_loss(gpt, baseline_data)}
    if options.prompting_shots:
        summary["prompting"] = _prompting_baselines(
            gpt, tokenizer, train_data, test_data, options.prompting_shots, options.seed
        )

    weights = class_weights(train_data) if options.class_weights else None
    model = GPTClassifier(gpt, data.num_classes, pooling=options.pooling, class_weights=weights)
    peft = resolve_peft(options.peft, options.lora)
    add_peft(model, *peft)
    model.set_trainable(options.trainable)
    keep_trainable(model, peft[0])
    max_length = min(max_length, gpt.config.block_size - virtual_token_count(gpt))  # prefix/prompt take room
    model.to(device)
    params = count_trainable(model)
    penalty, summary["penalty"] = make_penalty(options, start, model.gpt, device)

    datasets = {
        name: ClassificationDataset(part, tokenizer, max_length)
        for name, part in (("train", train_data), ("val", val_data), ("test", test_data))
    }
    summary["truncated_texts"] = {name: ds.truncated for name, ds in datasets.items()}
    write_test_split(out, test_data)
    train_loader = _loader(datasets["train"], options.batch_size, pad, True, options.seed)
    val_loader = _loader(datasets["val"], 32, pad, False, 0)
    test_loader = _loader(datasets["test"], 32, pad, False, 0)

    optimizer = make_optimizer(model, options.lr, options.weight_decay, device)
    total_steps = options.epochs * len(train_loader)
    dp_plan = None
    if options.dp_epsilon is None:
        loss = lambda batch: model(*batch, label_smoothing=options.label_smoothing)  # noqa: E731
        if options.teacher is not None:  # the teacher's softened probabilities join the loss
            from gptlab.train.distill import classifier_distill_loss, load_teacher_classifier

            teacher = load_teacher_classifier(
                options.teacher, tokenizer, data.label_names, max_length, device
            )
            loss = classifier_distill_loss(loss, teacher, options.distill_temperature, options.distill_alpha)
        update = adamw_update(model, optimizer, with_penalty(loss, penalty), options.grad_clip)

        def batches(step: int):
            return train_loader

    else:  # DP-SGD: Poisson batches, as many steps per epoch as without
        from gptlab.train.dp import ClassifierSampleLoss, DPPlan, PoissonSampler, classifier_sample_loss

        dp_plan = DPPlan.make(
            options.dp_epsilon,
            options.dp_max_grad_norm,
            len(datasets["train"]),
            options.batch_size,
            total_steps,
            options.dp_delta,
            unit="one text of the training split",
        )
        sampler = PoissonSampler(len(datasets["train"]), dp_plan.sample_rate, options.seed)
        update = dp_sgd_update(
            ClassifierSampleLoss(model), classifier_sample_loss, dp_plan, optimizer, options.batch_size
        )

        def batches(step: int):
            return _dp_batches(datasets["train"], sampler, step, len(train_loader), pad)

    meta = classifier_meta(
        label_names=data.label_names,
        pooling=options.pooling,
        max_length=max_length,
        trainable=options.trainable,
        lora=peft[1] if peft[0] == "lora" else None,
        base_model=summary["base_model"],
        columns={"text": options.text_column, "label": options.label_column, "header": options.header},
        peft={"method": peft[0], "settings": peft[1]} if peft[0] else None,
    )
    step = {"finetune": "classify", "run": str(out), "data": str(options.data), "columns": meta["columns"]}
    meta |= chain_record(start, step)
    train_metrics = _TrainMetrics(data.label_names)

    def end_epoch() -> dict:
        train_m = train_metrics.metrics()
        train_metrics.reset()
        return {
            "train": _brief(train_m),
            "val": _brief(evaluate_classifier(model, val_loader, data.label_names)),
        }

    trained = EpochRunner(
        model=model,
        options=options,
        batches=batches,
        update=update,
        schedule=StepSchedule(optimizer, options.lr, total_steps, options.warmup_fraction),
        device=device,
        on_batch=train_metrics.add,
        end_epoch=end_epoch,
        score=lambda record: (record["val"]["macro_f1"], -(record["val"]["loss"] or 0.0)),
        save=lambda epoch: save_classifier(
            out, model, tokenizer, meta | {"best_epoch": epoch}, peft if peft[0] else None
        ),
        started=started,
        on_epoch=on_epoch,
    ).run(out / "metrics.jsonl")

    summary["train_seconds"] = round(time.time() - started, 2)
    summary["stopped_early"] = trained.stopped_early
    summary["costs"] = training_costs(params, trained.timer) | {
        "checkpoint_mb": file_size_mb(*(out / f for f in (ADAPTER_FILE, HEAD_FILE, "model.safetensors"))),
    }
    if device.type == "cuda":
        summary["costs"]["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20

    best = load_classifier(out, device=str(device))
    test_predictions = predict(best.model, test_loader)
    test_m = classification_metrics(
        test_predictions.gold, test_predictions.predicted, data.label_names, loss=test_predictions.loss
    )
    summary["error_analysis"] = analyse_errors(test_predictions, test_data.texts, data.label_names)
    if "forgetting" in summary:
        summary["forgetting"]["after"] = lm_val_loss(best.model.gpt, baseline_data)
    best_epoch = trained.best["epoch"]
    summary["best_epoch"] = best_epoch
    summary["test"] = test_m.to_dict()
    if dp_plan is not None:  # all the steps taken: the best epoch's weights are one of their outputs
        summary["privacy"] = dp_plan.report(trained.steps)
    summary["options"] = _options_dict(options)
    atomic_write_json(out / "results.json", summary)
    write_classifier_report(out, trained.history, summary, test_m)
    return ClassifyResult(out, test_m, best_epoch, trained.history, summary)


def _dp_batches(dataset, sampler, first_step: int, steps: int, pad: int):
    """One epoch of DP-SGD batches: ``steps`` Poisson samples (sizes vary; an empty one is a step
    too: the noise alone), drawn as a function of the global step."""
    for step in range(first_step, first_step + steps):
        items = [dataset[i] for i in sampler.indices(step).tolist()]
        if items:
            yield collate_classification(items, pad)
        else:
            empty = torch.empty(0, 1, dtype=torch.long)
            yield empty, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)


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
    d["peft"] = asdict(options.peft)
    d["prompting_shots"] = list(options.prompting_shots)
    return d


__all__ = [
    "ClassifyOptions",
    "ClassifyResult",
    "Predictions",
    "analyse_errors",
    "evaluate_classifier",
    "evaluate_file",
    "evaluate_file_with_errors",
    "predict",
    "finetune_classifier",
]
