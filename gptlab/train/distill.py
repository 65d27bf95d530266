"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student GPT trained on a teacher's
softened next-token distribution as well as on the data.

    loss = alpha * CE(student, data) + (1 - alpha) * T^2 * KL(p_teacher,T || p_student,T)

``alpha`` weighs the hard-label loss (the ordinary cross-entropy, with ``optim.label_smoothing``
if the config sets it); ``1 - alpha`` the soft term. p_x,T = softmax(logits_x / T): a temperature
T > 1 flattens both distributions so the teacher's "dark knowledge" (which wrong tokens it finds
plausible) carries weight; the T^2 factor keeps the soft term's gradients the same size as T
changes (they scale as 1/T^2). With alpha = 1 the soft term is multiplied by 0: the student's
updates are bit-for-bit those of ordinary training (tests/train/test_distill.py).

The KL is summed over the vocabulary and averaged over the positions whose target is not -100,
as the cross-entropy is. Only the first ``tokenizer.vocab_size`` logits take part: a model whose
embedding table is padded beyond the tokenizer keeps its extra rows out of the comparison.

Teacher distributions come from either
- the teacher itself, run on each batch (``top_k=0``, the default): the teacher is in eval mode
  (no dropout) under ``torch.no_grad``, and reads exactly the student's windows;
- precomputed top-K logits (``top_k=K``): before training the teacher reads the train split once
  in consecutive windows of its own block size, and RUN/teacher_topk/ keeps, per position, the K
  largest logits (float16) and their token ids. The teacher distribution is then the softmax over
  those K (renormalised: the mass outside them is dropped), against the student's full
  log-softmax at the same ids. The teacher's context for a position is its own window, not the
  student's: the usual price of offline distillation, paid once rather than per step.

Classifiers: ``gptlab finetune classify --teacher CLASSIFIER_RUN`` (or ``gptlab distill --teacher
CLASSIFIER_RUN --student-base RUN --data FILE``) fine-tunes a (smaller) base model into a classifier
with the same mixture over the K class logits: the teacher classifier reads the same padded texts
(``load_teacher_classifier``, ``classifier_distill_loss``); labels must match in name and order.

Teacher and student must share the tokenizer (the same ids meaning the same strings); anything
else is refused before training. The student is an ordinary run: RUN is written by
gptlab.train.trainer (checkpoints, metrics.jsonl, best/, report), with RUN/distill.json naming the
teacher and the settings, and loads, generates and evaluates like any run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gptlab.config import RunConfig
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json

DISTILL_FILE = "distill.json"
TOPK_DIR = "teacher_topk"
IGNORE_INDEX = -100
PRECOMPUTE_BATCH = 16  # teacher windows per forward when precomputing top-k


@dataclass(frozen=True)
class DistillOptions:
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the hard-label cross-entropy; 1 - alpha weighs the soft KL term
    top_k: int = 0  # 0: the teacher runs on every batch; K > 0: precomputed top-K logits

    def check(self) -> None:
        if not self.temperature > 0:
            raise GptlabError(f"--temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise GptlabError(
                f"--alpha must be in [0, 1] (the weight of the hard-label loss), got {self.alpha}"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise GptlabError(
                f"--top-k must be a non-negative integer (0: no precomputation), got {self.top_k}"
            )


# ---------------------------------------------------------------------------------------------
# the losses


def soft_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, targets: torch.Tensor
) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over the last dimension and
    averaged over the positions whose target is not -100. Logits (..., V), targets (...)."""
    t = temperature
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _masked_mean(kl, targets) * t * t


def topk_kl(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    targets: torch.Tensor,
) -> torch.Tensor:
    """As ``soft_kl`` with the teacher known only at its top-K ids (..., K): its distribution is
    the softmax over those K logits / T; the student's is its full softmax / T, read at the ids."""
    t = temperature
    log_q = F.log_softmax(student_logits.float() / t, dim=-1).gather(-1, teacher_ids.long())
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _masked_mean(kl, targets) * t * t


