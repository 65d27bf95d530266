"""Classifier distillation experiment: a teacher classifier fine-tuned from a large LM, and student
classifiers fine-tuned from a small LM with and without the teacher; test accuracy per student.

    python bench/distill_classifier.py --teacher-lm RUN --student-lm RUN --data FILE.jsonl --out DIR
        [--text-column sentence] [--label-column label] [--max-examples 3000] [--epochs 2]
        [--temperatures 1,2,4] [--alpha 0.5] [--json]

Both LMs must share the tokenizer. DIR/data.jsonl is the first ``--max-examples`` rows of FILE
whose text the tokenizer can encode (a char tokenizer trained on one corpus cannot spell every
character of another); every classifier is fine-tuned on it with the same seed, hence the same
stratified train/val/test split (gptlab finetune classify). DIR/teacher is the teacher classifier,
DIR/scratch the student without a teacher, DIR/T<t> the distilled students (gptlab distill
--teacher DIR/teacher --student-base STUDENT_LM). Finished classifiers (results.json) are read
back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptlab.finetune.classify import ClassifyOptions, finetune_classifier  # noqa: E402
from gptlab.run import Run  # noqa: E402


def encodable_rows(path: Path, tokenizer, text_column: str, limit: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            try:
                tokenizer.encode(row[text_column])
            except Exception:  # noqa: BLE001 (a character outside the vocabulary: skip the row)
                continue
            rows.append(row)
            if len(rows) == limit:
                break
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher-lm", required=True)
    p.add_argument("--student-lm", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--text-column", default="sentence")
    p.add_argument("--label-column", default="label")
    p.add_argument("--max-examples", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--temperatures", default="1,2,4")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data.jsonl"
    if not data.is_file():
        rows = encodable_rows(
            Path(args.data), Run.open(args.teacher_lm).tokenizer, args.text_column, args.max_examples
        )
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def classifier(name: str, base: str, **distill) -> dict:
        folder = out / name
        if not (folder / "results.json").is_file():
            options = ClassifyOptions(
                model=base, data=str(data), out=str(folder), text_column=args.text_column,
                label_column=args.label_column, epochs=args.epochs, batch_size=32, prompting_shots=(),
                progress=False, **distill,
            )  # fmt: skip
            finetune_classifier(options)
        results = json.loads((folder / "results.json").read_text())
        return {"classifier": name, "test_accuracy": results["test"]["accuracy"],
                "test_macro_f1": results["test"]["macro_f1"], "train_seconds": results["train_seconds"]}  # fmt: skip

    rows = [classifier("teacher", args.teacher_lm), classifier("scratch", args.student_lm)]
    for t in args.temperatures.split(","):
        rows.append(
            classifier(f"T{t}", args.student_lm, teacher=str(out / "teacher"), distill_temperature=float(t),
                       distill_alpha=args.alpha)
        )  # fmt: skip
    if args.json:
        print(json.dumps({"data": str(data), "alpha": args.alpha, "rows": rows}, indent=2))
        return 0
    n = len(data.read_text(encoding="utf-8").splitlines())
    teacher_shape, student_shape = (Run.open(r).config for r in (args.teacher_lm, args.student_lm))
    print(f"{n} examples; teacher LM {teacher_shape.n_layer}x{teacher_shape.n_embd}, student LM "
          f"{student_shape.n_layer}x{student_shape.n_embd}, alpha {args.alpha}, {args.epochs} epochs")  # fmt: skip
    print("\n| classifier | T | test accuracy | test macro-F1 | train time (s) |\n|---|---|---|---|---|")
    for r in rows:
        kind = {"teacher": "teacher", "scratch": "student, no teacher"}.get(
            r["classifier"], "student, distilled"
        )
        t = r["classifier"][1:] if r["classifier"].startswith("T") else "-"
        print(
            f"| {kind} | {t} | {r['test_accuracy']:.4f} | {r['test_macro_f1']:.4f} | {r['train_seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
