"""Decode and prefill speed of gptlab's generation engine vs Hugging Face ``generate``, fp32 and
weight-only int8 / int4, against the memory-bandwidth bound, on identical weights.

    python bench/decode.py [--shape 124m|tiny] [--quick] [--repeats 3] [--json]

The model is the GPT-2 124M shape (12 layers, 12 heads, 768 wide, vocab 50257, context 1024) with
gptlab's random initialisation (speed does not depend on the values); the HF model gets the same
tensors through gptlab's GPT-2 interop (gptlab/model/hf.py). Measured, each as the median (and
min-max) of ``--repeats`` runs after one warm-up:

- decode: batch 1, a 32-token prompt, 128 new tokens, greedy; tokens/s = new tokens / wall time
  of the whole call (the short prefill included, the same for both engines);
- prefill: one forward over a 512-token prompt to the first new token; tokens/s = 512 / time;
- batched decode: 8 prompts of 32 tokens, 128 new tokens each; tokens/s = 8 * 128 / time;
- transposed: gptlab fp32 with every weight stored (in, out) (bench/decode_layout.py),
  the layout HF's Conv1D uses, whose batch-1 CPU matmul is faster;
- int8 / int4: gptlab's weight-only quantisation (gptlab/model/quantize.py), and torch's dynamic int8
  (``torch.ao.quantization.quantize_dynamic``) as a reference, all through gptlab's engine.

- bf16: the model cast to bfloat16 in the oneDNN-packed decode layout, what ``gptlab generate
  --dtype auto`` runs where bf16 is native (``bf16_decode_tokens_per_s`` is null elsewhere), and its
  greedy agreement with fp32 over 100 prompts (16 new tokens each, batched; run even where bf16
  is not native).

Bounds: one decode step at batch 1 reads every weight matrix once (the token and position tables
only one row each), so tokens/s <= read rate / weight bytes per token. Two read rates, measured in
the same run: a streaming ``sum()`` of a large tensor (the memory system's rate) and a large fp32
matrix-vector product (``torch.mv`` on 8192 x 8192, the best a GEMV kernel reads weights here:
the honest bound for decoding, ``gemv_bound_tokens_per_s``). Goals (issue 22): fp32 decode (the
layout ``gptlab generate`` uses) >= 90% of the GEMV bound; bf16 >= 1.8x, int8 >= 3x and int4 >=
6x HF fp32 generate. Figures are noisy on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, measure_bandwidth_gbs, measure_gemv_gbs, summarize, timed  # noqa: E402
from decode_layout import to_decode_layout, torch_dynamic_int8  # noqa: E402

from gptlab.generate import GREEDY, generate  # noqa: E402
from gptlab.model import GPT, GPTConfig  # noqa: E402
from gptlab.model.modes import native_bf16  # noqa: E402
from gptlab.model.quantize import DEFAULT_GROUP_SIZE, QuantizedWeight, quantize_model, set_backend  # noqa: E402

SHAPES = {
    "124m": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=1024),
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, vocab_size=512, block_size=128),
}
GOAL_FRACTION_OF_BOUND = 0.9
GOAL_BF16_VS_HF = 1.8
GOAL_INT8_VS_HF = 3.0
GOAL_INT4_VS_HF = 6.0
AGREEMENT_PROMPTS = 100
AGREEMENT_NEW_TOKENS = 16
AGREEMENT_BATCH = 25


def build_models(shape: str, seed: int = 0):
    """gptlab GPT (fp32, eval) and an HF GPT2LMHeadModel with the same tensors."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptlab.model.hf import config_to_hf, state_to_hf

    torch.manual_seed(seed)
    config = GPTConfig(**SHAPES[shape], dropout=0.0)
    model = GPT(config).eval()
    hf_cfg = config_to_hf(config, eos_id=config.vocab_size - 1)
    hf = GPT2LMHeadModel(GPT2Config(**{k: v for k, v in hf_cfg.items() if k != "torch_dtype"})).eval()
    missing, unexpected = hf.load_state_dict(state_to_hf(model), strict=False)
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias", "lm_head.weight"))]
    if missing or unexpected:
        raise SystemExit(f"HF conversion mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model, hf


def decode_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes one batch-1 decode step reads: every tensor once, except the token / position tables,
    of which it reads one row (with tied weights the token table is the LM head: read in full)."""
    # tied: the token table is the head, read in full; the packed bf16 layout gives the head its own copy
    tied = model.config.tie_weights and getattr(model, "decode_layout", None) != "packed"
    skip = {"transformer.wpe.weight"}
    if not tied:
        skip |= {
            "transformer.wte.weight",
            "transformer.wte.qweight",
            "transformer.wte.scales",
            "transformer.wte.mins",
        }
    total, seen = 0, set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        key = id(t) if t.is_mkldnn else t.data_ptr()  # oneDNN-packed weights have no plain storage
        if name in skip or key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def hf_generate(hf, idx: torch.Tensor, new_tokens: int) -> torch.Tensor:
    with torch.no_grad():
        return hf.generate(
            idx,
            attention_mask=torch.ones_like(idx),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=0,
        )


def gptlab_generate(model, idx: torch.Tensor, new_tokens: int) -> torch.Tensor:
    return generate(model, idx, new_tokens, GREEDY)


def greedy_agreement(model, other, prompts: torch.Tensor, new_tokens: int) -> dict:
    """How often ``other``'s greedy continuations equal ``model``'s, over the rows of ``prompts``
    (generated in batches of AGREEMENT_BATCH): whole continuations, first tokens, and positions."""
    n, start = prompts.size(0), prompts.size(1)
    ours, theirs = [], []
    with torch.no_grad():
        for i in range(0, n, AGREEMENT_BATCH):
            batch = prompts[i : i + AGREEMENT_BATCH]
            ours.append(gptlab_generate(model, batch, new_tokens)[:, start:])
            theirs.append(gptlab_generate(other, batch, new_tokens)[:, start:])
    a, b = torch.cat(ours), torch.cat(theirs)
    return {
        "prompts": n,
        "new_tokens": new_tokens,
        "identical_continuations_fraction": round(float((a == b).all(dim=1).float().mean()), 3),
        "first_token_equal_fraction": round(float((a[:, 0] == b[:, 0]).float().mean()), 3),
        "tokens_equal_fraction": round(float((a == b).float().mean()), 3),
    }


def interleaved(fns: dict, repeats: int) -> dict:
    """timed() for several functions at once, round-robin: one warm-up each, then repeat by repeat."""
    for fn in fns.values():
        fn()
    seconds: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: summarize(s) for name, s in seconds.items()}


def summary(t: dict, tokens: int) -> dict:
    """tokens/s from timed() seconds: median, and min-max (min tokens/s from the slowest run)."""
    return {
        "tokens_per_s": round(tokens / t["median"], 2),
        "tokens_per_s_min": round(tokens / t["max"], 2),
        "tokens_per_s_max": round(tokens / t["min"], 2),
        "seconds_median": round(t["median"], 4),
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    warnings.filterwarnings("ignore")
    shape = SHAPES[args.shape]
    repeats = 1 if args.quick else args.repeats
    new_tokens = 16 if args.quick else args.new_tokens
    prompt_len = 32
    prefill_len = min(512, shape["block_size"] - 1) if not args.quick else min(128, shape["block_size"] - 1)
    batch = 8

    load_before = os.getloadavg()  # other work on the machine skews every figure: record it
    model, hf = build_models(args.shape)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, shape["vocab_size"], (1, prompt_len), generator=gen)
    long_prompt = torch.randint(0, shape["vocab_size"], (1, prefill_len), generator=gen)
    prompts8 = torch.randint(0, shape["vocab_size"], (batch, prompt_len), generator=gen)

    def t(fn):
        return timed(fn, repeats=repeats, warmup=1)

    results: dict = {}
    # ---- fp32, both engines: same greedy tokens?
    ours_out = gptlab_generate(model, prompt, new_tokens)
    hf_out = hf_generate(hf, prompt, new_tokens)
    same = bool(torch.equal(ours_out, hf_out))

    # gptlab and HF alternate repeat by repeat, so a burst of other load hits both alike
    b_new = new_tokens if not args.quick else 8
    transposed = to_decode_layout(copy.deepcopy(model))
    bf16_native = native_bf16(torch.device("cpu"))
    bf16 = to_decode_layout(copy.deepcopy(model).to(torch.bfloat16))  # what --dtype auto runs
    pairs = {
        "decode": (
            new_tokens,
            lambda m: gptlab_generate(m, prompt, new_tokens),
            lambda: hf_generate(hf, prompt, new_tokens),
        ),
        "prefill": (
            prefill_len,
            lambda m: gptlab_generate(m, long_prompt, 1),
            lambda: hf_generate(hf, long_prompt, 1),
        ),
        "batched_decode": (
            batch * b_new,
            lambda m: gptlab_generate(m, prompts8, b_new),
            lambda: hf_generate(hf, prompts8, b_new),
        ),
    }
    for what, (tokens, ours_fn, hf_fn) in pairs.items():
        timings = interleaved(
            {
                f"gptlab_{what}": lambda f=ours_fn: f(model),
                f"hf_{what}": hf_fn,
                f"gptlab_transposed_{what}": lambda f=ours_fn: f(transposed),
            },
            repeats,
        )
        for name, tm in timings.items():
            results[name] = summary(tm, tokens)
    if bf16_native:  # bf16 beside HF fp32 and gptlab fp32 in one interleaved run
        tm = interleaved(
            {
                "gptlab_bf16_decode": lambda: gptlab_generate(bf16, prompt, new_tokens),
                "hf_decode_beside_bf16": lambda: hf_generate(hf, prompt, new_tokens),
                "gptlab_transposed_decode_beside_bf16": lambda: gptlab_generate(
                    transposed, prompt, new_tokens
                ),
            },
            repeats,
        )
        results.update({name: summary(x, new_tokens) for name, x in tm.items()})
    n_agree = 10 if args.quick else AGREEMENT_PROMPTS
    agree_prompts = torch.randint(0, shape["vocab_size"], (n_agree, prompt_len), generator=gen)
    bf16_agreement = greedy_agreement(model, bf16, agree_prompts, 4 if args.quick else AGREEMENT_NEW_TOKENS)
    bf16_bytes = decode_bytes_per_token(bf16)
    bf16 = None
    same_transposed = bool(torch.equal(gptlab_generate(transposed, prompt, new_tokens), ours_out))
    transposed = None
    hf = None  # free the HF copy of the weights before the other variants

    # ---- quantised, through gptlab's engine
    fp32_bytes = decode_bytes_per_token(model)
    variants = {
        "int8": quantize_model(copy.deepcopy(model), 8),
        # the int8 head on the weight-only kernel, as before the dynamic-int8 head
        "int8_weight_only_head": set_backend(quantize_model(copy.deepcopy(model), 8), "kernel", head=False),
        "int4": quantize_model(copy.deepcopy(model), 4, args.group_size),
        "torch_dynamic_int8": torch_dynamic_int8(model),
    }
    agreement = {}
    ref_logits = model(prompt)[0][0, -1]
    for name, qm in variants.items():
        out = gptlab_generate(qm, prompt, new_tokens)
        agreement[f"{name}_greedy_tokens_equal_fp32_fraction"] = round(
            float((out[0, prompt_len:] == ours_out[0, prompt_len:]).float().mean()), 3
        )
        with torch.no_grad():
            logits = qm(prompt)[0][0, -1]
        agreement[f"{name}_last_logits_max_abs_diff"] = round(float((logits - ref_logits).abs().max()), 5)
        results[f"{name}_decode"] = summary(
            t(lambda qm=qm: gptlab_generate(qm, prompt, new_tokens)), new_tokens
        )
        results[f"{name}_batched_decode"] = summary(
            t(lambda qm=qm: gptlab_generate(qm, prompts8, b_new)), batch * b_new
        )

    bw = measure_bandwidth_gbs(megabytes=64 if args.quick else 512)
    gemv = measure_gemv_gbs(size=2048 if args.quick else 8192)
    bandwidth = bw["read_gbs"] * 1e9
    gemv_rate = gemv["read_gbs"] * 1e9
    bytes_q = {
        name: decode_bytes_per_token(qm)
        if any(isinstance(m, QuantizedWeight) for m in qm.modules())
        else None
        for name, qm in variants.items()
    }
    bound = bandwidth / fp32_bytes
    gemv_bound = gemv_rate / fp32_bytes
    ours = results["gptlab_decode"]["tokens_per_s"]
    default = results["gptlab_transposed_decode"]["tokens_per_s"]  # the layout gptlab generate uses
    hf_tps = results["hf_decode"]["tokens_per_s"]
    int8, int4 = results["int8_decode"]["tokens_per_s"], results["int4_decode"]["tokens_per_s"]
    bf16_tps = results["gptlab_bf16_decode"]["tokens_per_s"] if bf16_native else None
    bf16_vs_hf = (
        round(bf16_tps / results["hf_decode_beside_bf16"]["tokens_per_s"], 3) if bf16_native else None
    )
    report = {
        "bench": "decode",
        "config": {
            "shape": args.shape,
            **shape,
            "prompt_tokens": prompt_len,
            "new_tokens": new_tokens,
            "prefill_tokens": prefill_len,
            "batch": batch,
            "batched_new_tokens": b_new,
            "greedy": True,
            "repeats": repeats,
            "quick": args.quick,
            "int4_group_size": args.group_size,
            "weights": "gptlab random init (seed 0), HF converted via gptlab.model.hf.state_to_hf",
        },
        "machine": machine_info(),
        "load_average_1min": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gptlab_decode_tokens_per_s": ours,
        "hf_decode_tokens_per_s": hf_tps,
        "gptlab_transposed_decode_tokens_per_s": results["gptlab_transposed_decode"]["tokens_per_s"],
        "bf16_native": bf16_native,
        "bf16_decode_tokens_per_s": bf16_tps,
        "bf16_greedy_agreement_with_fp32": bf16_agreement,
        "int8_decode_tokens_per_s": int8,
        "int8_weight_only_head_decode_tokens_per_s": results["int8_weight_only_head_decode"]["tokens_per_s"],
        "int4_decode_tokens_per_s": int4,
        "torch_dynamic_int8_decode_tokens_per_s": results["torch_dynamic_int8_decode"]["tokens_per_s"],
        "gptlab_prefill_tokens_per_s": results["gptlab_prefill"]["tokens_per_s"],
        "hf_prefill_tokens_per_s": results["hf_prefill"]["tokens_per_s"],
        "gptlab_batched_decode_tokens_per_s": results["gptlab_batched_decode"]["tokens_per_s"],
        "gptlab_transposed_prefill_tokens_per_s": results["gptlab_transposed_prefill"]["tokens_per_s"],
        "gptlab_transposed_batched_decode_tokens_per_s": results["gptlab_transposed_batched_decode"][
            "tokens_per_s"
        ],
        "hf_batched_decode_tokens_per_s": results["hf_batched_decode"]["tokens_per_s"],
        "bandwidth_gbs": round(bw["read_gbs"], 2),
        "bandwidth": {k: round(v, 2) if isinstance(v, float) else v for k, v in bw.items()},
        "gemv_gbs": round(gemv["read_gbs"], 2),
        "gemv": {k: round(v, 2) if isinstance(v, float) else v for k, v in gemv.items()},
        "weight_bytes_per_token": {"fp32": fp32_bytes, "bf16": bf16_bytes, **bytes_q},
        "bandwidth_bound_tokens_per_s": round(bound, 2),
        "gemv_bound_tokens_per_s": round(gemv_bound, 2),
        "bf16_gemv_bound_tokens_per_s": round(gemv_rate / bf16_bytes, 2),
        "int8_bandwidth_bound_tokens_per_s": round(bandwidth / bytes_q["int8"], 2),
        "int4_bandwidth_bound_tokens_per_s": round(bandwidth / bytes_q["int4"], 2),
        "ratios": {
            "decode_vs_hf": round(ours / hf_tps, 3),
            "fraction_of_bandwidth_bound": round(ours / bound, 3),
            "fraction_of_gemv_bound": round(ours / gemv_bound, 3),
            "transposed_fraction_of_gemv_bound": round(default / gemv_bound, 3),
            "hf_fraction_of_gemv_bound": round(hf_tps / gemv_bound, 3),
            "bf16_vs_hf": bf16_vs_hf,
            "bf16_fraction_of_its_gemv_bound": round(bf16_tps / (gemv_rate / bf16_bytes), 3)
            if bf16_native
            else None,
            "transposed_decode_vs_hf": round(results["gptlab_transposed_decode"]["tokens_per_s"] / hf_tps, 3),
            "transposed_fraction_of_bandwidth_bound": round(
                results["gptlab_transposed_decode"]["tokens_per_s"] / bound, 3
            ),
            "hf_fraction_of_bandwidth_bound": round(hf_tps / bound, 3),
            "int8_vs_hf": round(int8 / hf_tps, 3),
            "int4_vs_hf": round(int4 / hf_tps, 3),
            "int8_weight_only_head_vs_hf": round(
                results["int8_weight_only_head_decode"]["tokens_per_s"] / hf_tps, 3
            ),
            "int8_vs_gptlab_fp32": round(int8 / ours, 3),
            "int4_vs_gptlab_fp32": round(int4 / ours, 3),
            "int8_fraction_of_its_bound": round(int8 / (bandwidth / bytes_q["int8"]), 3),
            "int4_fraction_of_its_bound": round(int4 / (bandwidth / bytes_q["int4"]), 3),
            "prefill_vs_hf": round(
                results["gptlab_prefill"]["tokens_per_s"] / results["hf_prefill"]["tokens_per_s"], 3
            ),
            "batched_decode_vs_hf": round(
                results["gptlab_batched_decode"]["tokens_per_s"]
                / results["hf_batched_decode"]["tokens_per_s"],
                3,
            ),
        },
        "greedy_tokens_identical_to_hf": same,
        "transposed_greedy_tokens_identical": same_transposed,
        "quantized_agreement": agreement,
        "runs": results,
        "goals": {
            f"fp32_decode_at_least_{GOAL_FRACTION_OF_BOUND:g}_of_bandwidth_bound": default
            >= GOAL_FRACTION_OF_BOUND * bound,
            f"fp32_decode_at_least_{GOAL_FRACTION_OF_BOUND:g}_of_gemv_bound": default
            >= GOAL_FRACTION_OF_BOUND * gemv_bound,
            f"bf16_decode_at_least_{GOAL_BF16_VS_HF:g}x_hf": None
            if bf16_vs_hf is None
            else bf16_vs_hf >= GOAL_BF16_VS_HF,
            f"int8_decode_at_least_{GOAL_INT8_VS_HF:g}x_hf": int8 >= GOAL_INT8_VS_HF * hf_tps,
            f"int4_decode_at_least_{GOAL_INT4_VS_HF:g}x_hf": int4 >= GOAL_INT4_VS_HF * hf_tps,
        },
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), default="124m", help="model shape (tiny: smoke test)"
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, 16 new tokens, short prefill")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE, help="int4 group size")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"decode tokens/s (batch 1, {report['config']['new_tokens']} new tokens, greedy)")
    for key in (
        "gptlab_decode_tokens_per_s",
        "gptlab_transposed_decode_tokens_per_s",
        "hf_decode_tokens_per_s",
        "bf16_decode_tokens_per_s",
        "int8_weight_only_head_decode_tokens_per_s",
        "int8_decode_tokens_per_s",
        "int4_decode_tokens_per_s",
        "torch_dynamic_int8_decode_tokens_per_s",
        "bandwidth_bound_tokens_per_s",
        "gemv_bound_tokens_per_s",
        "gptlab_prefill_tokens_per_s",
        "hf_prefill_tokens_per_s",
        "gptlab_batched_decode_tokens_per_s",
        "hf_batched_decode_tokens_per_s",
    ):
        print(f"  {key:42} {str(report[key]):>10}")
    for k, v in report["ratios"].items():
        print(f"  {k:42} {str(v):>10}")
    for k, v in report["goals"].items():
        print(f"  goal {k:37} {'n/a' if v is None else 'met' if v else 'MISSED':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