def _masked_mean(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    keep = (targets != IGNORE_INDEX).to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# the teacher


def same_tokenizer(teacher_tokenizer, student_tokenizer, teacher: str, student: str) -> None:
    """GptlabError unless the two tokenizers map the same ids to the same bytes (and specials)."""
    if teacher_tokenizer.to_dict() == student_tokenizer.to_dict():
        return
    tv, sv = teacher_tokenizer.vocab_size, student_tokenizer.vocab_size
    detail = f"vocab sizes {tv} and {sv}"
    if tv == sv:
        first = next(
            (i for i in range(tv) if teacher_tokenizer.token_bytes(i) != student_tokenizer.token_bytes(i)),
            None,
        )
        detail = f"same vocab size {tv}, " + (
            f"but id {first} is {teacher_tokenizer.token_bytes(first)!r} vs {student_tokenizer.token_bytes(first)!r}"
            if first is not None
            else "but different special tokens or settings"
        )
    raise GptlabError(
        f"the teacher {teacher} and the student's data ({student}) use different tokenizers ({detail}): "
        "distillation compares distributions over the same ids; prepare the student's data with the "
        "teacher's tokenizer (data.tokenizer=TEACHER/tokenizer.json), or leave data unset to use the "
        "teacher's own data"
    )


class TopKStore:
    """RUN/teacher_topk: the teacher's top-K logits (float16) and ids (int32) per train position."""

    def __init__(self, folder: Path) -> None:
        self.ids = np.load(folder / "ids.npy", mmap_mode="r")
        self.logits = np.load(folder / "logits.npy", mmap_mode="r")

    def lookup(self, starts: np.ndarray, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = np.asarray(starts)[:, None] + np.arange(length)[None, :]  # (B, T)
        ids = torch.from_numpy(np.ascontiguousarray(self.ids[pos])).to(device)
        logits = torch.from_numpy(np.ascontiguousarray(self.logits[pos])).to(device)
        return ids, logits


@torch.no_grad()
def precompute_topk(teacher, tokens: np.ndarray, k: int, vocab: int, folder: Path, device) -> None:
    """The teacher's top-``k`` logits at every position of ``tokens``, reading them in consecutive
    windows of its block size (the last window ends at the last token); written atomically."""
    n, block = len(tokens), teacher.config.block_size
    ids = np.zeros((n, k), dtype=np.int32)
    logits = np.zeros((n, k), dtype=np.float16)
    starts = list(range(0, max(1, n - block + 1), block))
    if n > block and starts[-1] + block < n:
        starts.append(n - block)  # the tail, overlapping the previous window
    length = min(block, n)
    for i in range(0, len(starts), PRECOMPUTE_BATCH):
        chunk = starts[i : i + PRECOMPUTE_BATCH]
        x = torch.from_numpy(np.stack([np.asarray(tokens[s : s + length], dtype=np.int64) for s in chunk]))
        out, _ = teacher(x.to(device))
        values, index = out[..., :vocab].float().topk(k, dim=-1)
        for row, s in enumerate(chunk):
            ids[s : s + length] = index[row].cpu().numpy()
            logits[s : s + length] = values[row].cpu().numpy()
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "ids.npy", ids)
    np.save(tmp / "logits.npy", logits)
    tmp.rename(folder)


class DistillObjective:
    """The trainer's loss for a distilled student (gptlab.train.trainer ``objective``):
    ``setup(run)`` once the run has its data and tokenizer, then ``(model, x, y, starts) -> loss``."""

    def __init__(self, teacher: str | Path, options: DistillOptions) -> None:
        options.check()
        self.teacher_path, self.options = str(teacher), options
        self.teacher = None
        self.store: TopKStore | None = None
        self.vocab = 0
        self.label_smoothing = 0.0

    def setup(self, run) -> None:
        from gptlab.run import Run

        teacher_run = Run.open(self.teacher_path)
        if teacher_run.kind == "classifier":
            raise GptlabError(
                f"{self.teacher_path} is a classifier run: distil it with `gptlab distill --classifier`"
            )
        same_tokenizer(teacher_run.tokenizer, run.tokenizer, self.teacher_path, str(run.run_dir / "data"))
        self.vocab = run.tokenizer.vocab_size
        self.label_smoothing = run.config.optim.label_smoothing
        if run.dp is not None:
            raise GptlabError("distillation does not run under DP-SGD: set dp.epsilon to 0")
        teacher, _ = teacher_run.load(device=str(run.device))
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        block = run.raw_model.config.block_size
        if self.options.top_k:
            if self.options.top_k > self.vocab:
                raise GptlabError(f"--top-k {self.options.top_k} exceeds the vocabulary ({self.vocab})")
            self.store = self._topk_store(teacher, run)
        elif block > teacher.config.block_size:
            raise GptlabError(
                f"the student's block_size {block} exceeds the teacher's {teacher.config.block_size}: the "
                "teacher cannot read the student's windows (lower model.block_size, or use --top-k)"
            )
        else:
            self.teacher = teacher
        if run.dist.is_main:
            atomic_write_json(run.run_dir / DISTILL_FILE, self.record())

    def record(self) -> dict[str, Any]:
        return {"teacher": str(Path(self.teacher_path).resolve()), **asdict(self.options)}

    def _topk_store(self, teacher, run) -> TopKStore:
        folder = run.run_dir / TOPK_DIR
        meta = {"teacher": self.record()["teacher"], "k": self.options.top_k, "tokens": len(run.train_data)}
        meta_path = folder / "meta.json"
        if not (meta_path.is_file() and read_json(meta_path, "top-k meta") == meta):
            if run.dist.is_main:
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
                precompute_topk(
                    teacher, run.train_data.tokens, self.options.top_k, self.vocab, folder, run.device
                )
                atomic_write_json(meta_path, meta)
            run.dist.barrier()
        return TopKStore(folder)

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, starts: np.ndarray) -> torch.Tensor:
        logits, hard = model(x, y, label_smoothing=self.label_smoothing)
        a, t, v = self.options.alpha, self.options.temperature, self.vocab
        if self.store is not None:
            ids, teacher_logits = self.store.lookup(starts, x.shape[1], x.device)
            soft = topk_kl(logits[..., :v], ids, teacher_logits, t, y)
        else:
            with torch.no_grad():
                teacher_logits, _ = self.teacher(x)
            soft = soft_kl(logits[..., :v], teacher_logits[..., :v], t, y)
        return a * hard + (1 - a) * soft


