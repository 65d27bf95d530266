"""Training throughput: gptlab vs Hugging Face ``GPT2LMHeadModel``, measured in the same run.

A training step is forward + backward + optimizer step on a (B, T) batch of random token ids.
gptlab runs as ``gptlab train`` does: its GPT, AdamW from ``gptlab.train.optim.make_adamw``
(fused), gradient clipping at 1.0, and the autocast dtype ``dtype=auto`` picks (bf16 only where
the hardware has native bf16 matmuls). Hugging Face runs a plain loop: ``GPT2LMHeadModel`` with
the same shape and ``torch.optim.AdamW`` with its defaults, in fp32 (and, for a like-for-like
comparison, under the same bf16 autocast).

Every variant runs in its own process (so each peak RSS is its own), and the variants are
interleaved over ``--repeats`` rounds so that a noisy neighbour slows all of them alike.
MFU = model FLOPs per second (6 N + 12 L T C per token: PaLM's estimate, as nanoGPT uses) over
the matmul peak this script measures on this machine for the dtype the variant computes in.

    python bench/train.py --shape tiny|gpt2-124m [--steps N] [--repeats R] [--compile] [--json]

Shapes: ``tiny`` is the quickstart preset (4 layers, 4 heads, 128 wide) at B16 x T128 with a
2,048-token vocabulary; ``gpt2-124m`` is GPT-2 small at B4 x T256 with its 50,257-token vocabulary.
Goals on a 2-core CPU: gptlab >= 1.6x HF on tiny, >= 1.15x HF on gpt2-124m.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, measure_matmul_gflops  # noqa: E402

SHAPES = {
    # name: (preset, vocab_size, batch, block)
    "tiny": ("tiny", 2048, 16, 128),
    "gpt2-124m": ("gpt2-124m", 50257, 4, 256),
}
DEFAULTS = {"tiny": dict(steps=30, warmup=3, repeats=3), "gpt2-124m": dict(steps=4, warmup=1, repeats=2)}
GOALS = {"tiny": 1.6, "gpt2-124m": 1.15}
GRAD_CLIP = 1.0  # gptlab's default optim.grad_clip
LR = 3e-4


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # ru_maxrss is in KB on Linux


# ---------------------------------------------------------------------------------------------
# one variant, in its own process


def build_gptlab(shape: str, dtype: str, compile_model: bool):
    import torch

    from gptlab.model import GPT, GPTConfig
    from gptlab.train.optim import make_adamw
    from gptlab.train.trainer import resolve_autocast

    preset, vocab, _, _ = SHAPES[shape]
    model = GPT(GPTConfig.preset(preset, vocab_size=vocab, dropout=0.0))
    optimizer = make_adamw(model, LR, device_type="cpu")
    autocast_dtype = resolve_autocast(dtype, torch.device("cpu"))
    run = torch.compile(model) if compile_model else model

    def loss_fn(x, y):
        return run(x, y)[1]

    info = {
        "autocast": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else "float32",
        "optimizer": "AdamW " + ", ".join(k for k in ("fused", "foreach") if optimizer.defaults.get(k)),
        "grad_clip": GRAD_CLIP,
        "compile": compile_model,
    }
    return model, optimizer, loss_fn, autocast_dtype, info


def build_hf(shape: str, dtype: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    preset, vocab, _, _ = SHAPES[shape]
    from gptlab.model import GPTConfig

    c = GPTConfig.preset(preset, vocab_size=vocab)
    config = GPT2Config(
        vocab_size=vocab, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)  # the plain loop: torch's defaults

    def loss_fn(x, y):
        return model(input_ids=x, labels=x).loss  # HF shifts the labels itself

    autocast_dtype = torch.bfloat16 if dtype == "bfloat16" else None
    info = {
        "autocast": "bfloat16" if autocast_dtype else "float32",
        "optimizer": "AdamW (torch defaults)",
        "grad_clip": None,
        "attn_implementation": model.config._attn_implementation,
    }
    return model, optimizer, loss_fn, autocast_dtype, info


def worker(impl: str, shape: str, dtype: str, steps: int, warmup: int, compile_model: bool) -> dict:
    """Build one variant, run ``warmup`` + ``steps`` training steps, report times and memory."""
    import torch

    torch.manual_seed(0)
    if impl == "gptlab":
        model, optimizer, loss_fn, autocast_dtype, info = build_gptlab(shape, dtype, compile_model)
    else:
        model, optimizer, loss_fn, autocast_dtype, info = build_hf(shape, dtype)
    model.train()
    _, vocab, batch, block = SHAPES[shape]
    x = torch.randint(0, vocab, (batch, block))
    y = torch.roll(x, -1, dims=1)
    rss_setup = rss_mb()

    def step() -> None:
        with torch.autocast("cpu", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = loss_fn(x, y)
        loss.backward()
        if impl == "gptlab" and GRAD_CLIP:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - start
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return {
        **info,
        "step_seconds": seconds,
        "warmup_seconds": warmup_s,
        "rss_after_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
        "params": n_params,
    }


# ---------------------------------------------------------------------------------------------
# the driver


def run_variant(impl: str, dtype: str, args) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", impl, "--shape", args.shape, "--dtype", dtype,
        "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.compile and impl == "gptlab":
        cmd.append("--compile")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_flops_per_token(shape: str) -> float:
    """6 N (matmul weights, forward + backward) + 12 L T C (attention scores and values)."""
    from gptlab.model import GPT, GPTConfig

    preset, vocab, _, block = SHAPES[shape]
    import torch

    with torch.device("meta"):
        model = GPT(GPTConfig.preset(preset, vocab_size=vocab))
    c = model.config
    return 6 * model.num_params(non_embedding=True) + 12 * c.n_layer * block * c.n_embd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--steps", type=int, help="timed steps per process")
    p.add_argument("--warmup", type=int, help="untimed steps first (compilation, allocator warm-up)")
    p.add_argument("--repeats", type=int, help="rounds; each runs every variant in a fresh process")
    p.add_argument("--compile", action="store_true", help="also run gptlab under torch.compile")
    p.add_argument("--quick", action="store_true", help="1 round of 3 steps (smoke test)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", choices=["gptlab", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args()
    for k, v in DEFAULTS[args.shape].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.quick:
        args.steps, args.warmup, args.repeats = 3, 1, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args.shape, args.dtype, args.steps, args.warmup, args.compile)))
        return

    import torch

    from gptlab.train.trainer import native_bf16

    peaks = {"float32": measure_matmul_gflops(torch.float32)["gflops"]}
    peaks["bfloat16"] = measure_matmul_gflops(torch.bfloat16)["gflops"]
    bf16 = native_bf16(torch.device("cpu"))
    variants = {  # name: (impl, dtype)
        "gptlab": ("gptlab", "auto"),
        "gptlab_fp32": ("gptlab", "float32"),
        "gptlab_bf16": ("gptlab", "bfloat16"),
        "hf": ("hf", "float32"),
        "hf_bf16": ("hf", "bfloat16"),
    }
    if not bf16:  # auto = fp32 there; bf16 variants would only measure emulation
        for name in ("gptlab_fp32", "gptlab_bf16", "hf_bf16"):
            variants.pop(name)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (impl, dtype) in variants.items():
            runs[name].append(run_variant(impl, dtype, args))

    _, _, batch, block = SHAPES[args.shape]
    flops_token = model_flops_per_token(args.shape)
    results = {}
    for name, rs in runs.items():
        tps = [batch * block / s for r in rs for s in r["step_seconds"]]
        compute = rs[0]["autocast"]
        med = statistics.median(tps)
        results[name] = {
            "tokens_per_s": med,
            "tokens_per_s_min": min(tps),
            "tokens_per_s_max": max(tps),
            "step_seconds_median": batch * block / med,
            "computes_in": compute,
            "mfu": med * flops_token / (peaks[compute] * 1e9),
            "mfu_vs_fp32_peak": med * flops_token / (peaks["float32"] * 1e9),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "rss_after_setup_mb": rs[0]["rss_after_setup_mb"],
            "warmup_seconds": statistics.median(r["warmup_seconds"] for r in rs),
            **{k: rs[0][k] for k in ("optimizer", "grad_clip", "params") if k in rs[0]},
        }
    g, h = results["gptlab"], results["hf"]
    out = {
        "bench": "train",
        "shape": args.shape,
        "batch": batch,
        "block": block,
        "steps_per_process": args.steps,
        "repeats": args.repeats,
        "machine": machine_info(),
        "native_bf16": bf16,
        "matmul_peak_gflops": peaks,
        "model_flops_per_token": flops_token,
        "gptlab_tokens_per_s": g["tokens_per_s"],
        "hf_tokens_per_s": h["tokens_per_s"],
        "speedup_vs_hf": g["tokens_per_s"] / h["tokens_per_s"],
        "mfu": g["mfu"],
        "gptlab_peak_rss_mb": g["peak_rss_mb"],
        "hf_peak_rss_mb": h["peak_rss_mb"],
        "goal_speedup": GOALS[args.shape],
        "goal_met": g["tokens_per_s"] / h["tokens_per_s"] >= GOALS[args.shape],
        "variants": results,
    }
    if "gptlab_fp32" in results:
        out["speedup_fp32_vs_hf_fp32"] = results["gptlab_fp32"]["tokens_per_s"] / h["tokens_per_s"]
        out["speedup_bf16_vs_hf_bf16"] = (
            results["gptlab_bf16"]["tokens_per_s"] / results["hf_bf16"]["tokens_per_s"]
        )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"{args.shape}: B{batch} x T{block}, {machine_info()['cpu_model']}, {torch.get_num_threads()} threads"
    )
    print(f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    for name, r in results.items():
        print(
            f"  {name:<12} {r['tokens_per_s']:>9,.0f} tok/s ({r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f})"
            f"  {r['computes_in']:<8}  MFU {r['mfu']:.0%}  peak RSS {r['peak_rss_mb']:,.0f} MB"
        )
    print(f"gptlab / HF: {out['speedup_vs_hf']:.2f}x (goal {GOALS[args.shape]}x)")


if __name__ == "__main__":
    main()
