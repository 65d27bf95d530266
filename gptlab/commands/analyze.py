"""``gptlab analyze attention|lens|saliency|embeddings|sampling|all``: interpretability numbers for a
text as tables, JSON, and self-contained HTML pages (``--out DIR``); ``all`` writes every view and
an index.html. The numbers come from gptlab/interpret/; this file only loads, prints and writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.commands import add_overwrite, analyze_embeddings, analyze_sampling, claim_views, positive_int


def _common(p, text_required: bool = True) -> None:
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory, classifier run or HF GPT-2 folder"
    )
    if text_required:
        p.add_argument("--text", required=True, help="the text to analyse")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _out(p) -> None:
    p.add_argument("--out", metavar="DIR", help="also write the self-contained HTML view into DIR")
    add_overwrite(p, "the view in DIR")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="interpretability: attention, logit lens, attributions, embeddings, sampling study",
        description="Analyse what a model does: per-head attention views and statistics, the logit lens, "
        "token attributions, embedding neighbours and similarity, a sampling study; tables, JSON and "
        "self-contained HTML.",
    )
    views = parser.add_subparsers(dest="view", metavar="VIEW", required=True)
    p = views.add_parser("attention", help="head and model views, per-head statistics, rollout, noise")
    _common(p)
    _out(p)
    p.add_argument("--sigmas", default="0.1,0.5,1,2", help="noise scales for Q/K/V (comma-separated)")
    p.set_defaults(func=run_attention)

    p = views.add_parser("lens", help="top-k next tokens read from every layer's residual stream")
    _common(p)
    _out(p)
    p.add_argument("--top-k", type=positive_int, default=3, help="predictions shown per layer")
    p.set_defaults(func=run_lens)

    p = views.add_parser(
        "saliency", help="which tokens matter for the next token, or for a classifier's class (four methods)"
    )
    _common(p)
    _out(p)
    _saliency_args(p)
    p.set_defaults(func=run_saliency)

    p = views.add_parser("embeddings", help=analyze_embeddings.HELP, description=analyze_embeddings.HELP)
    _common(p, text_required=False)
    analyze_embeddings.add_arguments(p)
    p.set_defaults(func=analyze_embeddings.run)

    p = views.add_parser("sampling", help=analyze_sampling.HELP, description=analyze_sampling.HELP)
    _common(p, text_required=False)
    analyze_sampling.add_arguments(p)
    p.set_defaults(func=analyze_sampling.run)

    p = views.add_parser("all", help="every view for one text, as HTML pages with an index.html")
    p.add_argument(
        "--model", required=True, metavar="RUN", help="run directory, classifier run or HF GPT-2 folder"
    )
    p.add_argument(
        "--text", required=True, help="the text for attention, lens and saliency (and the sampling prompt)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the views")
    add_overwrite(p, "the views in DIR")
    p.add_argument(
        "--samples", type=positive_int, default=6, help="samples per setting in the sampling study"
    )
    p.add_argument(
        "--max-new-tokens", type=positive_int, default=30, help="tokens per sample in the sampling study"
    )
    p.set_defaults(func=run_all)


def _saliency_args(p) -> None:
    p.add_argument(
        "--target",
        help="the next token to explain (default: the model's top prediction); for a classifier run, "
        "a label name (default: the predicted class)",
    )
    p.add_argument("--steps", type=positive_int, default=50, help="integrated-gradients steps")
    p.add_argument("--score", choices=("logprob", "logit"), default="logprob", help="what is attributed")


# ------------------------------------------------------------------------------------------ loading


def load_for_analysis(path):
    """(gpt, tokenizer, classifier or None): a classifier run gives its GPT for the views that read
    a language model, and the classifier for saliency."""
    from gptlab.run import Run

    run = Run.open(path)
    if run.kind == "classifier":
        clf = run.load_classifier()
        return clf.model.gpt, clf.tokenizer, clf
    return (*run.load(), None)


def _encode(tokenizer, text: str) -> list[int]:
    from gptlab.errors import GptlabError

    ids = tokenizer.encode(text)
    if not ids:
        raise GptlabError("--text encodes to no tokens")
    return ids


def _piece(tokenizer, i: int) -> str:
    """The text of token id i (<id> past the tokenizer's vocabulary, for a padded model)."""
    from gptlab.interpret.sampling import decode_padded

    return decode_padded(tokenizer, [i])


def _tokens(tokenizer, ids) -> list[str]:
    return [_piece(tokenizer, i) for i in ids]


def _parse_floats(text: str, flag: str) -> list[float]:
    import math

    from gptlab.errors import GptlabError

    try:
        values = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GptlabError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise GptlabError(f"{flag} must be one or more finite numbers >= 0, got {text!r}")
    return values


def _write(out_dir, name: str, page: str) -> Path:
    from gptlab.io import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    atomic_write_text(path, page)
    return path


# ---------------------------------------------------------------------------------------- attention


def attention_analysis(model, tokenizer, ids, sigmas) -> tuple[dict, list]:
    """JSON-ready numbers and the raw weights (for the HTML view)."""
    from gptlab.interpret.attention import (
        attention_rollout,
        attention_weights,
        head_statistics,
        noise_robustness,
    )

    attns = attention_weights(model, ids)
    rollout = attention_rollout(attns)
    out = {
        "tokens": _tokens(tokenizer, ids),
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


def run_attention(args: argparse.Namespace) -> int:
    claim_views(args, ["attention.html"])
    model, tokenizer, _ = load_for_analysis(args.model)
    ids = _encode(tokenizer, args.text)
    out, attns = attention_analysis(model, tokenizer, ids, _parse_floats(args.sigmas, "--sigmas"))
    if args.out:
        out["html"] = str(_write(args.out, "attention.html", attention_html(out, attns)))
    if args.json:
        print(json.dumps(out))
        return 0
    print("layer head  entropy  distance  first  previous  duplicate")
    for h in out["heads"]:
        dup = "-" if h["duplicate_token"] is None else f"{h['duplicate_token']:.3f}"
        print(
            f"{h['layer']:>5} {h['head']:>4}  {h['entropy']:7.3f}  {h['mean_distance']:8.2f}  "
            f"{h['first_token']:5.3f}  {h['previous_token']:8.3f}  {dup:>9}"
        )
    flow = sorted(zip(out["rollout_last_token"], out["tokens"]), reverse=True)[:5]
    print("rollout into the last token: " + ", ".join(f"{t!r} {w:.3f}" for w, t in flow))
    for r in out["noise"]:
        print(f"noise sigma {r['sigma']:g}: mean TV distance {r['tv_mean']:.4f}")
    if args.out:
        print(f"wrote {out['html']}")
    return 0


# --------------------------------------------------------------------------------------------- lens


def lens_analysis(model, tokenizer, ids, top_k: int) -> tuple[dict, list]:
    from gptlab.errors import GptlabError
    from gptlab.interpret.lens import logit_lens

    if top_k < 1:
        raise GptlabError(f"--top-k must be >= 1, got {top_k}")
    lens = logit_lens(model, ids, top_k=top_k)
    rows = [
        {"layer": layer, "top": [{"token": _piece(tokenizer, p["id"]), **p} for p in preds[-1]]}
        for layer, preds in enumerate(lens)
    ]
    return {"tokens": _tokens(tokenizer, ids), "last_position": rows}, lens


def lens_html(tokenizer, out: dict, lens) -> str:
    from gptlab.interpret.views import lens_page

    return lens_page(out["tokens"], lens, lambda i: _piece(tokenizer, i))


def run_lens(args: argparse.Namespace) -> int:
    claim_views(args, ["lens.html"])
    model, tokenizer, _ = load_for_analysis(args.model)
    ids = _encode(tokenizer, args.text)
    out, lens = lens_analysis(model, tokenizer, ids, args.top_k)
    if args.out:
        out["html"] = str(_write(args.out, "lens.html", lens_html(tokenizer, out, lens)))
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"next token after {args.text!r}, read from each layer (0 = embeddings):")
    for r in out["last_position"]:
        print(f"  {r['layer']:>3}  " + "  ".join(f"{p['token']!r} {p['prob']:.3f}" for p in r["top"]))
    if args.out:
        print(f"wrote {out['html']}")
    return 0


# ----------------------------------------------------------------------------------------- saliency


def _next_token_target(model, tokenizer, ids, target: str | None, score: str):
    import torch

    from gptlab.errors import GptlabError
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
    return f, emb, {"kind": "next_token", "target": _piece(tokenizer, target_id), "target_id": target_id}


def _class_target(clf, ids, target: str | None, score: str):
    import torch

    from gptlab.errors import GptlabError
    from gptlab.interpret.saliency import class_target

    ids = ids[: clf.max_length]
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


def saliency_analysis(model, tokenizer, clf, ids, target, steps: int, score: str) -> dict:
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
        "tokens": _tokens(tokenizer, ids),
        **info,
        "score": score,
        "attributions": {k: v.tolist() for k, v in methods.items()},
        "completeness_gap": gap,
    }


