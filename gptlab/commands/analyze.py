"""``gptlab analyze attention|lens|saliency``: interpretability numbers for a text, as tables or
JSON (the HTML views of issue 6 build on the same functions in gptlab/interpret/)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="interpretability: attention statistics, logit lens, token attributions",
        description="Analyse what a model does on a text: per-head attention statistics and rollout, "
        "the logit lens, token attributions (gradient, gradient x input, integrated gradients, occlusion).",
    )
    views = parser.add_subparsers(dest="view", metavar="VIEW", required=True)
    for name, help_text, func in (
        ("attention", "per-head statistics (entropy, distance, sink, previous/duplicate token), rollout, noise", run_attention),
        ("lens", "top-k next tokens read from every layer's residual stream", run_lens),
        ("saliency", "which tokens matter for the next token (four attribution methods)", run_saliency),
    ):  # fmt: skip
        p = views.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--model", required=True, metavar="RUN", help="run directory or HF GPT-2 folder")
        p.add_argument("--text", required=True, help="the text to analyse")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.set_defaults(func=func)
        if name == "attention":
            p.add_argument("--sigmas", default="0.1,0.5,1,2", help="noise scales for Q/K/V (comma-separated)")
        if name == "lens":
            p.add_argument("--top-k", type=int, default=3, help="predictions shown per layer")
        if name == "saliency":
            p.add_argument("--target", help="the next token to explain (default: the model's top prediction)")
            p.add_argument("--steps", type=int, default=50, help="integrated-gradients steps")


def _load(args):
    from gptlab.errors import GptlabError
    from gptlab.rundir import load_model

    model, tokenizer = load_model(args.model)
    ids = tokenizer.encode(args.text)
    if not ids:
        raise GptlabError("--text encodes to no tokens")
    return model, tokenizer, ids


def _piece(tokenizer, i: int) -> str:
    """The text of token id i; ids past the tokenizer's vocabulary (a model padded wider than its
    tokenizer) show as <id>."""
    return tokenizer.decode([i]) if i < tokenizer.vocab_size else f"<{i}>"


def _tokens(tokenizer, ids) -> list[str]:
    return [_piece(tokenizer, i) for i in ids]


def run_attention(args: argparse.Namespace) -> int:
    from gptlab.errors import GptlabError
    from gptlab.interpret.attention import (
        attention_rollout,
        attention_weights,
        head_statistics,
        noise_robustness,
    )

    model, tokenizer, ids = _load(args)
    try:
        sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    except ValueError:
        raise GptlabError(f"--sigmas must be comma-separated numbers, got {args.sigmas!r}") from None
    attns = attention_weights(model, ids)
    out = {
        "tokens": _tokens(tokenizer, ids),
        "heads": head_statistics(attns, ids),
        "rollout_last_token": attention_rollout(attns)[-1].tolist(),
        "noise": noise_robustness(model, ids, sigmas),
    }
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
    return 0


def run_lens(args: argparse.Namespace) -> int:
    from gptlab.interpret.lens import logit_lens

    model, tokenizer, ids = _load(args)
    lens = logit_lens(model, ids, top_k=args.top_k)
    rows = [
        {"layer": layer, "top": [{"token": _piece(tokenizer, p["id"]), **p} for p in preds[-1]]}
        for layer, preds in enumerate(lens)
    ]
    if args.json:
        print(json.dumps({"tokens": _tokens(tokenizer, ids), "last_position": rows}))
        return 0
    print(f"next token after {args.text!r}, read from each layer (0 = embeddings):")
    for r in rows:
        print(f"  {r['layer']:>3}  " + "  ".join(f"{p['token']!r} {p['prob']:.3f}" for p in r["top"]))
    return 0


def run_saliency(args: argparse.Namespace) -> int:
    import torch

    from gptlab.errors import GptlabError
    from gptlab.interpret.saliency import (
        gradient_norm,
        gradient_x_input,
        integrated_gradients,
        next_token_target,
        occlusion,
    )

    model, tokenizer, ids = _load(args)
    if args.target is None:
        with torch.no_grad():
            target = int(model(torch.tensor([ids]), last_only=True)[0][0, -1].argmax())
    else:
        target_ids = tokenizer.encode(args.target)
        if len(target_ids) != 1:
            raise GptlabError(f"--target must be exactly one token, {args.target!r} is {len(target_ids)}")
        target = target_ids[0]
    f, emb = next_token_target(model, ids, target)
    ig, gap = integrated_gradients(f, emb, steps=args.steps)
    methods = {
        "gradient": gradient_norm(f, emb),
        "gradient_x_input": gradient_x_input(f, emb),
        "integrated_gradients": ig,
        "occlusion": occlusion(f, emb),
    }
    out = {
        "tokens": _tokens(tokenizer, ids),
        "target": _piece(tokenizer, target),
        "target_id": target,
        "attributions": {k: v.tolist() for k, v in methods.items()},
        "completeness_gap": gap,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"target: next token {out['target']!r}; log-prob attributions per token")
    print(f"{'token':>14}  " + "  ".join(f"{m:>20}" for m in methods))
    for i, tok in enumerate(out["tokens"]):
        print(f"{tok!r:>14}  " + "  ".join(f"{out['attributions'][m][i]:20.4f}" for m in methods))
    print(f"integrated gradients completeness gap: {gap:.2e}")
    return 0
