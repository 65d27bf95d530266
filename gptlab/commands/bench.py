"""``gptlab bench NAME [ARGS...]``: run one of the benchmarks in the source checkout's ``bench/``.

The benchmarks are scripts, not part of the installed package: each compares gptlab with a
reference implementation (Hugging Face, tiktoken, ...) that the package itself does not depend
on. This verb finds ``bench/NAME.py`` beside the ``gptlab`` package (an editable install or a
clone) and runs it with this interpreter, passing the remaining arguments through
(``gptlab bench train --shape tiny --json``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from gptlab.errors import GptlabError

BENCHMARKS = {
    "train": "training tokens/s and MFU vs Hugging Face GPT2LMHeadModel (--shape tiny|gpt2-124m)",
    "speedrun": "time to val loss 1.8857 on tinyshakespeare: nanoGPT's CPU recipe vs gptlab's best",
    "decode": "decode/prefill tokens/s vs HF generate, int8/int4, and the memory-bandwidth bound",
    "tokenizer": "BPE training and encoding speed vs tiktoken and HF tokenizers",
    "finetune-lora": "full fine-tuning vs LoRA vs head-only on spam classification",
    "finetune-peft": "full, head-only, LoRA, prefix, prompt, Houlsby/Pfeiffer adapters, IA3 on spam classification",
    "eval-tasks": "benchmark-task items/s vs lm-evaluation-harness on the same model and items",
    "optimizers": "AdamW, Adam, SGD, Adafactor, Lion: lr sweep, val loss, time, optimiser-state bytes",
    "serve": "gptlab serve under N concurrent clients: requests/s, tokens/s, p50/p99 latency, errors vs in-process generate",
    "preference-winrate": "win rate of one instruction model over another (DPO over SFT) by a reward model and ROUGE-L",
}


def bench_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "bench"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run a benchmark from bench/",
        description="Run bench/NAME.py from the source checkout; arguments after NAME go to the script. "
        + " ".join(f"{k}: {v}." for k, v in BENCHMARKS.items()),
    )
    p.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script (try --help)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    script = bench_dir() / f"{args.name.replace('-', '_')}.py"
    if not script.is_file():
        raise GptlabError(
            f"{script} not found: the benchmarks live in the bench/ folder of a source checkout "
            "(git clone the repository and pip install -e it)"
        )
    return subprocess.run([sys.executable, str(script), *args.args]).returncode
