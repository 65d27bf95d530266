"""Distillation experiment: a student trained from scratch vs distilled from a teacher at equal
tokens (and steps), for several temperatures; the table of docs/experiments.md ("Distillation").

    python bench/distill.py --teacher RUN --out DIR [--temperatures 1,2,4] [--alpha 0.5]
        [--top-k K] [--scratch-steps N] [--json] [KEY=VALUE ...]

The student is the shipped ``shakespeare-char`` config with the KEY=VALUE overrides (its shape,
steps, batch), on the teacher's prepared data (the same tokens and tokenizer). DIR/scratch is
``gptlab train``'s run; DIR/T<t> are ``gptlab distill``'s, same seed, same batches. A run that
already finished (it holds report.html) is read back, not retrained: the script resumes.
Reported per run: final val loss (the plain cross-entropy on the fixed val windows), its
difference to scratch, wall time, and the teacher's own val loss for reference.
``--scratch-steps N`` adds a from-scratch student trained for N steps (DIR/scratch-N, evaluated
every N/2): pick N so that its wall time matches the distilled students' (equal wall time). Set
OMP_NUM_THREADS=1 on a shared 2-core machine: tiny models train many times faster on one thread
than on two contended ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptlab.config import load_config  # noqa: E402
from gptlab.run import Run  # noqa: E402
from gptlab.train import train  # noqa: E402
from gptlab.train.distill import DistillOptions, distill  # noqa: E402
from gptlab.train.trainer import read_metrics  # noqa: E402


def finished(run_dir: Path) -> dict | None:
    if not (run_dir / "report.html").is_file():
        return None
    history = read_metrics(run_dir)
    evals = [r for r in history if r["kind"] == "eval" and "val_loss" in r]
    trains = [r for r in history if r["kind"] == "train"]
    return {
        "val_loss": evals[-1]["val_loss"],
        "elapsed_s": trains[-1]["elapsed_s"],
        "step": trains[-1]["step"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--temperatures", default="1,2,4")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--scratch-steps", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_args()

    teacher = Run.open(args.teacher)
    data_dir = teacher.require_data_dir()
    out = Path(args.out)
    base = [*args.overrides, f'data.dir="{data_dir}"', "train.progress=false"]
    rows = []
    jobs = [("scratch", None, [])] + [(f"T{t}", float(t), []) for t in args.temperatures.split(",")]
    if args.scratch_steps:
        n = args.scratch_steps
        jobs.append((f"scratch-{n}", None, [f"train.max_steps={n}", f"train.eval_every={n // 2}"]))
    for name, temperature, extra in jobs:
        run_dir = out / name
        result = finished(run_dir)
        if result is None:
            config = load_config("shakespeare-char", [*base, *extra, f'train.out_dir="{run_dir}"'])
            if temperature is None:
                train(config)
            else:
                distill(args.teacher, config, DistillOptions(temperature, args.alpha, args.top_k))
            result = finished(run_dir)
        rows.append({"run": name, "temperature": temperature, **result})
    teacher_evals = [r for r in read_metrics(args.teacher) if r["kind"] == "eval" and "val_loss" in r]
    student = load_config("shakespeare-char", base).model
    report = {
        "teacher": {"run": args.teacher, "val_loss": teacher_evals[-1]["val_loss"] if teacher_evals else None,
                    "shape": f"{teacher.config.n_layer}x{teacher.config.n_embd}"},
        "student_overrides": args.overrides,
        "student_shape": f"{student.overrides.get('n_layer')}x{student.overrides.get('n_embd')}",
        "alpha": args.alpha,
        "top_k": args.top_k,
        "rows": rows,
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    scratch = rows[0]["val_loss"]
    print(f"teacher {report['teacher']['shape']}: val loss {report['teacher']['val_loss']:.4f}; "
          f"student {report['student_shape']}, alpha {args.alpha}, top-k {args.top_k or 'off (teacher per batch)'}")  # fmt: skip
    print("\n| student | T | steps | val loss | vs scratch | wall time (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        kind = "from scratch" if r["temperature"] is None else "distilled"
        t = "-" if r["temperature"] is None else f"{r['temperature']:g}"
        delta = r["val_loss"] - scratch
        print(f"| {kind} | {t} | {r['step']} | {r['val_loss']:.4f} | {delta:+.4f} | {r['elapsed_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
