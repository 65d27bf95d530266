"""``analyze attention``: per-head statistics, rollout into the last token and robustness to
noise on Q/K/V (gptlab/interpret/attention.py), with the head and model views as HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptlab.errors import GptlabError
from gptlab.interpret.analysis import AllOptions, AnalysisResult, encode_text, token_pieces
from gptlab.options import float_list, option, required

if TYPE_CHECKING:
    from gptlab.run import Run

HELP = "head and model views, per-head statistics, rollout, noise"
FILES = ("attention.html",)


@dataclass
class AttentionOptions:
    text: str = required("the text to analyse")
    sigmas: list[float] = option(
        [0.1, 0.5, 1.0, 2.0], "noise scales for Q/K/V (comma-separated)", type=float_list
    )

    def __post_init__(self) -> None:
        if not self.sigmas or not all(math.isfinite(s) and s >= 0 for s in self.sigmas):
            raise GptlabError(f"--sigmas must be one or more finite numbers >= 0, got {self.sigmas}")


def attention_analysis(model, tokenizer, ids, sigmas) -> tuple[dict, list]:
    """JSON-ready numbers and the raw weights (L tensors (H, T, T), for the HTML view)."""
    from gptlab.interpret.attention import (
        attention_rollout,
        attention_weights,
        head_statistics,
        noise_robustness,
    )

    attns = attention_weights(model, ids)
    rollout = attention_rollout(attns)
    out = {
        "tokens": token_pieces(tokenizer, ids),
        "heads": head_statistics(attns, ids),
        "rollout_last_token": rollout[-1].tolist(),
        "noise": noise_robustness(model, ids, sigmas),
    }
    return out, attns


def attention_html(out: dict, attns) -> str:
    import torch

    from gptlab.interpret.views import attention_page

    rollout = torch.tensor([out["rollout_last_token"]])  # only the last row is shown
    return attention_page(out["tokens"], attns, out["heads"], rollout, out["noise"])


def run(run: Run, options: AttentionOptions) -> AnalysisResult:
    model, tokenizer = run.load()
    out, attns = attention_analysis(model, tokenizer, encode_text(tokenizer, options.text), options.sigmas)
    return AnalysisResult(
        out,
        table=lambda: _table(out),
        views=lambda: {FILES[0]: attention_html(out, attns)},
        summary="head view, model view, per-head statistics, rollout, noise",
    )


def _table(out: dict) -> str:
    lines = ["layer head  entropy  distance  first  previous  duplicate"]
    for h in out["heads"]:
        dup = "-" if h["duplicate_token"] is None else f"{h['duplicate_token']:.3f}"
        lines.append(
            f"{h['layer']:>5} {h['head']:>4}  {h['entropy']:7.3f}  {h['mean_distance']:8.2f}  "
            f"{h['first_token']:5.3f}  {h['previous_token']:8.3f}  {dup:>9}"
        )
    flow = sorted(zip(out["rollout_last_token"], out["tokens"]), reverse=True)[:5]
    lines.append("rollout into the last token: " + ", ".join(f"{t!r} {w:.3f}" for w, t in flow))
    lines += [f"noise sigma {r['sigma']:g}: mean TV distance {r['tv_mean']:.4f}" for r in out["noise"]]
    return "\n".join(lines)


def in_all(run: Run, options: AllOptions) -> AttentionOptions:
    return AttentionOptions(text=options.text)