def saliency_html(out: dict) -> str:
    from gptlab.interpret.views import saliency_page

    what = "next token" if out["kind"] == "next_token" else "class"
    target = f"{out['score']} of the {what} {out['target']!r}"
    return saliency_page(out["tokens"], out["attributions"], target, out["completeness_gap"])


def run_saliency(args: argparse.Namespace) -> int:
    claim_views(args, ["saliency.html"])
    model, tokenizer, clf = load_for_analysis(args.model)
    ids = _encode(tokenizer, args.text)
    out = saliency_analysis(model, tokenizer, clf, ids, args.target, args.steps, args.score)
    if args.out:
        out["html"] = str(_write(args.out, "saliency.html", saliency_html(out)))
    if args.json:
        print(json.dumps(out))
        return 0
    what = "next token" if out["kind"] == "next_token" else "class"
    print(f"target: {what} {out['target']!r}; {out['score']} attributions per token")
    methods = list(out["attributions"])
    print(f"{'token':>14}  " + "  ".join(f"{m:>20}" for m in methods))
    for i, tok in enumerate(out["tokens"]):
        print(f"{tok!r:>14}  " + "  ".join(f"{out['attributions'][m][i]:20.4f}" for m in methods))
    print(f"integrated gradients completeness gap: {out['completeness_gap']:.2e}")
    if args.out:
        print(f"wrote {out['html']}")
    return 0


