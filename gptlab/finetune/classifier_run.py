"""The classifier run directory: its files, reading and checking classifier.json, loading a run as
a ready classifier, and writing one (what `gptlab finetune classify` saves at its best epoch).

    classifier.json        label names, pooling, max length, how it was trained, base model path
    head.safetensors       the head (full or partial fine-tune) ...
    model.json, model.safetensors, tokenizer.json   ... with the fine-tuned GPT, or
    adapter.safetensors    (LoRA or another --peft method) adapter + head only; the GPT is re-read
                           from the base model (gptlab.finetune.peft)
    test_split.jsonl       the test split (text, label), for `gptlab eval classify` and audits

(metrics.jsonl, results.json, metrics.png and report.html are written by the fine-tune:
gptlab.finetune.classify and gptlab.finetune.report.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptlab.data.tasks import ClassificationData, collate_classification
from gptlab.errors import GptlabError
from gptlab.finetune.peft import ADAPTER_FILE, load_peft, merge_peft, merges, save_peft
from gptlab.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    load_safetensors,
    read_json,
    save_safetensors,
)
from gptlab.model.heads import GPTClassifier
from gptlab.model.modes import resolve_device
from gptlab.rundir import load_model, save_model

CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_FORMAT = "gptlab-classifier"
CLASSIFIER_VERSION = 1
HEAD_FILE = "head.safetensors"
TEST_SPLIT_FILE = "test_split.jsonl"  # the held-out split, for `gptlab eval classify` and later audits


@dataclass
class LoadedClassifier:
    model: GPTClassifier
    tokenizer: Any
    label_names: list[str]
    max_length: int
    pad_id: int
    meta: dict

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer.encode_batch(list(texts))
        for text, ids in zip(texts, encoded):
            if not ids:
                raise GptlabError(f"text {text[:40]!r} encodes to no tokens")
        return [ids[: self.max_length] for ids in encoded]

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Class probabilities (N, K) for raw texts."""
        ids = self.encode(texts)
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(ids), batch_size):
            idx, lengths, _ = collate_classification([(x, 0) for x in ids[i : i + batch_size]], self.pad_id)
            out.append(self.model.predict_proba(idx.to(device), lengths.to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.label_names))

    def classify(self, texts: Sequence[str]) -> list[dict]:
        """One ``{"text", "label", "probability", "probabilities"}`` per text."""
        probs = self.predict_proba(texts)
        results = []
        for text, p in zip(texts, probs):
            best = int(p.argmax())
            results.append(
                {
                    "text": text,
                    "label": self.label_names[best],
                    "probability": float(p[best]),
                    "probabilities": dict(zip(self.label_names, map(float, p))),
                }
            )
        return results


def pad_id(tokenizer) -> int:
    """The id classifier batches are right-padded with: <|endoftext|> if the tokenizer has it, else 0
    (padding is never read: pooling stops at each text's length)."""
    eot = getattr(tokenizer, "eot_id", None)
    return int(eot) if eot is not None else 0


