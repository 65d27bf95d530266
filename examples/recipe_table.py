"""Print the Markdown results table of finished task recipes (docs/tasks.md's tables come from here).

    python examples/recipe_table.py OUT_DIR [OUT_DIR ...]

Each OUT_DIR is one run of examples/translate.sh, summarize.sh or sentiment.sh; the script reads
its results.json (and the fine-tuned run's metrics.jsonl for the epochs trained) and prints one
table per task kind, one row per OUT_DIR, so two runs of a recipe (e.g. with and without the
pretraining stage) sit side by side. Standard library only: it reads JSON, it trains nothing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def epochs_trained(out: Path) -> int:
    """Fine-tuning epochs that finished: the epoch rows of OUT/final/metrics.jsonl (an instruct
    run logs ``val_loss``, a classifier run a ``val`` block)."""
    path = out / "final" / "metrics.jsonl"
    if not path.is_file():
        return 0
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return sum(1 for r in rows if "epoch" in r and ("val_loss" in r or "val" in r))


def wilson(rate: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (the interval gptlab's evaluations print)."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def minutes(seconds: float) -> str:
    return f"{int(seconds) // 60} min {int(seconds) % 60} s"


def pretraining(out: Path, r: dict) -> tuple[int, str]:
    """(parameters, steps and tokens seen in pretraining): the recipe's pretrain summary and the
    last training row of OUT/pretrain/metrics.jsonl (tokens_seen)."""
    pre = r["pretrain"]
    path = out / "pretrain" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.is_file() else []
    seen = [row["tokens_seen"] for row in rows if "tokens_seen" in row]
    tokens = f" ({seen[-1] / 1e6:.2f}M tokens)" if seen else ""
    return pre["n_params"], f"{pre['step']:,} steps{tokens}"


def translation_row(out: Path, r: dict) -> str:
    params, pre = pretraining(out, r)
    ft, v = r["finetune"], r["validation"]
    pairs = epochs_trained(out) * ft["splits"]["train"]
    return (
        f"| {out.name} | {params:,} | {pre} | {epochs_trained(out)} epochs ({pairs:,} pairs) | "
        f"{ft['best_val_loss']:.3f} | {v['bleu']:.2f} | {v['chrf']:.2f} | {v['exact_match']:.3f} | "
        f"{v['n']:,} | {minutes(r['wall_seconds'])} |"
    )


def summary_row(out: Path, r: dict) -> str:
    params, pre = pretraining(out, r)
    ft, v = r["finetune"], r["validation"]
    return (
        f"| {out.name} | {params:,} | {pre} | {epochs_trained(out)} epochs | {ft['best_val_loss']:.3f} | "
        f"{v['rouge1']:.4f} | {v['rouge2']:.4f} | {v['rougeL']:.4f} | {v['n']:,} | "
        f"{minutes(r['wall_seconds'])} |"
    ) + "".join(  # the baselines, scored by the same code on the whole dev split
        f"\n| {name} baseline | | | | | {b['rouge1']:.4f} | {b['rouge2']:.4f} | {b['rougeL']:.4f} | {b['n']:,} | |"
        for name, b in ((k, r.get("baselines", {}).get(k)) for k in ("lead1", "random"))
        if b
    )


def sentiment_row(out: Path, r: dict) -> str:
    params, pre = pretraining(out, r)
    v, bow = r["validation"], r["bag_of_words"]
    lo, hi = wilson(v["accuracy"], v["n"])
    acc = f"{v['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"
    return (
        f"| {out.name} | {params:,} | {pre} | {epochs_trained(out)} epochs | {acc} | "
        f"{v.get('macro_f1', float('nan')):.3f} | {bow['accuracy']:.3f} | {v['n']:,} | "
        f"{minutes(r['wall_seconds'])} |"
    )


TABLES = {  # task kind: (header, row builder)
    "translation": (
        "| run | params | pretraining | fine-tuning | best val loss | BLEU | chrF | exact | n | wall |",
        translation_row,
    ),
    "summarisation": (
        "| run | params | pretraining | fine-tuning | best val loss | ROUGE-1 | ROUGE-2 | ROUGE-L | n | wall |",
        summary_row,
    ),
    "sentiment": (
        "| run | params | pretraining | fine-tuning | accuracy [95% CI] | macro F1 | bag of words | n | wall |",
        sentiment_row,
    ),
}


def kind(r: dict) -> str:
    task = r.get("task", "")
    if "multi30k" in task:
        return "translation"
    if "sst2" in task:
        return "sentiment"
    return "summarisation"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rows: dict[str, list[str]] = {}
    for arg in argv:
        out = Path(arg)
        path = out / "results.json"
        if not path.is_file():
            print(f"{path}: not found (is {out} a finished recipe run?)", file=sys.stderr)
            return 2
        r = json.loads(path.read_text("utf-8"))
        rows.setdefault(kind(r), []).append(TABLES[kind(r)][1](out, r))
    for name, lines in rows.items():
        header = TABLES[name][0]
        print(f"{name}\n\n{header}\n|{'---|' * header.count(' | ')}---|")
        print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