# ---------------------------------------------------------------------------------------------- all


ALL_VIEW_FILES = [
    "attention.html",
    "lens.html",
    "saliency.html",
    analyze_embeddings.HTML_FILE,
    analyze_embeddings.PNG_FILE,
    analyze_sampling.HTML_FILE,
    analyze_sampling.PNG_FILE,
    "index.html",
]


def run_all(args: argparse.Namespace) -> int:
    """Every view for one text into --out, and an index.html that links them."""
    from gptlab.interpret.views import index_page

    claim_views(args, ALL_VIEW_FILES)
    model, tokenizer, clf = load_for_analysis(args.model)
    ids = _encode(tokenizer, args.text)
    out_dir = Path(args.out)
    links = []

    att, attns = attention_analysis(model, tokenizer, ids, [0.1, 0.5, 1.0, 2.0])
    _write(out_dir, "attention.html", attention_html(att, attns))
    links.append(
        ("attention.html", "Attention", "head view, model view, per-head statistics, rollout, noise")
    )

    lens, raw = lens_analysis(model, tokenizer, ids, 5)
    _write(out_dir, "lens.html", lens_html(tokenizer, lens, raw))
    links.append(("lens.html", "Logit lens", "the next-token guess of every layer at every position"))

    sal = saliency_analysis(model, tokenizer, clf, ids, None, 50, "logprob")
    _write(out_dir, "saliency.html", saliency_html(sal))
    what = "the predicted next token" if clf is None else "the predicted class"
    links.append(("saliency.html", "Token attributions", f"four methods, for {what}"))

    emb_page = analyze_embeddings.write_views(model, tokenizer, out_dir, model_name=str(args.model))
    links.append((emb_page.name, "Embeddings", "neighbours, similarity beside MiniLM, PCA, clusters"))

    samp_page = analyze_sampling.write_views(
        model, tokenizer, args.text, out_dir, n_samples=args.samples, max_new_tokens=args.max_new_tokens
    )
    links.append((samp_page.name, "Sampling study", "diversity, log-prob, entropy, nucleus size per setting"))

    index = _write(out_dir, "index.html", index_page(f"Analysis of {args.model}", links))
    print(f"wrote {index} and {len(links)} views")
    return 0
