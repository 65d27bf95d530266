"""The optimisers of gptlab.train.optimizers side by side on a small speedrun-like recipe.

For each optimiser: a small learning-rate sweep (each lr with every seed), the best lr by mean
final val loss, and at that lr the final val loss (mean, spread over seeds) and the time of the
training loop (steps and the final evaluation), all at the same number of steps, batch and schedule; plus the bytes of optimiser state
per parameter after one step, which is where Adafactor's factored second moment shows.

The recipe is bench/speedrun.py's model (4 layers x 128, RoPE, block 64, char-level
tinyshakespeare, batch 12, fp32) at 200 steps, cosine decay to lr/10 after a 20-step warmup,
weight decay 0.1 on matrices and grad clipping at 1.0 for every optimiser. "adamw-scratch" is
the same algorithm as "adamw" (tested to match it), run at adamw's best lr to show what the
fused kernel saves in wall time. For "muon" the swept lr is optim.muon_lr (the hidden matrices');
its AdamW part (embeddings, head, gains) runs at MUON_ADAMW_LR, adamw's middle grid value.

    python bench/optimizers.py [--data ../shared/data/tinyshakespeare.txt] [--steps 200]
        [--seeds 2] [--only adamw,lion] [--json] [--save results.json] [--plot sweep.png] [--quick]
    python bench/optimizers.py --from-json results.json [--plot sweep.png]   # the tables again

One torch thread by default: on a machine shared with other jobs, two threads per process
made steps 20x slower (threads waiting on each other's cores), and one thread keeps the
optimisers' times comparable. Without --json it prints markdown tables (docs/experiments.md holds one run's). --quick is a
smoke test: a 1-layer model, a few steps, one lr and one seed per optimiser.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

MODEL = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0, "bias": False,
         "pos_encoding": "rope"}  # fmt: skip
QUICK_MODEL = {**MODEL, "n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 32}
OPTIM = {"warmup_steps": 20, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.1, "grad_clip": 1.0,
         "schedule": "cosine"}  # fmt: skip
# the sweep: three learning rates around each optimiser's usual range (SGD and Adafactor with
# parameter scaling take much larger lr values than Adam; Lion several times smaller)
LR_GRID = {
    "adamw": [2e-3, 5e-3, 1e-2],
    "adam": [2e-3, 5e-3, 1e-2],
    "sgd": [0.03, 0.1, 0.3],
    "adafactor": [3e-2, 1e-1, 3e-1],
    "lion": [3e-4, 1e-3, 3e-3],
    "muon": [0.01, 0.02, 0.05],  # optim.muon_lr (Keller's default 0.02 in the middle)
}
MUON_ADAMW_LR = 5e-3
PER_OPTIMIZER = {"adafactor": {"beta1": 0.0}, "sgd": {"momentum": 0.9, "nesterov": True}}
MEMORY_VARIANTS = {  # name -> (optim.name, extra optim keys) for the state-size table
    "adamw": ("adamw", {}),
    "adam": ("adam", {}),
    "sgd (momentum)": ("sgd", {}),
    "lion": ("lion", {}),
    "muon (+ adamw for the rest)": ("muon", {}),
    "adafactor (beta1=0.9)": ("adafactor", {"beta1": 0.9}),
    "adafactor (no beta1)": ("adafactor", {"beta1": 0.0}),
}


def config_for(name: str, lr: float, seed: int, steps: int, data_dir: str, out_dir: str, quick: bool):
    from gptlab.config import RunConfig, apply_dict

    optim = {**OPTIM, **PER_OPTIMIZER.get(name, {}), "name": name, "lr": lr, "min_lr": lr / 10}
    if name == "muon":  # the swept lr is the matrices'; the schedule decays both to a tenth
        optim.update(muon_lr=lr, lr=MUON_ADAMW_LR, min_lr=MUON_ADAMW_LR / 10)
    settings = {
        "model": QUICK_MODEL if quick else MODEL,
        "data": {"dir": data_dir},
        "optim": {**optim, "warmup_steps": min(OPTIM["warmup_steps"], steps // 4)},
        "train": {"max_steps": steps, "batch_size": 12, "eval_every": steps, "eval_batches": 2 if quick else 20,
                  "log_every": steps, "dtype": "float32", "sample_tokens": 0, "progress": False, "seed": seed,
                  "out_dir": out_dir},
    }  # fmt: skip
    config = RunConfig()
    apply_dict(config, settings, "optimizers bench")
    return config


def prepare_data(data: str, root: Path) -> str:
    from gptlab.config import RunConfig
    from gptlab.train.trainer import prepare_run_data

    config = RunConfig()
    config.data.input, config.data.tokenizer = [data], "char"
    return str(prepare_run_data(config, root, progress=False))


def run_one(name, lr, seed, args, data_dir, root: Path) -> dict:
    from gptlab.train.trainer import train

    out = root / f"{name}-{lr:g}-{seed}"
    start = time.perf_counter()
    result = train(config_for(name, lr, seed, args.steps, data_dir, str(out), args.quick))
    wall = time.perf_counter() - start
    loss = result.final_val_loss
    # train_s: the training loop (steps and the final evaluation); wall_s adds the run's setup
    # and its report, the same for every optimiser
    return {"val_loss": loss if loss is not None and loss == loss else None, "train_s": result.elapsed_s,
            "wall_s": wall}  # fmt: skip


def sweep(name: str, lrs: list[float], args, data_dir: str, root: Path) -> dict:
    from gptlab.errors import GptlabError

    points = {}
    for lr in lrs:
        runs = []
        for seed in range(args.seeds):
            try:
                runs.append(run_one(name, lr, 1337 + seed, args, data_dir, root))
            except GptlabError as e:  # the loss diverged: this lr is too large
                runs.append({"val_loss": None, "error": str(e)})
        losses = [r["val_loss"] for r in runs]
        ok = all(v is not None for v in losses)
        points[f"{lr:g}"] = {
            "lr": lr,
            "runs": runs,
            "val_loss_mean": statistics.mean(losses) if ok else None,
            "val_loss_spread": (max(losses) - min(losses)) if ok else None,
            "train_s_mean": statistics.mean(r["train_s"] for r in runs) if ok else None,
        }
        print(f"  {name} lr {lr:g}: {points[f'{lr:g}']['val_loss_mean']}", file=sys.stderr)
    return points


def state_bytes_per_param(quick: bool) -> dict[str, float]:
    """Optimiser-state bytes per parameter after one step on the bench model (fp32)."""
    import torch

    from gptlab.config import OptimSection
    from gptlab.model import GPT, GPTConfig
    from gptlab.train.optimizers import make_optimizer, state_bytes

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, **(QUICK_MODEL if quick else MODEL)))
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    out = {}
    for label, (name, extra) in MEMORY_VARIANTS.items():
        optimizer = make_optimizer(model, OptimSection(name=name, lr=1e-3, **extra))
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        out[label] = state_bytes(optimizer) / n
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="tinyshakespeare (../shared/data)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps of every run")
    p.add_argument("--seeds", type=int, default=2, help="seeds per learning rate")
    p.add_argument("--only", help="comma-separated optimisers (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny model, 4 steps, one lr, one seed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: see the module doc)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--save", metavar="FILE", help="also write the JSON document to FILE")
    p.add_argument("--plot", metavar="PNG", help="also draw mean val loss against lr per optimiser")
    p.add_argument("--from-json", metavar="FILE", help="no runs: print (and --plot) a saved result")
    args = p.parse_args()
    if args.from_json:
        out = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        report(out, args)
        return
    if not Path(args.data).is_file():
        raise SystemExit(f"--data {args.data}: no such file (tinyshakespeare.txt is in ../shared/data)")
    names = args.only.split(",") if args.only else [*LR_GRID, "adamw-scratch"]
    unknown = [n for n in names if n not in LR_GRID and n != "adamw-scratch"]
    if unknown:
        raise SystemExit(
            f"--only: unknown optimisers {unknown} (known: {', '.join([*LR_GRID, 'adamw-scratch'])})"
        )
    if args.quick:
        args.steps, args.seeds = 4, 1

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir = prepare_data(args.data, root)
        for name in names:
            if name == "adamw-scratch":  # at adamw's best lr (the same algorithm)
                base = results.get("adamw", {}).get("best_lr", 3e-3)
                lrs = [base]
            else:
                lrs = LR_GRID[name][1:2] if args.quick else LR_GRID[name]
            points = sweep(name, lrs, args, data_dir, root)
            finished = [pt for pt in points.values() if pt["val_loss_mean"] is not None]
            best = min(finished, key=lambda pt: pt["val_loss_mean"]) if finished else None
            results[name] = {
                "sweep": points,
                "best_lr": best["lr"] if best else None,
                "val_loss": best["val_loss_mean"] if best else None,
                "val_loss_spread": best["val_loss_spread"] if best else None,
                "train_s": best["train_s_mean"] if best else None,
                "ms_per_step": 1000 * best["train_s_mean"] / args.steps if best else None,
            }
    out = {
        "bench": "optimizers",
        "data": args.data,
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "model": QUICK_MODEL if args.quick else MODEL,
        "optim": OPTIM,
        "steps": args.steps,
        "seeds": args.seeds,
        "batch_size": 12,
        "optimizers": results,
        "state_bytes_per_param": state_bytes_per_param(args.quick),
        "bench_wall_s": time.perf_counter() - started,
    }
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    report(out, args)


def report(out: dict, args) -> None:
    if args.plot:
        Path(args.plot).write_bytes(plot_sweep(out))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(markdown(out))


def plot_sweep(out: dict) -> bytes:
    """PNG bytes: mean final val loss against lr (log scale), one line per optimiser."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptlab.report import figure_png

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, r in out["optimizers"].items():
        points = [
            (pt["lr"], pt["val_loss_mean"]) for pt in r["sweep"].values() if pt["val_loss_mean"] is not None
        ]
        if points:
            ax.plot(*zip(*points), "o-", label=name, markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"val loss after {out['steps']} steps (mean of {out['seeds']} seeds)")
    ax.set_title("optimisers: learning-rate sweep")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def markdown(out: dict) -> str:
    """The result as the two tables of docs/experiments.md."""

    def num(v, fmt):
        return "diverged" if v is None else format(v, fmt)

    lines = [
        f"{out['steps']} steps x batch {out['batch_size']}, {out['seeds']} seed(s) per lr; "
        f"bench wall time {out['bench_wall_s'] / 60:.1f} min",
        "",
        "| optimiser | lr sweep: mean val loss | best lr | val loss | spread | train s | ms/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in out["optimizers"].items():
        swept = ", ".join(f"{k}: {num(v['val_loss_mean'], '.4f')}" for k, v in r["sweep"].items())
        lines.append(
            f"| {name} | {swept} | {num(r['best_lr'], 'g')} | {num(r['val_loss'], '.4f')} | "
            f"{num(r['val_loss_spread'], '.4f')} | {num(r['train_s'], '.1f')} | {num(r['ms_per_step'], '.1f')} |"
        )
    lines += ["", "| optimiser | state bytes / parameter (fp32) |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in out["state_bytes_per_param"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