# ---------------------------------------------------------------------------------------------
# classifiers (gptlab.finetune.classify's ``--teacher``)


def load_teacher_classifier(path: str | Path, tokenizer, label_names: list[str], max_length: int, device):
    """The classifier run at ``path`` (its GPTClassifier, eval mode, frozen), checked against the
    student's tokenizer, labels (same names, same order) and text length."""
    from gptlab.run import Run

    run = Run.open(path)
    if run.kind != "classifier":
        raise GptlabError(
            f"--teacher {path} is a {run.kind} run: a classifier student needs a classifier teacher"
        )
    clf = run.load_classifier(device=str(device))
    same_tokenizer(clf.tokenizer, tokenizer, str(path), "the student's base model")
    if list(clf.label_names) != list(label_names):
        raise GptlabError(
            f"the teacher {path} has labels {clf.label_names}, the student's data {label_names}: give "
            "--labels in the teacher's order"
        )
    if max_length > clf.model.gpt.config.block_size:
        raise GptlabError(
            f"the student reads {max_length} tokens per text, more than the teacher's context "
            f"({clf.model.gpt.config.block_size}): lower --max-length"
        )
    clf.model.eval()
    for p in clf.model.parameters():
        p.requires_grad_(False)
    return clf.model


def classifier_distill_loss(hard_loss, teacher, temperature: float, alpha: float):
    """``batch -> (logits, alpha * hard + (1 - alpha) * T^2 KL(teacher_T || student_T))`` around
    ``hard_loss`` (batch -> (logits, cross-entropy)); batches are (idx, lengths, labels)."""

    def loss(batch):
        logits, hard = hard_loss(batch)
        with torch.no_grad():
            teacher_logits, _ = teacher(batch[0], batch[1])
        return logits, alpha * hard + (1 - alpha) * soft_kl(logits, teacher_logits, temperature, batch[2])

    return loss


def distill(
    teacher: str | Path,
    config: RunConfig,
    options: DistillOptions,
    resume: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
):
    """Train the student ``config`` describes (into ``config.train.out_dir``) on the teacher run's
    distributions; see the module doc. Without data in the config, the teacher's own prepared data
    is used. Returns the trainer's TrainResult."""
    from gptlab.run import Run
    from gptlab.train.trainer import train

    options.check()
    teacher_run = Run.open(teacher)  # fails early and clearly on a path that is not a run
    if not config.data.dir and not config.data.input:
        config.data.dir = str(teacher_run.require_data_dir())
    if resume:
        saved = Path(config.train.out_dir) / DISTILL_FILE
        if saved.is_file():
            before = read_json(saved, "distill settings")
            now = DistillObjective(teacher, options).record()
            if before != json.loads(json.dumps(now)):
                raise GptlabError(f"cannot resume: {saved} records other distillation settings ({before})")
    return train(config, resume=resume, on_step=on_step, objective=DistillObjective(teacher, options))
