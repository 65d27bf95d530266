"""``analyze lens``: the top-k next tokens read from every layer's residual stream (the logit
lens, gptlab/interpret/lens.py), with a heat map as HTML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptlab.errors import GptlabError
from gptlab.interpret.analysis import AllOptions, AnalysisResult, encode_text, token_piece, token_pieces
from gptlab.options import option, positive_int, required

if TYPE_CHECKING:
    from gptlab.run import Run

HELP = "top-k next tokens read from every layer's residual stream"
FILES = ("lens.html",)


@dataclass
class LensOptions:
    text: str = required("the text to analyse")
    top_k: int = option(3, "predictions shown per layer", type=positive_int)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise GptlabError(f"--top-k must be >= 1, got {self.top_k}")


def lens_analysis(model, tokenizer, ids, top_k: int) -> tuple[dict, list]:
    """JSON-ready numbers (the top-k at the last position, per layer) and the whole lens
    (``result[layer][position]``, for the HTML view)."""
    from gptlab.interpret.lens import logit_lens

    lens = logit_lens(model, ids, top_k=top_k)
    rows = [
        {"layer": layer, "top": [{"token": token_piece(tokenizer, p["id"]), **p} for p in preds[-1]]}
        for layer, preds in enumerate(lens)
    ]
    return {"tokens": token_pieces(tokenizer, ids), "last_position": rows}, lens


def lens_html(tokenizer, out: dict, lens) -> str:
    from gptlab.interpret.views import lens_page

    return lens_page(out["tokens"], lens, lambda i: token_piece(tokenizer, i))


def run(run: Run, options: LensOptions) -> AnalysisResult:
    model, tokenizer = run.load()
    out, lens = lens_analysis(model, tokenizer, encode_text(tokenizer, options.text), options.top_k)
    return AnalysisResult(
        out,
        table=lambda: _table(out, options.text),
        views=lambda: {FILES[0]: lens_html(tokenizer, out, lens)},
        summary="the next-token guess of every layer at every position",
    )


def _table(out: dict, text: str) -> str:
    lines = [f"next token after {text!r}, read from each layer (0 = embeddings):"]
    for r in out["last_position"]:
        lines.append(f"  {r['layer']:>3}  " + "  ".join(f"{p['token']!r} {p['prob']:.3f}" for p in r["top"]))
    return "\n".join(lines)


def in_all(run: Run, options: AllOptions) -> LensOptions:
    return LensOptions(text=options.text, top_k=5)
