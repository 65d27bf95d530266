"""The parameter-efficient family side by side on a classification task and on an instruction
task: full fine-tune, head only, LoRA, prefix tuning (direct and through its MLP), prompt tuning,
Houlsby and Pfeiffer adapters, IA3. Extends bench/finetune_lora.py (same runner: each method is
one `gptlab finetune classify|instruct` process, so each peak RSS is that method's alone; same
base model, data, split and seed).

    python bench/finetune_peft.py --base RUN [--data FILE] [--limit N] [--epochs 2] [--json]
    python bench/finetune_peft.py --task instruct --base RUN --data probe-tasks.json [--limit N] [--json]
    python bench/finetune_peft.py --table REPORT.json...  # --json reports (e.g. of --methods subsets run
                                                          # side by side) as the docs' markdown table

Reports per method: trainable parameters, optimiser state (gradient + AdamW moments of the
trainable parameters), what has to be stored beyond the base model (the adapter file, or the
whole model for a full fine-tune), median step time, peak RSS, and the task metric: test accuracy
and macro-F1 (spam), or exact match of the greedy responses (with its Wilson 95% interval) and
ROUGE-L F (with a 95% bootstrap interval over the test examples) (instruct: chat template, loss
on the responses; there is no head, so no head-only row).
``--limit N`` keeps the first N rows (spam) or records (instruct) of the data (a quick run).
Default spam data: ../shared/data/sms-spam.tsv (label<TAB>text, no header); instruct data: an
Alpaca JSON list, e.g. `gptlab data instructions --kind probe-tasks` (its base model needs the
chat template's special tokens in its tokenizer).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402
from finetune_lora import DEFAULT_DATA, cost_columns, run_json, run_method  # noqa: E402

from gptlab.audit.common import wilson_interval  # noqa: E402
from gptlab.eval.rouge import corpus_rouge  # noqa: E402
from gptlab.eval.text_metrics import exact_match  # noqa: E402

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
# The instruction task: the same methods without the classifier head (full: every weight trains).
INSTRUCT_METHODS = {name: flags[2:] for name, flags in METHODS.items() if name != "head-only"}
assert all(flags[0] == "--trainable" for flags in METHODS.values())  # what flags[2:] drops
INSTRUCT_FLAGS = ["--template", "chat", "--mask-prompt", "--no-base-comparison", "--no-progress"]
COST_COLUMNS = (
    "trainable_params",
    "optimizer_state_mb",
    "checkpoint_mb",
    "step_seconds_median",
    "peak_rss_mb",
)
COLUMNS = {
    "spam": (*COST_COLUMNS, "test_accuracy", "test_macro_f1"),
    "instruct": (*COST_COLUMNS, "exact_match", "rougeL_f"),
}


def run_instruct_method(base: str, data: str, out: Path, extra: list[str], args) -> dict:
    """One `gptlab finetune instruct` process; the metrics recomputed from its responses.json."""
    cmd = [
        sys.executable, "-m", "gptlab", "finetune", "instruct", "--model", base, "--data", data,
        "--out", str(out), "--epochs", str(args.epochs), "--seed", str(args.seed), "--json",
        "--max-new-tokens", str(args.max_new_tokens), "--max-test-examples", str(args.test_examples),
        *INSTRUCT_FLAGS, *extra,
    ]  # fmt: skip
    r = run_json(cmd)
    c = r["costs"]
    responses = json.loads((out / "responses.json").read_text(encoding="utf-8"))
    generated, references = [x["generated"] for x in responses], [x["reference"] for x in responses]
    hits = sum(exact_match(g, ref, ignore_case=True) for g, ref in zip(generated, references))
    rouge = corpus_rouge(generated, references, types=("rougeL",), bootstrap_samples=1000)["rougeL"]
    return cost_columns(c) | {
        "checkpoint_mb": round(c["adapter_mb"] if c["adapter_mb"] is not None else c["model_mb"], 3),
        "exact_match": hits / len(generated),
        "exact_match_count": [hits, len(generated)],
        "exact_match_ci95": list(wilson_interval(hits, len(generated))),
        "rougeL_f": rouge.mean.fmeasure,
        "rougeL_f_ci95": [rouge.low.fmeasure, rouge.high.fmeasure],
        "best_val_loss": r["best_val_loss"],
        "train_seconds": r["train_seconds"],
    }


def _size(mb: float) -> str:
    return f"{mb:.2f} MiB" if mb >= 1 else f"{mb * 1024:.1f} KiB"


def markdown_table(report: dict) -> str:
    """The docs' table of a --json report: costs, then the task metric (intervals for instruct)."""
    instruct = report["config"].get("task") == "instruct"
    metrics = ["exact match [95%]", "ROUGE-L F [95%]"] if instruct else ["test accuracy", "test macro-F1"]
    head = ["method", "trainable", "optimiser state", "on disk", "step (s)", "peak RSS (MiB)", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, r in report["methods"].items():
        cells = [
            name,
            f"{r['trainable_params']:,} ({r['trainable_percent']:.2f}%)",
            _size(r["optimizer_state_mb"]),
            _size(r["checkpoint_mb"]),
            f"{r['step_seconds_median']:.3f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        if instruct:
            (k, n), (lo, hi) = r["exact_match_count"], r["exact_match_ci95"]
            cells += [f"{k}/{n} = {r['exact_match']:.2f} [{lo:.2f}, {hi:.2f}]"]
            cells += [f"{r['rougeL_f']:.3f} [{r['rougeL_f_ci95'][0]:.3f}, {r['rougeL_f_ci95'][1]:.3f}]"]
        else:
            cells += [f"{r['test_accuracy']:.3f}", f"{r['test_macro_f1']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--table"]:  # --table REPORT.json...: the docs' table (reports of method subsets)
        reports = [json.loads(Path(path).read_text(encoding="utf-8")) for path in sys.argv[2:]]
        if len({json.dumps(r["config"], sort_keys=True) for r in reports}) != 1:
            raise SystemExit("--table: the reports were run with different settings")
        print(
            markdown_table(reports[0] | {"methods": {k: v for r in reports for k, v in r["methods"].items()}})
        )
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="pretrained gptlab run (e.g. the tiny-cpu recipe's)")
    parser.add_argument("--task", choices=("spam", "instruct"), default="spam")
    parser.add_argument("--data", help="spam: a TSV/CSV/JSONL (default: sms-spam.tsv); instruct: Alpaca JSON")
    parser.add_argument("--limit", type=int, help="keep the first N rows (records) of the data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-examples", type=int, default=100, help="instruct: test examples scored")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="instruct: response length cap")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), help="a subset (default: all)")
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    instruct = args.task == "instruct"
    if instruct and not args.data:
        parser.error("--task instruct needs --data (e.g. from `gptlab data instructions --kind probe-tasks`)")
    args.data = args.data or str(DEFAULT_DATA)
    args.columns = ["--label-column", "0", "--text-column", "1"] if args.data.endswith(".tsv") else []
    methods, runner = (INSTRUCT_METHODS, run_instruct_method) if instruct else (METHODS, run_method)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = args.data
        if args.limit:
            data = str(root / f"data-{args.limit}{Path(args.data).suffix}")
            if instruct:
                records = json.loads(Path(args.data).read_text(encoding="utf-8"))[: args.limit]
                Path(data).write_text(json.dumps(records), encoding="utf-8")
            else:
                lines = Path(args.data).read_text(encoding="utf-8").splitlines(keepends=True)[: args.limit]
                Path(data).write_text("".join(lines), encoding="utf-8")
        chosen = [name for name in args.methods or list(methods) if name in methods]
        results = {name: runner(args.base, data, root / name, methods[name], args) for name in chosen}
    report = {
        "bench": "finetune_peft",
        "config": {
            "task": args.task,
            "base": args.base,
            "data": args.data,
            "limit": args.limit,
            "epochs": args.epochs,
            "seed": args.seed,
        }
        | ({"test_examples": args.test_examples, "max_new_tokens": args.max_new_tokens} if instruct else {}),
        "flags": {name: methods[name] + (INSTRUCT_FLAGS if instruct else []) for name in chosen},
        "machine": machine_info(),
        "methods": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    columns = COLUMNS[args.task]
    print(f"{'method':18}" + "".join(f"{c:>21}" for c in columns))
    for name, r in results.items():
        cells = "".join(f"{r[c]:>21.4g}" if isinstance(r[c], float) else f"{r[c]!s:>21}" for c in columns)
        print(f"{name:18}{cells}")


if __name__ == "__main__":
    main()