def read_classifier_json(run: Path) -> dict:
    """``run``'s classifier.json, checked: format, version, label names, pooling, max length."""
    path = run / CLASSIFIER_JSON
    if not path.is_file():
        raise GptlabError(
            f"{run} is not a classifier run (no {CLASSIFIER_JSON}); make one with `gptlab finetune classify`"
        )
    meta = read_json(path, "classifier file")
    if not isinstance(meta, dict) or meta.get("format") != CLASSIFIER_FORMAT:
        raise GptlabError(f'{path}: not a gptlab classifier file (expected "format": "{CLASSIFIER_FORMAT}")')
    if meta.get("version") != CLASSIFIER_VERSION:
        raise GptlabError(
            f"{path}: unsupported version {meta.get('version')!r} (expected {CLASSIFIER_VERSION})"
        )
    for key, kind in (("label_names", list), ("pooling", str), ("max_length", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise GptlabError(f"{path}: field {key!r} must be a {kind.__name__}")
    if meta["max_length"] < 1:
        raise GptlabError(
            f"{path}: field 'max_length' must be a positive number of tokens, got {meta['max_length']}"
        )
    names = meta["label_names"]
    if len(names) < 2 or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise GptlabError(f"{path}: field 'label_names' must list two or more distinct label names")
    return meta


def classifier_meta(
    label_names: list[str],
    pooling: str,
    max_length: int,
    trainable: str,
    lora: dict | None,
    base_model: str,
    columns: dict,
    peft: dict | None = None,
) -> dict:
    """classifier.json's content (the fine-tune adds ``best_epoch`` when it saves). ``peft``:
    ``{"method", "settings"}`` of a parameter-efficient fine-tune (``lora`` repeats LoRA's settings)."""
    return {
        "format": CLASSIFIER_FORMAT,
        "version": CLASSIFIER_VERSION,
        "label_names": label_names,
        "pooling": pooling,
        "max_length": max_length,
        "trainable": trainable,
        "lora": lora,
        "peft": peft,
        "base_model": base_model,
        "columns": columns,
    }


def load_classifier(run: str | Path, device: str = "cpu") -> LoadedClassifier:
    """A classifier run directory -> a ready-to-use classifier in eval mode (LoRA and IA3 merged;
    the other parameter-efficient methods stay as modules beside the base weights)."""
    run = Path(run)
    meta = read_classifier_json(run)
    adapted = bool(meta.get("lora") or meta.get("peft"))
    if adapted:
        base = Path(meta["base_model"])
        if not base.exists():
            raise GptlabError(
                f"{run} holds an adapter for the base model {base}, which is not there any more"
            )
        gpt, tokenizer = load_model(base, device=device)
    else:
        gpt, tokenizer = load_model(run, device=device)
    model = GPTClassifier(gpt, len(meta["label_names"]), pooling=meta["pooling"])
    if adapted:
        method = load_peft(model, run / ADAPTER_FILE)
        if merges(method):
            merge_peft(model, method)
    else:
        head = load_safetensors(run / HEAD_FILE)
        try:
            model.head.load_state_dict(head)
        except RuntimeError as e:
            raise GptlabError(f"{run / HEAD_FILE} does not fit the classifier: {e}") from None
    model.to(resolve_device(device)).eval()
    return LoadedClassifier(
        model, tokenizer, meta["label_names"], meta["max_length"], pad_id(tokenizer), meta
    )


def save_classifier(
    run: Path, model: GPTClassifier, tokenizer, meta: dict, peft: tuple[str, dict] | None
) -> None:
    """Write the classifier into ``run``: the adapter (``peft``: method and settings) or the GPT
    and the head, then classifier.json last (its presence is what makes ``run`` a classifier run)."""
    if peft is not None:
        save_peft(model, run / ADAPTER_FILE, *peft)
        atomic_write(run / "tokenizer.json", lambda tmp: tokenizer.save(tmp))
    else:
        save_model(run, model.gpt, tokenizer, extra={"finetune": "classify"})
        save_safetensors({k: v.detach() for k, v in model.head.state_dict().items()}, run / HEAD_FILE)
    atomic_write_json(run / CLASSIFIER_JSON, meta)


def write_test_split(run: Path, data: ClassificationData) -> None:
    """test_split.jsonl: one ``{"text", "label"}`` (the label's name) per line."""
    rows = zip(data.texts, data.labels)
    atomic_write_text(
        run / TEST_SPLIT_FILE,
        "".join(
            json.dumps({"text": t, "label": data.label_names[y]}, ensure_ascii=False) + "\n" for t, y in rows
        ),
    )


__all__ = [
    "ADAPTER_FILE",
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_JSON",
    "CLASSIFIER_VERSION",
    "HEAD_FILE",
    "TEST_SPLIT_FILE",
    "LoadedClassifier",
    "classifier_meta",
    "load_classifier",
    "pad_id",
    "read_classifier_json",
    "save_classifier",
    "write_test_split",
]
