"""Items/s of ``gptlab eval tasks`` vs lm-evaluation-harness on the same model and items, in one run.

    python bench/eval_tasks.py [--items 300] [--layers 4] [--width 256] [--context 256]
                               [--batch-size B] [--lm-eval-batch-sizes 32,128] [--threads N]
                               [--repeats 1] [--smoke] [--json]

The model is a random Hugging Face GPT-2 (``--layers`` x ``--width``, context ``--context``, and
GPT-2's output layer of 50,257 rows unless ``--model-vocab`` says otherwise) with a small
byte-level BPE tokenizer trained on ``--data``, saved as an HF folder that lm-eval's ``hf`` model
loads and that gptlab converts (gptlab.convert.convert_from_hf). The items are HellaSwag-shaped
multiple choice, made from ``--data``: a context of one to three lines, then four choices (the
line that follows and three other lines), scored by acc and acc_norm, so every item is four
log-likelihood requests over one shared context.

Both sides run in this process, the model already loaded, on the same torch threads: lm-eval's
``simple_evaluate`` on a local task config (its import time is reported apart, not counted), and
gptlab's ``evaluate``; items/s = items / wall time of that call, best of ``--repeats``. lm-eval runs
at each of ``--lm-eval-batch-sizes`` (1 is its default) and the speedup is against its fastest;
``speedup_cpu_time`` is the same ratio in CPU seconds of this process, steadier on a shared machine.
The two sides' per-choice log-likelihoods are compared (``max_abs_loglik_diff``) so the figure is
for the same work. Goal (issue 16): gptlab >= 2x lm-eval.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "tests" / "data" / "shakespeare-excerpt.txt"
TASK = "bench_mc"
EOT = "<|endoftext|>"
GOAL_SPEEDUP = 2.0
TASK_YAML = """\
task: bench_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: "{data}"
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def make_items(text: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` HellaSwag-shaped items: context = 1-3 consecutive lines, choices = the next line and
    three other lines in a random order, label = where the next line went."""
    lines = [line for line in text.splitlines() if len(line.split()) >= 3]
    rnd = random.Random(seed)
    items = []
    for _ in range(n):
        start = rnd.randrange(len(lines) - 4)
        span = rnd.randint(1, 3)
        context, right = " ".join(lines[start : start + span]), lines[start + span]
        choices = [right, *rnd.sample(lines, 3)]
        rnd.shuffle(choices)
        items.append({"context": context, "choices": choices, "label": choices.index(right)})
    return items


def build_model(folder: Path, text: str, args) -> None:
    """A random HF GPT-2 and its tokenizer files in ``folder``."""
    import transformers

    from gptlab.tokenizers import BPETokenizer
    from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

    bpe = BPETokenizer.train(text, vocab_size=args.vocab_size, special_tokens=[EOT])
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=args.layers, n_head=args.heads, n_embd=args.width, n_positions=args.context,
        vocab_size=args.model_vocab, bos_token_id=bpe.eot_id, eos_token_id=bpe.eot_id,
    )  # fmt: skip
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    save_hf_gpt2_tokenizer(bpe, folder)


def gptlab_task(jsonl: Path):
    """The items as a gptlab Task, with the same prompt as TASK_YAML."""
    from gptlab.eval.tasks import Doc, Task, TaskFile

    def load(paths) -> list[Doc]:
        rows = Path(paths[0]).read_text("utf-8").splitlines()
        return [Doc(i, json.loads(row), f"{paths[0]}:{i + 1}") for i, row in enumerate(rows)]

    def results(doc, answer) -> dict[str, float]:
        lls = [a.logprob for a in answer]
        norm = [ll / len(choice) for ll, choice in zip(lls, doc["choices"])]  # as lm-eval: characters
        best, best_norm = lls.index(max(lls)), norm.index(max(norm))
        return {"acc": float(best == doc["label"]), "acc_norm": float(best_norm == doc["label"])}

    return Task(
        name=TASK, family="bench", description="HellaSwag-shaped multiple choice for the benchmark",
        output_type="multiple_choice", data=(TaskFile("bench-mc", f"{TASK}/{jsonl.name}"),), load=load,
        doc_to_text=lambda d: d["context"], doc_to_choice=lambda d: d["choices"],
        doc_to_target=lambda d: d["label"], process_results=results,
        metrics={"acc": "mean", "acc_norm": "mean"}, higher_is_better={"acc": True, "acc_norm": True},
    )  # fmt: skip


def best_time(fn, repeats: int):
    """The fastest of ``repeats`` calls, as (wall seconds, CPU seconds of this process), and the
    last result. CPU time moves less than wall time on a machine shared with other jobs."""
    best, result = (float("inf"), float("inf")), None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best, result


def run_lm_eval(hf_dir: Path, yaml_dir: Path, batch_size: int, repeats: int):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(hf_dir), dtype="float32", batch_size=batch_size, device="cpu")
    manager = TaskManager(include_path=str(yaml_dir))

    def once():
        return simple_evaluate(
            model=lm, tasks=[TASK], task_manager=manager, log_samples=True, verbosity="ERROR"
        )

    seconds, out = best_time(once, repeats)
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    return seconds, [[float(ll) for ll, _ in s["filtered_resps"]] for s in samples]


def run_gptlab(run_dir: Path, data_dir: Path, jsonl: Path, batch_size: int | None, repeats: int):
    from gptlab.eval.tasks.runner import TaskOptions, evaluate
    from gptlab.rundir import load_model

    model, tokenizer = load_model(run_dir, device="cpu")
    options = TaskOptions(data_dir=data_dir, progress=False, batch_size=batch_size)
    task = gptlab_task(jsonl)
    seconds, out = best_time(lambda: evaluate(model, tokenizer, [task], options), repeats)
    return seconds, [[float(a[0]) for a in item["answer"]] for item in out.items[TASK]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="text for the tokenizer and the items")
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=512, help="the tokenizer's (trained on --data)")
    p.add_argument(
        "--model-vocab", type=int, default=50257,
        help="rows of the model's embedding and output layer: GPT-2's 50,257 by default, so the "
        "output layer costs what it costs in GPT-2 (ids past the tokenizer's are never seen)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="gptlab's batch size (default: its own)")
    p.add_argument("--lm-eval-batch-sizes", default="32,128", help="comma-separated; the fastest is compared")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="a tiny model and 8 items: checks that it runs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.smoke:
        args.items, args.layers, args.heads, args.width, args.context = 8, 1, 2, 32, 64
        args.vocab_size, args.model_vocab, args.lm_eval_batch_sizes = 300, 300, "4"
    if args.threads:
        torch.set_num_threads(args.threads)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[key] = "1"  # local folders and files only
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    with tempfile.TemporaryDirectory(prefix="gptlab-bench-eval-tasks-") as tmp:
        tmp = Path(tmp)
        os.environ["HF_HOME"] = str(tmp / "hf_home")  # lm-eval's dataset cache, thrown away after
        text = args.data.read_text("utf-8")
        hf_dir, data_dir = tmp / "hf", tmp / "data"
        (data_dir / TASK).mkdir(parents=True)
        jsonl = data_dir / TASK / "items.jsonl"
        items = make_items(text, args.items)
        jsonl.write_text("".join(json.dumps(item) + "\n" for item in items), "utf-8")
        (data_dir / TASK / f"{TASK}.yaml").write_text(TASK_YAML.format(data=jsonl), "utf-8")
        log(f"building a {args.layers}x{args.width} GPT-2 (context {args.context}) and {args.items} items")
        build_model(hf_dir, text, args)

        from gptlab.convert import convert_from_hf

        run_dir, _ = convert_from_hf(str(hf_dir), tmp / "run")

        start = time.perf_counter()
        import lm_eval.evaluator  # noqa: F401  (its import cost, reported apart)
        import lm_eval.models.huggingface  # noqa: F401
        import lm_eval.tasks  # noqa: F401

        lm_eval_import_s = time.perf_counter() - start
        import datasets

        datasets.load_dataset("json", data_files={"test": str(jsonl)})  # its cache built, untimed
        datasets.disable_progress_bars()

        log("gptlab ...")
        (ours_s, ours_cpu), ours = run_gptlab(run_dir, data_dir, jsonl, args.batch_size, args.repeats)
        lm_eval_runs, theirs = {}, None
        for batch in (int(b) for b in args.lm_eval_batch_sizes.split(",")):
            log(f"lm-eval, batch size {batch} ...")
            (seconds, cpu), theirs = run_lm_eval(hf_dir, data_dir / TASK, batch, args.repeats)
            lm_eval_runs[str(batch)] = {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "items_per_s": args.items / seconds,
            }

    diff = max(abs(a - b) for mine, their in zip(ours, theirs) for a, b in zip(mine, their, strict=True))
    best_batch = max(lm_eval_runs, key=lambda b: lm_eval_runs[b]["items_per_s"])
    report = {
        "items": args.items,
        "requests": sum(len(item["choices"]) for item in items),
        "model": {
            "layers": args.layers,
            "heads": args.heads,
            "width": args.width,
            "context": args.context,
            "vocab_size": args.vocab_size,
        },  # fmt: skip
        "gptlab_items_per_s": args.items / ours_s,
        "gptlab_seconds": ours_s,
        "lm_eval_items_per_s": lm_eval_runs[best_batch]["items_per_s"],
        "lm_eval_seconds": lm_eval_runs[best_batch]["seconds"],
        "lm_eval_best_batch_size": int(best_batch),
        "lm_eval_by_batch_size": lm_eval_runs,
        "lm_eval_import_seconds": lm_eval_import_s,
        "speedup": lm_eval_runs[best_batch]["seconds"] / ours_s,
        "gptlab_cpu_seconds": ours_cpu,
        "lm_eval_cpu_seconds": lm_eval_runs[best_batch]["cpu_seconds"],
        "speedup_cpu_time": lm_eval_runs[best_batch]["cpu_seconds"] / ours_cpu,
        "goal_speedup": GOAL_SPEEDUP,
        "max_abs_loglik_diff": diff,
        "machine": machine_info(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key in ("gptlab_items_per_s", "lm_eval_items_per_s", "speedup", "max_abs_loglik_diff"):
            print(f"{key:>22}: {report[key]:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
