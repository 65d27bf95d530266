"""Full fine-tune vs LoRA vs head only on a classification task: the comparison the LoRA
write-ups make, measured here. Each method runs `gptlab finetune classify` in its own process
(so each peak RSS is that method's alone) on the same base model, data, split and seed.

    python bench/finetune_lora.py --base RUN [--data FILE] [--epochs 3] [--lora-rank 8] [--json]

Reports per method: trainable parameters (count and %), peak RSS, optimiser state (gradients +
AdamW moments of the trainable parameters), median step time, checkpoint size (what has to be
stored beyond the base model), test accuracy and macro-F1, and the base LM's perplexity on its
pretraining val split after fine-tuning (forgetting); plus LoRA/full ratios.
Default data: ../shared/data/sms-spam.tsv (label<TAB>text, no header).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms-spam.tsv"


def methods(lora_rank: int) -> dict[str, list[str]]:
    return {
        "full": ["--trainable", "all", "--lr", "3e-4"],
        f"lora-r{lora_rank}": ["--trainable", "head", "--lora-rank", str(lora_rank), "--lr", "3e-3"],
        "head-only": ["--trainable", "head", "--lr", "3e-3"],
    }


def run_json(cmd: list[str]) -> dict:
    """Run one gptlab command with --json; its JSON document (or stop with its stderr)."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def cost_columns(costs: dict) -> dict:
    """The cost columns of a fine-tune's ``costs`` record, rounded for the table."""
    return {
        "trainable_params": costs["trainable_params"],
        "trainable_percent": round(costs["trainable_percent"], 3),
        "peak_rss_mb": round(costs["peak_rss_mb"], 1),
        "optimizer_state_mb": round(costs["optimizer_state_mb"], 3),
        "step_seconds_median": costs["step_seconds_median"],
    }


def run_method(base: str, data: str, out: Path, extra: list[str], args) -> dict:
    cmd = [
        sys.executable, "-m", "gptlab", "finetune", "classify", "--model", base, "--data", data,
        "--out", str(out), "--epochs", str(args.epochs), "--seed", str(args.seed), "--prompting-shots",
        "--json", *args.columns, *extra,
    ]  # fmt: skip
    r = run_json(cmd)
    c, test = r["costs"], r["test"]
    forgetting = (r.get("forgetting") or {}).get("after") or {}
    return cost_columns(c) | {
        "checkpoint_mb": round(c["checkpoint_mb"], 3),
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "train_seconds": r["train_seconds"],
        "pretraining_val_ppl_after": forgetting.get("perplexity"),
        "pretraining_val_ppl_before": ((r.get("forgetting") or {}).get("before") or {}).get("perplexity"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", required=True, help="pretrained gptlab run (e.g. from examples/spam-classifier.sh)"
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.columns = ["--label-column", "0", "--text-column", "1"] if args.data.endswith(".tsv") else []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        results = {
            name: run_method(args.base, args.data, root / name, extra, args)
            for name, extra in methods(args.lora_rank).items()
        }
    full, lora = results["full"], results[f"lora-r{args.lora_rank}"]
    report = {
        "bench": "finetune_lora",
        "config": {"base": args.base, "data": args.data, "epochs": args.epochs, "lora_rank": args.lora_rank},
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "methods": results,
        "lora_over_full": {
            k: (lora[k] / full[k] if full[k] else None)
            for k in (
                "trainable_params",
                "peak_rss_mb",
                "optimizer_state_mb",
                "step_seconds_median",
                "checkpoint_mb",
            )
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    keys = list(full)
    print(f"{'':28}" + "".join(f"{name:>14}" for name in results))
    for k in keys:
        cells = "".join(
            f"{v:>14.4g}" if isinstance(v, float) else f"{v!s:>14}" for v in (r[k] for r in results.values())
        )
        print(f"{k:28}{cells}")


if __name__ == "__main__":
    main()
