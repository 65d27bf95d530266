"""``analyze saliency``: which tokens matter for the next token, or for a classifier run's class:
gradient, gradient x input, integrated gradients and occlusion (gptlab/interpret/saliency.py),
with the text coloured by each as HTML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptlab.errors import GptlabError
from gptlab.interpret.analysis import AllOptions, AnalysisResult, encode_text, token_piece, token_pieces
from gptlab.options import option, positive_int, required

if TYPE_CHECKING:
    from gptlab.run import Run

HELP = "which tokens matter for the next token, or for a classifier's class (four methods)"
FILES = ("saliency.html",)


@dataclass
class SaliencyOptions:
    text: str = required("the text to analyse")
    target: str | None = option(
        None,
        "the next token to explain (default: the model's top prediction); for a classifier run, "
        "a label name (default: the predicted class)",
    )
    steps: int = option(50, "integrated-gradients steps", type=positive_int)
    score: str = option("logprob", "what is attributed", choices=("logprob", "logit"))


def _next_token_target(model, tokenizer, ids, target: str | None, score: str):
    import torch

    from gptlab.interpret.saliency import next_token_target

    if target is None:
        with torch.no_grad():
            target_id = int(model(torch.tensor([ids]), last_only=True)[0][0, -1].argmax())
    else:
        target_ids = tokenizer.encode(target)
        if len(target_ids) != 1:
            raise GptlabError(f"--target must be exactly one token, {target!r} is {len(target_ids)}")
        target_id = target_ids[0]
    f, emb = next_token_target(model, ids, target_id, score=score)
    return f, emb, {"kind": "next_token", "target": token_piece(tokenizer, target_id), "target_id": target_id}


def _class_target(clf, ids, target: str | None, score: str):
    import torch

    from gptlab.interpret.saliency import class_target

    if target is None:
        with torch.no_grad():
            probs = clf.model.predict_proba(torch.tensor([ids]), torch.tensor([len(ids)]))[0]
        index = int(probs.argmax())
    elif target in clf.label_names:
        index = clf.label_names.index(target)
    else:
        raise GptlabError(
            f"--target {target!r} is not one of the classifier's labels: {', '.join(clf.label_names)}"
        )
    f, emb = class_target(clf.model, ids, index, score=score)
    return f, emb, {"kind": "class", "target": clf.label_names[index], "target_id": index}


def saliency_analysis(model, tokenizer, clf, ids, target: str | None, steps: int, score: str) -> dict:
    """The four attributions of ``target`` (a next token, or with ``clf`` a class) over ``ids``."""
    from gptlab.interpret.saliency import gradient_norm, gradient_x_input, integrated_gradients, occlusion

    if clf is not None:
        ids = ids[: clf.max_length]
        f, emb, info = _class_target(clf, ids, target, score)
    else:
        f, emb, info = _next_token_target(model, tokenizer, ids, target, score)
    ig, gap = integrated_gradients(f, emb, steps=steps)
    methods = {
        "gradient": gradient_norm(f, emb),
        "gradient_x_input": gradient_x_input(f, emb),
        "integrated_gradients": ig,
        "occlusion": occlusion(f, emb),
    }
    return {
        "tokens": token_pieces(tokenizer, ids),
        **info,
        "score": score,
        "attributions": {k: v.tolist() for k, v in methods.items()},
        "completeness_gap": gap,
    }


def _what(out: dict) -> str:
    return "next token" if out["kind"] == "next_token" else "class"


def saliency_html(out: dict) -> str:
    from gptlab.interpret.views import saliency_page

    target = f"{out['score']} of the {_what(out)} {out['target']!r}"
    return saliency_page(out["tokens"], out["attributions"], target, out["completeness_gap"])


def run(run: Run, options: SaliencyOptions) -> AnalysisResult:
    """A classifier run explains its class; any other run its next token."""
    if run.kind == "classifier":
        clf = run.load_classifier()
        model, tokenizer = clf.model.gpt, clf.tokenizer
    else:
        clf = None
        model, tokenizer = run.load()
    ids = encode_text(tokenizer, options.text)
    out = saliency_analysis(model, tokenizer, clf, ids, options.target, options.steps, options.score)
    return AnalysisResult(
        out,
        table=lambda: _table(out),
        views=lambda: {FILES[0]: saliency_html(out)},
        summary=f"four methods, for the predicted {_what(out)}",
    )


def _table(out: dict) -> str:
    methods = list(out["attributions"])
    lines = [
        f"target: {_what(out)} {out['target']!r}; {out['score']} attributions per token",
        f"{'token':>14}  " + "  ".join(f"{m:>20}" for m in methods),
    ]
    for i, tok in enumerate(out["tokens"]):
        lines.append(f"{tok!r:>14}  " + "  ".join(f"{out['attributions'][m][i]:20.4f}" for m in methods))
    lines.append(f"integrated gradients completeness gap: {out['completeness_gap']:.2e}")
    return "\n".join(lines)


def in_all(run: Run, options: AllOptions) -> SaliencyOptions:
    return SaliencyOptions(text=options.text)
