"""Stage ``pretrain``: a tokenizer and a GPT trained with the ordinary train API (or an existing
run, ``[pretrain] model = RUN`` / ``--model RUN``), then measured on the val split of its data.

The measurement: the first ``eval_tokens`` val tokens in disjoint windows of ``block_size``; per
token, the model's negative log-likelihood and the unigram baseline's (train-split token
frequencies, add-one smoothed: the model that ignores context). Reported: val loss, perplexity,
bits per byte (total NLL / ln 2 / UTF-8 bytes of the scored tokens), the unigram's loss and the
model's loss minus the unigram's with a 95% interval over windows (the windows are the units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

RUN_DIR = "run"
LOSS_FIGURE = "loss.png"


@dataclass
class PretrainSection:
    config: str = "tiny-cpu"  # a `gptlab train` preset or TOML file
    set: list[str] = field(default_factory=list)  # key=value overrides on it (train.max_steps=300)
    model: str = ""  # an existing run to study instead of training one (--model)
    eval_tokens: int = 20_000  # val tokens measured (the first ones)


def run(ctx: StageContext) -> dict:
    from gptlab.run import Run

    section: PretrainSection = ctx.section
    if section.eval_tokens < 1:
        raise GptlabError(f"pretrain.eval_tokens must be at least 1, got {section.eval_tokens}")
    if section.model:
        run_path, trained = Path(section.model).resolve(), None
    else:
        run_path, trained = ctx.dir / RUN_DIR, _train(ctx, section)
    run = Run.open(run_path)
    history = _history(run_path)
    if history:
        from gptlab.io import atomic_write_bytes
        from gptlab.report import plot_losses

        atomic_write_bytes(ctx.dir / LOSS_FIGURE, plot_losses(history, title="pretraining loss"))
    model, tokenizer = run.load(device=ctx.config.study.device)
    cfg = run.config
    result = {
        "run": str(run_path) if section.model else f"pretrain/{RUN_DIR}",
        "external": bool(section.model),
        "kind": run.kind,
        "n_params": model.num_params(),
        "model": {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")}
        | {k: getattr(cfg, k) for k in ("pos_encoding", "activation", "norm", "norm_position")},
        "train": trained,
        "figure": LOSS_FIGURE if history else None,
        "eval": _measure(model, tokenizer, run, section.eval_tokens) if run.has_split("val") else None,
    }
    return result


def _train(ctx: StageContext, section: PretrainSection) -> dict:
    from gptlab.config import check_values, load_config
    from gptlab.train import train

    config = load_config(section.config, section.set)
    config.train.out_dir = str(ctx.dir / RUN_DIR)
    config.train.progress = ctx.progress
    check_values(config)
    result = train(config)
    if result.stop_reason in ("interrupted", "terminated"):
        raise KeyboardInterrupt  # the stage is lost; the study's rerun trains it again
    seen = [r["tokens_seen"] for r in result.history if "tokens_seen" in r]
    return {
        "config": section.config,
        "overrides": list(section.set),
        "steps": result.step,
        "stop_reason": result.stop_reason,
        "tokens_seen": seen[-1] if seen else None,
        "seed": config.train.seed,
        "elapsed_s": result.elapsed_s,
        "final_val_loss": result.final_val_loss,
    }


def _history(run_path: Path) -> list[dict]:
    from gptlab.train import read_metrics

    try:
        return read_metrics(run_path)
    except (GptlabError, OSError):  # a converted model has no training history
        return []


def window_nll(model, tokens: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(targets, per-token NLL) of each disjoint window of ``block_size`` over ``tokens`` (the
    windows are the units the study's intervals resample)."""
    import torch

    block = model.config.block_size
    out = []
    with torch.no_grad():
        for s in range(0, max(len(tokens) - 1, 0), block):
            chunk = torch.from_numpy(np.asarray(tokens[s : s + block + 1], dtype=np.int64))
            if len(chunk) < 2:
                continue
            x, y = chunk[:-1][None], chunk[1:][None]
            logits, _ = model(x)
            nll = torch.nn.functional.cross_entropy(logits[0].float(), y[0], reduction="none")
            out.append((y[0].numpy(), nll.numpy().astype(np.float64)))
    return out


def _measure(model, tokenizer, run, eval_tokens: int) -> dict:
    """Per-window mean NLL of the model and of the unigram baseline on the first val tokens."""
    from gptlab.data.shards import TokenDataset

    train, val = TokenDataset(run.data_dir, "train"), TokenDataset(run.data_dir, "val")
    counts = np.bincount(np.asarray(train.tokens), minlength=train.vocab_size).astype(np.float64) + 1.0
    unigram_nll = -np.log(counts / counts.sum())
    tokens = np.asarray(val.tokens[: eval_tokens + 1], dtype=np.int64)
    windows = window_nll(model, tokens)
    model_nll = [nll for _, nll in windows]
    base_nll = [unigram_nll[y] for y, _ in windows]
    if not model_nll:
        raise GptlabError(f"{run.data_dir}: the val split has fewer than 2 tokens to measure")
    scored = np.concatenate(model_nll)
    targets = tokens[1 : 1 + len(scored)]
    n_bytes = len(tokenizer.decode_bytes(targets.tolist()))
    loss = float(scored.mean())
    base = float(np.concatenate(base_nll).mean())
    excess = [float(m.mean() - b.mean()) for m, b in zip(model_nll, base_nll)]  # < 0: the model is better
    diff, interval = findings.mean_interval(excess)
    return {
        "tokens": len(scored),
        "windows": len(model_nll),
        "bytes": n_bytes,
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "bits_per_byte": float(scored.sum() / math.log(2) / n_bytes) if n_bytes else None,
        "unigram_loss": base,
        "unigram_perplexity": math.exp(base),
        "minus_unigram": diff,
        "minus_unigram_ci95": list(interval) if interval else None,
        "window_losses": [float(m.mean()) for m in model_nll],  # per window: what `study compare` compares
    }


def report(result: dict, stage_dir: Path) -> Section:
    r = result
    section = Section("Pretraining")
    section.method = [("model", r["run"]), ("kind", r["kind"]), ("parameters", r["n_params"])]
    section.method += [(k, v) for k, v in r["model"].items()]
    if r["train"]:
        t = r["train"]
        section.method += [
            (
                "training config",
                t["config"] + (" with " + ", ".join(t["overrides"]) if t["overrides"] else ""),
            ),
            ("seed", t["seed"]),
            ("steps", t["steps"]),
            ("tokens seen", t["tokens_seen"]),
            ("training time (s)", t["elapsed_s"]),
        ]
    if r["figure"]:
        section.figures.append((r["figure"], "train (batch) and val loss over steps"))
    e = r["eval"]
    if e is None:
        section.notes.append("The run has no val split to measure (a converted model): no perplexity.")
        return section
    section.tables.append(
        Table(
            f"Validation: the first {e['tokens']} val tokens in {e['windows']} windows ({e['bytes']} bytes)",
            ["model", "loss (nats/token)", "perplexity", "bits/byte"],
            [
                ["GPT", e["val_loss"], e["val_perplexity"], e["bits_per_byte"]],
                ["unigram baseline", e["unigram_loss"], e["unigram_perplexity"], None],
            ],
        )
    )
    section.findings.append(
        findings.difference(
            "val loss (per-window mean)",
            "The GPT",
            "the unigram baseline",
            e["minus_unigram"],
            e["minus_unigram_ci95"],
            "nats/token",
        )
    )
    return section


STAGE = Stage("pretrain", "Pretraining", PretrainSection, run, report)
