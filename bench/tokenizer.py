"""Benchmark gptlab's byte-level BPE against tiktoken and Hugging Face tokenizers, in one run.

Training: ours vs HF's Rust BpeTrainer on the same corpus, vocab size, special token, minimum
pair frequency and GPT-2 byte-level pre-tokenization. Encoding (MB/s of UTF-8 input): our
pure-Python path with a cold cache (a fresh tokenizer) and a warm one, our tiktoken fast path,
tiktoken itself (an Encoding built directly from the same ranks) and HF tokenizers (our exported
tokenizer.json). Every encoder must give the same ids; times are medians over ``--repeats``.

    python bench/tokenizer.py [--data FILE] [--vocab-size 4096] [--repeats 3] [--prepare-mb 32] [--json]

Prepare (``gptlab data prepare`` end to end: read, tokenize in worker processes, write uint16
shards): MB/s with 1 and 2 workers on the data repeated to ``--prepare-mb`` MB, against tiktoken's
``encode_ordinary_batch`` on the same pieces with 1 and 2 threads (same ranks, GPT-2 pattern).

Goals: training within 10x of HF, fast path within 1.5x of tiktoken, pure Python >= 1 MB/s,
prepare >= 0.7x tiktoken per core (1 worker vs 1 thread, 2 workers vs 2 threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tiktoken
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from gptlab.tokenizers import BPETokenizer
from gptlab.tokenizers.bpe import DEFAULT_MIN_FREQUENCY
from gptlab.tokenizers.interop import hf_tokenizer_dict
from gptlab.tokenizers.pretokenize import TIKTOKEN_GPT2_PATTERN

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
EOT = "<|endoftext|>"
GOAL_TRAIN_RATIO = 10.0  # ours / HF training time
GOAL_FAST_PATH_RATIO = 1.5  # our tiktoken path / tiktoken time
GOAL_PYTHON_MB_S = 1.0
GOAL_PREPARE_PER_CORE = 0.7  # prepare MB/s / tiktoken encode_ordinary_batch MB/s, same cores


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``repeats`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def train_hf(text: str, vocab_size: int) -> tokenizers.Tokenizer:
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=DEFAULT_MIN_FREQUENCY,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator([text], trainer)
    return hf


def machine_info() -> dict[str, object]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tiktoken": tiktoken.__version__,
        "tokenizers": tokenizers.__version__,
    }


def prepare_throughput(tok: BPETokenizer, direct: tiktoken.Encoding, text: str, megabytes: float,
                       repeats: int) -> dict[str, object]:  # fmt: skip
    """MB/s of prepare_corpus with 1 and 2 workers vs encode_ordinary_batch with 1 and 2 threads,
    on ``text`` repeated to about ``megabytes`` MB (one text file; pieces as prepare cuts them)."""
    import shutil
    import tempfile

    import numpy as np

    from gptlab.data.shards import CHUNK_CHARS, split_text
    from gptlab.data.streaming import prepare_corpus

    corpus = text * max(1, round(megabytes * 1e6 / len(text.encode("utf-8"))))
    size_mb = len(corpus.encode("utf-8")) / 1e6
    pieces = split_text(corpus, CHUNK_CHARS)
    folder = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        (folder / "corpus.txt").write_text(corpus, "utf-8")
        result: dict[str, object] = {"megabytes": round(size_mb, 2), "pieces": len(pieces)}
        rates, outputs = {}, {}
        for workers in (1, 2):

            def prepare(workers=workers):
                out = folder / f"out{workers}"
                shutil.rmtree(out, ignore_errors=True)
                prepare_corpus(
                    [folder / "corpus.txt"], tok, out, workers=workers, val_fraction=0, progress=False
                )
                return np.fromfile(out / "train-00000.bin", dtype=np.uint16)

            seconds, outputs[workers] = median_seconds(prepare, repeats)
            rates[f"prepare_{workers}_workers"] = round(size_mb / seconds, 2)
            seconds, ids = median_seconds(
                lambda w=workers: direct.encode_ordinary_batch(pieces, num_threads=w), repeats
            )
            rates[f"tiktoken_{workers}_threads"] = round(size_mb / seconds, 2)
        flat = [i for piece_ids in ids for i in piece_ids] + [tok.eot_id]
        result["mb_per_s"] = rates
        result["ratios"] = {
            f"prepare_over_tiktoken_{w}": round(
                rates[f"prepare_{w}_workers"] / rates[f"tiktoken_{w}_threads"], 2
            )
            for w in (1, 2)
        }
        result["ids_identical"] = outputs[1].tolist() == outputs[2].tolist() == flat
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(data: Path, vocab_size: int, repeats: int, prepare_mb: float = 32.0) -> dict[str, object]:
    text = data.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6

    ours_train_s, tok = median_seconds(lambda: BPETokenizer.train(text, vocab_size=vocab_size), repeats)
    hf_train_s, hf_trained = median_seconds(lambda: train_hf(text, vocab_size), repeats)

    def python_cold() -> list[int]:
        fresh = BPETokenizer.from_dict(tok.to_dict())  # empty chunk cache
        return fresh.encode(text, backend="python")

    direct = tiktoken.Encoding(
        name="bench",
        pat_str=TIKTOKEN_GPT2_PATTERN,
        mergeable_ranks=tok.mergeable_ranks,
        special_tokens=tok.special_tokens,
    )
    hf_ours = tokenizers.Tokenizer.from_str(json.dumps(hf_tokenizer_dict(tok)))
    tok.encode(text, backend="python")  # warm the cache
    tok.to_tiktoken()  # build the Encoding outside the timing, as a long-lived tokenizer would
    encoders: dict[str, Callable[[], list[int]]] = {
        "ours_python_cold": python_cold,
        "ours_python_warm": lambda: tok.encode(text, backend="python"),
        "ours_tiktoken_path": lambda: tok.encode(text, backend="tiktoken"),
        "tiktoken": lambda: direct.encode(text, disallowed_special=()),
        "hf_tokenizers": lambda: hf_ours.encode(text).ids,
    }
    encode_mb_s, ids = {}, {}
    for name, encode in encoders.items():
        seconds, ids[name] = median_seconds(encode, repeats)
        encode_mb_s[name] = round(megabytes / seconds, 2)

    prepare = prepare_throughput(tok, direct, text, prepare_mb, repeats) if prepare_mb > 0 else None
    train_ratio = ours_train_s / hf_train_s
    fast_path_ratio = encode_mb_s["tiktoken"] / encode_mb_s["ours_tiktoken_path"]
    return {
        "benchmark": "tokenizer",
        "machine": machine_info(),
        "data": {"file": str(data), "megabytes": round(megabytes, 3), "tokens": len(ids["tiktoken"])},
        "vocab_size": vocab_size,
        "repeats": repeats,
        "train_seconds": {
            "ours": round(ours_train_s, 3),
            "hf_tokenizers": round(hf_train_s, 3),
            "ours_over_hf": round(train_ratio, 2),
            "hf_vocab_size": hf_trained.get_vocab_size(),
        },
        "encode_mb_per_s": encode_mb_s,
        "encode_ratios": {
            "tiktoken_over_ours_tiktoken_path": round(fast_path_ratio, 2),
            "ours_tiktoken_path_over_python_warm": round(
                encode_mb_s["ours_tiktoken_path"] / encode_mb_s["ours_python_warm"], 2
            ),
            "ours_python_warm_over_hf": round(
                encode_mb_s["ours_python_warm"] / encode_mb_s["hf_tokenizers"], 2
            ),
        },
        "ids_identical": all(v == ids["tiktoken"] for v in ids.values()),
        "prepare": prepare,
        "goals": {
            f"train_within_{GOAL_TRAIN_RATIO:g}x_of_hf": train_ratio <= GOAL_TRAIN_RATIO,
            f"fast_path_within_{GOAL_FAST_PATH_RATIO:g}x_of_tiktoken": fast_path_ratio
            <= GOAL_FAST_PATH_RATIO,
            f"python_path_at_least_{GOAL_PYTHON_MB_S:g}_mb_s": encode_mb_s["ours_python_cold"]
            >= GOAL_PYTHON_MB_S,
        }
        | (
            {
                f"prepare_at_least_{GOAL_PREPARE_PER_CORE:g}x_tiktoken_per_core": min(
                    prepare["ratios"].values()
                )
                >= GOAL_PREPARE_PER_CORE
            }
            if prepare
            else {}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="UTF-8 text corpus (default: %(default)s)"
    )
    parser.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per measurement (default: %(default)s)"
    )
    parser.add_argument(
        "--prepare-mb",
        type=float,
        default=32.0,
        help="size of the prepare benchmark's corpus in MB, 0 to skip it (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on one line")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: data file not found: {args.data}", file=sys.stderr)
        return 2
    from gptlab.data.corpus import read_text_file
    from gptlab.errors import GptlabError

    try:
        read_text_file(args.data)  # a clear error for a binary or non-UTF-8 file, before timing
    except GptlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = run(args.data, args.vocab_size, args.repeats, args.prepare_mb)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
