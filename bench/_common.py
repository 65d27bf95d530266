"""Helpers shared by the benchmarks in bench/: machine description, repeat timing, and the two
hardware ceilings a CPU benchmark is judged against (memory bandwidth, the weight-read rate of a
large matrix-vector product, and matmul throughput).

Import from a bench script with ``from _common import machine_info, timed`` (the script's own
folder is on ``sys.path`` when it is run as ``python bench/<name>.py``), or add the folder first:
``sys.path.insert(0, str(Path(__file__).resolve().parent))``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, object]:
    """What a reader needs to compare figures across machines: CPU, cores, memory, versions, threads."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
        info["memory_gb"] = round(kb / 1e6, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def summarize(seconds: list[float]) -> dict[str, float]:
    """Median / min / max (and the raw list) of a list of timings in seconds."""
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "repeats": len(seconds),
        "all": [round(s, 6) for s in seconds],
    }


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Wall time of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Returns ``{"median", "min", "max", "repeats", "all"}`` in seconds. The median is the figure to
    report (robust to one noisy run); min-max shows the spread.
    """
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return summarize(seconds)


def measure_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> dict[str, float]:
    """Sustained memory read bandwidth in GB/s, measured with torch on this machine.

    A decode step of a language model reads every weight once, so ``weight_bytes / bandwidth`` is a
    lower bound on the time per token. We time ``x.sum()`` over a tensor much larger than the
    caches (a pure streaming read) and ``dst.copy_(src)`` (read + write, counted as 2x bytes), with
    torch's own threads, and report both; ``read_gbs`` is the one to use for inference.
    """
    n = megabytes * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32)
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    read = timed(lambda: src.sum(), repeats=repeats, warmup=1)
    copy = timed(lambda: dst.copy_(src), repeats=repeats, warmup=1)
    return {
        "read_gbs": nbytes / read["min"] / 1e9,
        "read_gbs_median": nbytes / read["median"] / 1e9,
        "copy_gbs": 2 * nbytes / copy["min"] / 1e9,
        "copy_gbs_median": 2 * nbytes / copy["median"] / 1e9,
        "megabytes": megabytes,
    }


def measure_gemv_gbs(size: int = 8192, repeats: int = 5) -> dict[str, float]:
    """Weight-read rate in GB/s of a large fp32 matrix-vector product, measured here.

    ``sum()`` (`measure_bandwidth_gbs`) streams memory as fast as the machine allows, but a decode
    step is not a sum: it is a chain of matrix-vector products, and torch's fp32 GEMV kernel may
    read its matrix far slower than a plain streaming read. The honest decode bound is the rate
    the best available GEMV reaches: we time ``torch.mv(W, v)`` with W (size, size) float32 (256
    MB at 8192, much larger than the caches; W is (out, in), nn.Linear's layout), best of
    ``repeats``, and count the matrix's bytes (the vectors are negligible).
    """
    w = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    v = torch.randn(size, generator=torch.Generator().manual_seed(1))
    nbytes = w.numel() * w.element_size()
    t = timed(lambda: torch.mv(w, v), repeats=repeats, warmup=1)
    return {
        "read_gbs": nbytes / t["min"] / 1e9,
        "read_gbs_median": nbytes / t["median"] / 1e9,
        "size": size,
        "megabytes": round(nbytes / 2**20, 1),
    }


def measure_matmul_gflops(
    dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5
) -> dict[str, float]:
    """Dense matmul throughput in GFLOP/s for ``dtype`` (a ``size``-square ``a @ b``).

    This is the compute ceiling for training steps and prefill, where the work is large matmuls.
    """
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    t = timed(lambda: a @ b, repeats=repeats, warmup=1)
    flops = 2 * size**3
    return {
        "gflops": flops / t["min"] / 1e9,
        "gflops_median": flops / t["median"] / 1e9,
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
    }
