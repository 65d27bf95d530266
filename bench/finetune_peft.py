"""The parameter-efficient family side by side on a classification task: full fine-tune, head
only, LoRA, prefix tuning (direct and through its MLP), prompt tuning, Houlsby and Pfeiffer
adapters, IA3. Extends bench/finetune_lora.py (same runner: each method is one
`gptlab finetune classify` process, so each peak RSS is that method's alone; same base model,
data, split and seed).

    python bench/finetune_peft.py --base RUN [--data FILE] [--limit N] [--epochs 2] [--json]

Reports per method: trainable parameters, optimiser state (gradient + AdamW moments of the
trainable parameters), what has to be stored beyond the base model (the adapter file, or the
whole model for a full fine-tune), median step time, peak RSS, test accuracy and macro-F1.
``--limit N`` keeps the first N rows of the data (a quick run; the split stays stratified).
Default data: ../shared/data/sms-spam.tsv (label<TAB>text, no header).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402
from finetune_lora import DEFAULT_DATA, run_method  # noqa: E402

HEAD = ["--trainable", "head"]
# learning rates: the usual ones of each method's paper or peft example, scaled to AdamW on a tiny GPT
METHODS: dict[str, list[str]] = {
    "full": ["--trainable", "all", "--lr", "3e-4"],
    "head-only": [*HEAD, "--lr", "3e-3"],
    "lora-r8": [*HEAD, "--peft", "lora", "--lora-rank", "8", "--lr", "3e-3"],
    "prefix-10": [*HEAD, "--peft", "prefix", "--peft-tokens", "10", "--lr", "1e-2"],
    "prefix-10-mlp": [
        *HEAD,
        "--peft",
        "prefix",
        "--peft-tokens",
        "10",
        "--peft-projection",
        "64",
        "--lr",
        "3e-3",
    ],
    "prompt-10": [*HEAD, "--peft", "prompt", "--peft-tokens", "10", "--lr", "3e-2"],
    "adapter-houlsby": [*HEAD, "--peft", "adapter", "--peft-adapter", "houlsby", "--lr", "3e-3"],
    "adapter-pfeiffer": [*HEAD, "--peft", "adapter", "--peft-adapter", "pfeiffer", "--lr", "3e-3"],
    "ia3": [*HEAD, "--peft", "ia3", "--lr", "1e-2"],
}
COLUMNS = (
    "trainable_params",
    "optimizer_state_mb",
    "checkpoint_mb",
    "step_seconds_median",
    "peak_rss_mb",
    "test_accuracy",
    "test_macro_f1",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="pretrained gptlab run (e.g. the tiny-cpu recipe's)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, help="keep the first N rows of the data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="a subset (default: all)")
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    args.columns = ["--label-column", "0", "--text-column", "1"] if args.data.endswith(".tsv") else []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = args.data
        if args.limit:
            lines = Path(args.data).read_text(encoding="utf-8").splitlines(keepends=True)[: args.limit]
            data = str(root / f"data-{args.limit}{Path(args.data).suffix}")
            Path(data).write_text("".join(lines), encoding="utf-8")
        chosen = args.methods or list(METHODS)
        results = {name: run_method(args.base, data, root / name, METHODS[name], args) for name in chosen}
    report = {
        "bench": "finetune_peft",
        "config": {
            "base": args.base,
            "data": args.data,
            "limit": args.limit,
            "epochs": args.epochs,
            "seed": args.seed,
        },
        "flags": {name: METHODS[name] for name in chosen},
        "machine": machine_info(),
        "methods": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'method':18}" + "".join(f"{c:>21}" for c in COLUMNS))
    for name, r in results.items():
        cells = "".join(f"{r[c]:>21.4g}" if isinstance(r[c], float) else f"{r[c]!s:>21}" for c in COLUMNS)
        print(f"{name:18}{cells}")


if __name__ == "__main__":
    main()
