"""The fine-tunes' report.html (and the classifier's metrics.png): self-contained pages built with
gptlab.report from a run's history (the metrics.jsonl records) and summary (results.json)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from gptlab.eval.classification import ClassificationMetrics

REPORT_FILE = "report.html"


def forgetting_perplexities(summary: dict) -> tuple[float, float] | None:
    """(before, after) perplexity on the base model's pretraining val split, when both were measured."""
    forgetting = summary.get("forgetting") or {}
    if forgetting.get("before") and forgetting.get("after"):
        return forgetting["before"]["perplexity"], forgetting["after"]["perplexity"]
    return None


def _write_page(out: Path, title: str, body: str) -> None:
    from gptlab.report import html_page

    (out / REPORT_FILE).write_text(html_page(title, body), encoding="utf-8")


def write_classifier_report(
    out: Path, history: list[dict], summary: dict, test: ClassificationMetrics
) -> None:
    """metrics.png (loss and accuracy per epoch) and report.html: test metrics, costs, privacy,
    prompting baselines, forgetting, the test set's per-class table and the plot."""
    from gptlab.report import image, table

    png = plot_classifier_history(history)
    (out / "metrics.png").write_bytes(png)
    rows: list[tuple[str, Any]] = [
        ("test accuracy", test.accuracy),
        ("test macro F1", test.macro_f1),
        ("best epoch", summary["best_epoch"]),
        (
            "trainable params",
            f"{summary['costs']['trainable_params']:,} ({summary['costs']['trainable_percent']:.2f}%)",
        ),
        ("train seconds", summary["train_seconds"]),
    ]
    if summary.get("privacy"):
        from gptlab.train.dp import format_privacy

        rows.append(("differential privacy", format_privacy(summary["privacy"])))
    for name, r in summary.get("prompting", {}).items():
        value = r["accuracy"] if r["accuracy"] is not None else r.get("error")
        rows.append((f"prompting baseline, {name} (first {r['examples']} test texts)", value))
    perplexities = forgetting_perplexities(summary)
    if perplexities:
        rows.append(("pretraining val perplexity before", perplexities[0]))
        rows.append(("pretraining val perplexity after", perplexities[1]))
    body = (
        table(rows) + "<h2>Test set</h2><pre>" + html.escape(test.format()) + "</pre>" + image(png, "metrics")
    )
    if summary.get("error_analysis"):
        body += error_analysis_html(summary["error_analysis"])
    _write_page(out, "Classifier fine-tuning", body)


def error_analysis_html(analysis: dict) -> str:
    """The error analysis's section: accuracy per bucket with intervals, then the two lists."""
    rows = ["<tr><th>bucket</th><th>n</th><th>accuracy</th><th>95% interval (Wilson)</th></tr>"]
    for b in analysis["by_length"] + analysis["by_negation"]:
        low, high = b["interval"]
        rows.append(
            f"<tr><td>{html.escape(b['bucket'])}</td><td>{b['n']}</td><td>{b['accuracy']:.3f}</td>"
            f"<td>[{low:.3f}, {high:.3f}]</td></tr>"
        )
    parts = ["<h2>Error analysis (test set)</h2>", f"<table>{''.join(rows)}</table>"]
    for key, title in (
        ("confident_mistakes", "Most confident mistakes"),
        ("unsure_correct", "Least confident correct answers"),
    ):
        items = "".join(
            f"<tr><td>{html.escape(x['gold'])}</td><td>{html.escape(x['predicted'])}</td>"
            f"<td>{x['probability']:.3f}</td><td>{html.escape(x['text'])}</td></tr>"
            for x in analysis[key]
        )
        header = "<tr><th>gold</th><th>predicted</th><th>probability</th><th>text</th></tr>"
        parts.append(f"<h3>{title}</h3><table>{header}{items}</table>")
    return "".join(parts)


def plot_classifier_history(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, train vs val, as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax1.plot(epochs, [r[split]["loss"] for r in history], style, label=split)
        ax2.plot(epochs, [r[split]["accuracy"] for r in history], style, label=split)
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_instruct_report(out: Path, history: list[dict], summary: dict, test_ex, generated) -> None:
    """report.html: base vs fine-tuned scores, forgetting, the loss curve, the first test responses."""
    from gptlab.report import image, plot_losses

    rows = ["<tr><th>metric</th><th>base model</th><th>fine-tuned</th></tr>"]
    base = summary.get("base_scores") or {}
    for key in (
        "rougeL_f",
        "bleu",
        "chrf",
        "exact_match",
        "distinct_2",
        "repetition_rate_3",
        "mean_words",
        "empty",
    ):
        b = base.get(key)
        rows.append(
            f"<tr><td>{key}</td><td>{'' if b is None else f'{b:.4g}'}</td><td>{summary['scores'][key]:.4g}</td></tr>"
        )
    perplexities = forgetting_perplexities(summary)
    if perplexities:
        rows.append(
            f"<tr><td>pretraining val perplexity</td><td>{perplexities[0]:.3f}</td>"
            f"<td>{perplexities[1]:.3f}</td></tr>"
        )
    samples = "".join(
        (f"<h3>{html.escape(ex.instruction)}</h3>" if ex.instruction else "")  # none for input -> output
        + f"<p><b>input</b> {html.escape(ex.input)}</p>"
        f"<p><b>reference</b> {html.escape(ex.output)}</p><p><b>generated</b> {html.escape(g)}</p>"
        for ex, g in list(zip(test_ex, generated))[:10]
    )
    curve = [{"kind": "train", "step": r["step"], "loss": r["train_loss"]} for r in history]
    curve += [{"kind": "eval", "step": r["step"], "val_loss": r["val_loss"]} for r in history]
    body = f"<table>{''.join(rows)}</table>" + image(plot_losses(curve, "instruction fine-tuning"), "loss")
    _write_page(out, "Instruction fine-tuning", body + "<h2>Test responses</h2>" + samples)
