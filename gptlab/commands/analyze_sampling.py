"""``gptlab analyze sampling``: N samples of a prompt at each temperature, top-k and top-p of a
sweep, with distinct-n, repetition, mean log-probability, entropies and nucleus size per setting
(gptlab/interpret/sampling.py), as a table, JSON, or with ``--out DIR`` an HTML page and a PNG.

``gptlab/commands/analyze.py`` adds ``--model RUN`` and ``--json`` to this view's parser; this
module adds the rest, and `write_views` for ``gptlab analyze all``. Heavy imports (torch,
matplotlib) happen inside functions, so ``gptlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.commands import add_overwrite, positive_int, seed_type

HELP = "sample a prompt at several temperatures, top-k and top-p: diversity, log-prob, entropy, nucleus size"
HTML_FILE = "sampling.html"
PNG_FILE = "sampling.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, help="the prompt every sample continues")
    parser.add_argument(
        "--temperatures",
        default="0.1,0.7,1.2",
        help="comma-separated temperatures, 0 = greedy (default 0.1,0.7,1.2)",
    )
    parser.add_argument(
        "--top-k", default="", help="comma-separated top-k values, at temperature 1 (default none)"
    )
    parser.add_argument(
        "--top-p", default="0.5,0.9", help="comma-separated top-p values, at temperature 1 (default 0.5,0.9)"
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="every temperature x top-k x top-p combination instead of one factor at a time",
    )
    parser.add_argument(
        "--samples", type=positive_int, default=8, help="samples per setting, drawn as one batch (default 8)"
    )
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=40, help="tokens per sample (default 40)"
    )
    parser.add_argument(
        "--seed", type=seed_type, default=0, help="seed of every setting's generator (default 0)"
    )
    parser.add_argument("--out", metavar="DIR", help=f"write DIR/{HTML_FILE} and DIR/{PNG_FILE}")
    add_overwrite(parser, "those files")


def parse_list(spec: str, kind: type, option: str) -> list:
    """'0.1, 0.7,1.2' -> [0.1, 0.7, 1.2]; '' -> []; GptlabError naming the option otherwise."""
    from gptlab.errors import GptlabError

    values = []
    for item in spec.split(","):
        if not item.strip():
            continue
        try:
            values.append(kind(item.strip()))
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise GptlabError(f"{option}: expected comma-separated {what}, got {item.strip()!r}") from None
    return values


def write_views(
    model,
    tokenizer,
    prompt: str,
    out_dir,
    n_samples: int = 8,
    max_new_tokens: int = 40,
    seed: int = 0,
    result=None,
) -> Path:
    """Write out_dir/sampling.png and out_dir/sampling.html (the default sweep unless ``result``
    is given); return the HTML path."""
    from gptlab.interpret.sampling import build_sweep, plot_sampling, render_sampling_html, sampling_study
    from gptlab.io import atomic_write_bytes, atomic_write_text

    if result is None:
        result = sampling_study(model, tokenizer, prompt, build_sweep(), n_samples, max_new_tokens, seed)
    png = plot_sampling(result)
    out = Path(out_dir)  # claimed by run() (claim_views)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / PNG_FILE, png)
    return atomic_write_text(out / HTML_FILE, render_sampling_html(result, png))


def run(args: argparse.Namespace) -> int:
    from gptlab.commands import claim_views
    from gptlab.errors import GptlabError
    from gptlab.interpret.sampling import build_sweep, sampling_study
    from gptlab.rundir import load_model

    settings = build_sweep(
        parse_list(args.temperatures, float, "--temperatures"),
        parse_list(args.top_k, int, "--top-k"),
        parse_list(args.top_p, float, "--top-p"),
        grid=args.grid,
    )
    if args.samples < 1:
        raise GptlabError(f"--samples must be >= 1, got {args.samples}")
    if args.max_new_tokens < 1:
        raise GptlabError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    claim_views(args, [HTML_FILE, PNG_FILE])
    model, tokenizer = load_model(args.model)
    result = sampling_study(
        model, tokenizer, args.prompt, settings, args.samples, args.max_new_tokens, args.seed
    )
    written = None
    if args.out:
        written = write_views(model, tokenizer, args.prompt, args.out, result=result)
    if args.json:
        print(json.dumps(result if written is None else {**result, "html": str(written)}))
        return 0
    _print_table(result)
    if written is not None:
        print(f"wrote {written}")
    return 0


def _print_table(result: dict) -> None:
    records = result["settings"]
    width = max(7, *(len(r["label"]) for r in records))
    print(
        f"{result['n_samples']} samples x {result['max_new_tokens']} tokens per setting, "
        f"seed {result['seed']}; log-prob under the model (T=1, unfiltered), entropies in nats, "
        "nucleus = tokens kept by the filters"
    )
    columns = ("distinct-1", "distinct-2", "repetition", "mean logprob", "model H", "sampling H", "nucleus")
    print(f"{'setting':<{width}}  " + "  ".join(f"{c:>12}" for c in columns))
    for r in records:
        values = (
            r["distinct_1"],
            r["distinct_2"],
            r["repetition_rate"],
            r["mean_logprob"],
            r["model_entropy"],
            r["sampling_entropy"],
        )
        print(
            f"{r['label']:<{width}}  "
            + "  ".join(f"{v:12.4f}" for v in values)
            + f"  {r['nucleus_size']:12.1f}"
        )
    print("\none sample per setting (the prompt, then the completion):")
    for r in records:
        print(f"--- {r['label']} ---\n{result['prompt']}{r['samples'][0]}")
