"""Reports a person opens: ``loss.png`` (train and val curves) and a self-contained ``report.html``.

The HTML has no external resources (the plot is embedded as a data: URI), so it opens offline
and can be attached to a thesis or sent by mail. Everything in it is read from the run
directory's files (config, metrics.jsonl), so a report can be rebuilt for any run.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from gptlab.io import atomic_write_bytes, atomic_write_text

LOSS_PLOT = "loss.png"
REPORT_HTML = "report.html"
SAMPLES_FILE = "samples.txt"


def figure_png(fig, dpi: float | None = None) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed (pyplot keeps every open one alive)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **({} if dpi is None else {"dpi": dpi}))
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_losses(history: list[dict], title: str = "") -> bytes:
    """PNG bytes of the train loss (every log step) and the val loss (every evaluation) by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in history if r["kind"] == "train"]
    val = [(r["step"], r["val_loss"]) for r in history if r["kind"] == "eval" and "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train (batch)", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def html_page(title: str, body: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;"
        "text-align:left;vertical-align:top}th{background:#f4f4f4}pre{background:#f8f8f8;padding:.8rem;"
        "white-space:pre-wrap;border:1px solid #e4e4e4}img{max-width:100%}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        # a data: icon, so a browser opening the file asks for no favicon (an error offline)
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_value(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def write_run_report(run_dir: Path, config, result) -> Path:
    """Write loss.png, samples.txt (rebuilt from metrics.jsonl) and report.html for a training run."""
    history = result.history
    png = plot_losses(history, title=str(run_dir))
    atomic_write_bytes(run_dir / LOSS_PLOT, png)
    evals = [r for r in history if r["kind"] == "eval"]
    samples = [(r["step"], r["sample"]) for r in evals if "sample" in r]
    prompt = config.train.sample_prompt
    atomic_write_text(
        run_dir / SAMPLES_FILE, "".join(f"--- step {s} ---\n{prompt}{text}\n\n" for s, text in samples)
    )
    val = result.final_val_loss
    summary = [
        ("run directory", str(run_dir)),
        ("steps", result.step),
        ("stopped by", result.stop_reason),
        ("parameters", result.n_params),
        ("tokens seen", history[-1].get("tokens_seen", "") if history else ""),
        ("wall time (s)", result.elapsed_s),
        ("training tokens/s (median)", result.tokens_per_s),
        ("final val loss", val if val is not None else "n/a"),
        ("final val perplexity", math.exp(val) if val is not None else "n/a"),
        ("best val loss", result.best_val_loss if result.best_val_loss is not None else "n/a"),
        (
            "unigram baseline val loss",
            result.unigram_val_loss if result.unigram_val_loss is not None else "n/a",
        ),
    ]
    config_rows = [
        (f"{section}.{k}", v) for section, values in config.to_dict().items() for k, v in values.items()
    ]
    eval_rows = "".join(
        f"<tr><td>{r['step']}</td><td>{format_value(r.get('train_loss', ''))}</td><td>{format_value(r.get('val_loss', ''))}</td>"
        f"<td>{format_value(r.get('val_ppl', ''))}</td></tr>"
        for r in evals
    )
    sample_html = "".join(
        f"<h3>step {s}</h3><pre>{html.escape(prompt + text)}</pre>" for s, text in samples[-3:]
    )
    body = (
        f"<h2>Summary</h2>{table(summary)}<h2>Loss</h2>{image(png, 'training and validation loss')}"
        f"<h2>Evaluations</h2><table><tr><th>step</th><th>train loss</th><th>val loss</th><th>val ppl</th></tr>"
        f"{eval_rows}</table><h2>Samples (last evaluations)</h2>{sample_html or '<p>none</p>'}"
        f"<h2>Config</h2>{table(config_rows)}"
    )
    return atomic_write_text(
        run_dir / REPORT_HTML, html_page(f"gptlab training report: {run_dir.name}", body)
    )
