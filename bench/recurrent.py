"""Recurrent baseline experiment: an LSTM vs a GPT of about the same parameter count, on the same
prepared data, at equal tokens and at equal wall time; the table of docs/experiments.md
("Recurrent baseline").

    python bench/recurrent.py --data FILE --out DIR [--steps N] [--gpt K=V,...] [--lstm K=V,...]
        [--plot PNG] [--json] [KEY=VALUE ...]

Both runs use the shipped ``shakespeare-char`` config with the shared KEY=VALUE overrides (context,
batch, lr, ...) and their own model overrides (``--gpt``, ``--lstm``: comma-separated
``model.KEY=VALUE``). DIR/gpt and DIR/lstm train ``--steps`` steps each (equal tokens, same seed,
same batches); then the model that was faster per step trains again for as many steps as fit in
the slower one's wall time (DIR/<arch>-time: equal wall time). A finished run (it holds
report.html) is read back, not retrained: the script resumes.

Reported per run: parameters, steps, final val loss, training tokens/s (the trainer's, last
window), wall time, and the mean val loss by context position over the val windows (every
non-overlapping block_size window of the val split; positions bucketed by doublings): how much a model gains from a longer
context, the transformer's advantage. Set OMP_NUM_THREADS=1 on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill import finished as distill_finished  # noqa: E402  (bench/ is on sys.path)

from gptlab.config import load_config  # noqa: E402
from gptlab.data.shards import TokenDataset  # noqa: E402
from gptlab.run import Run  # noqa: E402
from gptlab.rundir import load_model  # noqa: E402
from gptlab.train import train  # noqa: E402
from gptlab.train.trainer import read_metrics  # noqa: E402

POSITIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # bucket ends, 1-based: position 1 sees one token


@torch.no_grad()
def loss_by_position(run_dir: Path, data_dir: Path, batch_size: int = 16) -> list[float]:
    """Mean cross-entropy (nats) at each position 0..block_size-1 of the val split's windows."""
    model, _ = load_model(run_dir)
    T = model.config.block_size
    val = TokenDataset(data_dir, "val")
    starts = np.arange(0, len(val) - T - 1, T)
    total = torch.zeros(T, dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        x, y = val.windows(starts[i : i + batch_size], T)
        logits, _ = model(x)
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        total += nll.view(len(x), T).sum(0).double()
    return (total / len(starts)).tolist()


def finished(run_dir: Path) -> dict | None:
    """bench/distill.py's summary of a finished run, with its architecture, size and speed."""
    result = distill_finished(run_dir)
    if result is None:
        return None
    trains = [r for r in read_metrics(run_dir) if r["kind"] == "train"]
    model_json = json.loads((run_dir / "model.json").read_text())
    arch, n_params = model_json["config"]["arch"], model_json["n_params"]
    return {"arch": arch, "n_params": n_params, "tokens_per_s": trains[-1].get("tokens_per_s"), **result}


def plot(curves: dict[str, list[float]], rows: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, curve in curves.items():
        r = rows[name]
        label = f"{name}: {r['arch']}, {r['step']} steps, val {r['val_loss']:.3f}"
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context position (tokens seen, 1 = the first)")
    ax.set_ylabel("mean val loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_once(run_dir: Path, overrides: list[str]) -> dict:
    result = finished(run_dir)
    if result is None:
        train(load_config("shakespeare-char", [*overrides, f'train.out_dir="{run_dir}"']))
        result = finished(run_dir)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data",
        required=True,
        help="the text file to train on (char tokenizer; data.tokenizer=bpe data.vocab_size=N for BPE)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--gpt", default="model.n_layer=2,model.n_head=4,model.n_embd=128")
    p.add_argument("--lstm", default="model.arch=lstm,model.n_layer=2,model.n_embd=160")
    p.add_argument("--plot", help="write the loss-by-position figure (PNG) here")
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_args()

    out = Path(args.out)
    shared = [f"data.input={json.dumps([args.data])}", "train.progress=false", "train.sample_tokens=0",
              f"train.max_steps={args.steps}", f"train.eval_every={args.steps}", *args.overrides]  # fmt: skip
    models = {"gpt": args.gpt.split(","), "lstm": args.lstm.split(",")}
    rows = {name: run_once(out / name, [*shared, *models[name]]) for name in models}
    per_step = {name: r["elapsed_s"] / r["step"] for name, r in rows.items()}
    fast, slow = sorted(per_step, key=per_step.get)
    steps = int(rows[slow]["elapsed_s"] / per_step[fast])
    if steps > args.steps:  # the faster model's equal-wall-time run: its own cosine schedule over `steps`
        name = f"{fast}-time"
        extra = [f"train.max_steps={steps}", f"train.eval_every={steps}"]
        rows[name] = run_once(out / name, [*shared, *models[fast], *extra])
    data_dir = Run.open(out / "gpt").require_data_dir()  # every run prepared the same file the same way
    curves = {}
    for name, r in rows.items():
        curve = curves[name] = loss_by_position(out / name, data_dir)
        # the mean over positions (q/2, q]: one bucket per doubling of the context
        buckets = [(q // 2, q) for q in POSITIONS if q <= len(curve)]
        r["loss_by_position"] = {
            (str(q) if q - lo == 1 else f"{lo + 1}-{q}"): sum(curve[lo:q]) / (q - lo) for lo, q in buckets
        }
    if args.plot:
        tokenizer = next(
            (o.split("=", 1)[1] for o in args.overrides if o.startswith("data.tokenizer=")), "char"
        )
        plot(
            curves,
            rows,
            Path(args.plot),
            f"loss by context position, {Path(args.data).name}, {tokenizer} tokens",
        )
    report = {"steps": args.steps, "overrides": args.overrides, "models": models, "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        "| run | arch | params | steps | val loss | tokens/s | wall time (s) |\n|---|---|---|---|---|---|---|"
    )
    for name, r in rows.items():
        print(f"| {name} | {r['arch']} | {r['n_params']:,} | {r['step']} | {r['val_loss']:.4f} | "
              f"{r['tokens_per_s']:,.0f} | {r['elapsed_s']:.0f} |")  # fmt: skip
    qs = list(next(iter(rows.values()))["loss_by_position"])
    print("\nval loss (nats) at context position:\n")
    print("| run | " + " | ".join(qs) + " |\n|---|" + "---|" * len(qs))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r['loss_by_position'][q]:.3f}" for q in qs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
