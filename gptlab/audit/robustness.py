"""Robustness to adversarial text (`gptlab audit robustness`): how much typos, look-alike
characters and gradient-chosen token swaps cost a classifier, how much a typo costs a language
model, and what adversarial training buys back.

What is measured, on a classifier run's held-out test split (or given texts):

- Random character noise (gptlab.audit.perturb: swap, insert, delete, keyboard neighbour,
  homoglyph) at a set of rates (edits per character): accuracy under each (kind, rate), and the
  accuracy drop from clean with a paired bootstrap interval (the same texts, clean vs perturbed).
  Noise is not an attack, but it is the floor: a model that breaks under 5% random typos needs no
  adversary (Belinkov & Bisk 2018).
- A greedy black-box character attack: per correctly classified text, up to ``max_edits`` rounds;
  each round tries ``candidates`` random single edits and keeps the one that lowers the true
  class's probability most, stopping when the prediction flips (the greedy search of Gao et al.
  2018, "DeepWordBug", with random rather than scored positions). Reports the attack success rate
  and the mean edits needed.
- HotFlip (Ebrahimi et al. 2018, "HotFlip: white-box adversarial examples for text
  classification"), at the token level: the gradient g_t of the true class's log-probability with
  respect to token t's embedding gives, to first order, the change from swapping token t for
  token v as (E_v - e_t) . g_t. Each round scores every (position, token) pair that way, evaluates
  the ``candidates`` best exactly (one batched forward; 1 = the pure first-order HotFlip) and keeps
  the one that lowers the true class most; a position is flipped at most once, special tokens and
  ids past the tokenizer's vocabulary (padding rows of the embedding) are never used. Stops when
  the prediction changes or ``budget`` flips are spent. Reports accuracy under attack, attack
  success rate (over texts classified correctly before the attack) and mean flips needed. The
  flips are on token ids: decoding and re-encoding a flipped BPE text may not give the same ids.
- The perplexity shift of a language model under typos: each text clean vs perturbed, scored
  after ``<|endoftext|>`` (when the tokenizer has one) and cut to the model's context. Typos change
  how many tokens a text has, so per-token loss is not comparable across the two; the findings
  report **bits per character** (total NLL / ln 2 / characters scored), the details both.

Adversarial training (Goodfellow et al. 2015; for text, Pruthi et al. 2019 and Belinkov & Bisk
2018 train on noise): `adversarial_training` splits a labelled file once, holds the test part out,
writes the training part clean and augmented (originals + perturbed copies, same labels), trains a
classifier on each with `finetune_classifier`, and compares them on the held-out test texts: clean
accuracy (what robustness costs) and accuracy under noise (what it buys). finetune_classifier
splits each file again into train/val/(internal) test; those internal splits are not used for the
comparison, and in the augmented file a perturbed copy can sit in the internal val split while
its original trains (that only flatters the checkpoint choice).

Intervals: proportions (clean accuracy, accuracy under attack, attack success rates) get 95% Wilson
intervals; the paired accuracy drop and the mean edits a percentile bootstrap. Precondition: what an
attack does to a classifier means something only if it beats chance on the clean texts, so every
noise and attack finding requires the Wilson lower bound of clean accuracy to lie above chance (the
majority class's share of the attacked texts, or ``--chance``); otherwise they are inconclusive.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptlab.audit import perturb as P
from gptlab.audit.common import (
    AuditResult,
    Finding,
    bootstrap_interval,
    plot_png,
    rate_above,
    rate_finding,
    wilson_interval,
)
from gptlab.errors import GptlabError
from gptlab.eval.scoring import continuation_scores, text_window
from gptlab.options import float_list, fraction, nonnegative_int, option, positive_int, seed_type, word_list
from gptlab.run import Run

DEFAULT_RATES = (0.02, 0.05, 0.1, 0.2)
THREAT = "adversarial text"
ABOVE_CHANCE = "clean accuracy above chance"  # the precondition of every noise and attack finding


# --- helpers ------------------------------------------------------------------------------------


def tokenizer_alphabet(tokenizer) -> set[str] | None:
    """Characters a perturbation may introduce: a char tokenizer without an unknown token encodes
    only its vocabulary; anything else (byte-level BPE) encodes every character (None)."""
    chars = getattr(tokenizer, "chars", None)
    if chars is not None and getattr(tokenizer, "unk", None) is None:
        return set(chars)
    return None


def _as_classifier(classifier, device: str = "cpu"):
    from gptlab.finetune.classifier_run import load_classifier

    return load_classifier(classifier, device=device) if isinstance(classifier, (str, Path)) else classifier


def predict(clf, texts: Sequence[str], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class (N,) and class probabilities (N, K) of a LoadedClassifier."""
    probs = clf.predict_proba(list(texts), batch_size=batch_size).numpy()  # (N, K)
    return probs.argmax(-1), probs


def _accuracy(correct: np.ndarray) -> float:
    return float(np.mean(correct)) if len(correct) else float("nan")


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.mean() - b.mean())


def _pair(interval) -> tuple[float, float] | None:
    return None if interval is None else (float(interval[0]), float(interval[1]))


def _interval(stat, *arrays, seed: int) -> tuple[float, float] | None:
    if len(arrays[0]) < 2:
        return None
    return bootstrap_interval(stat, *arrays, n_boot=1000, seed=seed)


# --- random character noise ---------------------------------------------------------------------


def noise_accuracy(
    clf,
    texts: Sequence[str],
    labels: Sequence[int],
    kinds: Sequence[str] = P.KINDS,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
) -> dict[str, dict[float, np.ndarray]]:
    """kind -> rate -> (N,) bool, whether each text is still classified right after perturbation
    (rate 0 = the clean texts)."""
    alphabet = tokenizer_alphabet(clf.tokenizer)
    y = np.asarray(labels)
    clean = predict(clf, texts)[0] == y
    out: dict[str, dict[float, np.ndarray]] = {}
    for kind in P.check_kinds(kinds):
        out[kind] = {0.0: clean}
        for rate in rates:
            noisy = [P.perturb(t, kind, rate, seed, alphabet) for t in texts]
            out[kind][float(rate)] = predict(clf, noisy)[0] == y
    return out


# --- greedy character attack --------------------------------------------------------------------


@dataclass
class AttackOutcome:
    """One text's attack: whether it was right before, whether the attack flipped it, with how
    many edits (None when it did not), and the final text (or ids)."""

    correct_before: bool
    success: bool
    edits: int | None
    adversarial: Any


def greedy_char_attack(
    clf,
    texts: Sequence[str],
    labels: Sequence[int],
    kinds: Sequence[str] = P.KINDS,
    max_edits: int = 5,
    candidates: int = 16,
    seed: int = 0,
) -> list[AttackOutcome]:
    """Black-box greedy search over random single character edits (see the module docstring)."""
    kinds = P.check_kinds(kinds)
    alphabet = tokenizer_alphabet(clf.tokenizer)
    pred, _ = predict(clf, texts)
    outcomes = []
    for i, (text, label) in enumerate(zip(texts, labels)):
        if pred[i] != label:
            outcomes.append(AttackOutcome(False, False, None, text))
            continue
        rng = random.Random(f"{seed}|greedy|{i}")
        current, done = text, None
        for step in range(1, max_edits + 1):
            tries = list(
                dict.fromkeys(
                    P.apply(rng.choice(kinds), current, 1, rng, alphabet) for _ in range(candidates)
                )
            )
            tries = [t for t in tries if t != current] or [current]
            p_pred, probs = predict(clf, tries)
            best = int(np.argmin(probs[:, label]))  # the edit that hurts the true class most
            current = tries[best]
            if p_pred[best] != label:
                done = step
                break
        outcomes.append(AttackOutcome(True, done is not None, done, current))
    return outcomes


# --- HotFlip ------------------------------------------------------------------------------------


def allowed_token_mask(tokenizer, vocab_rows: int) -> torch.Tensor:
    """(V,) bool: ids HotFlip may substitute: real tokenizer ids, no special tokens."""
    mask = torch.zeros(vocab_rows, dtype=torch.bool)
    mask[: min(tokenizer.vocab_size, vocab_rows)] = True
    for token_id in tokenizer.special_tokens.values():
        if token_id < vocab_rows:
            mask[token_id] = False
    return mask


def _class_logprob(model, batch: torch.Tensor, label: int) -> torch.Tensor:
    """log p(label) for each row of ``batch`` (N, T), all rows full length."""
    lengths = torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long, device=batch.device)
    logits, _ = model(batch, lengths)  # (N, K)
    return logits.float().log_softmax(-1)[:, label]


def hotflip(
    model,
    ids: Sequence[int],
    label: int,
    allowed: torch.Tensor,
    budget: int = 5,
    candidates: int = 8,
) -> AttackOutcome:
    """HotFlip one text (token ids) against a GPTClassifier; ``allowed`` (V,) marks the ids that
    may be written in."""
    if budget < 0 or candidates < 1:
        raise GptlabError(f"HotFlip needs budget >= 0 and candidates >= 1, got {budget}, {candidates}")
    from gptlab.interpret.saliency import class_target

    device = next(model.parameters()).device
    model.eval()
    weight = model.gpt.transformer.wte.weight.detach().float()  # (V, C)
    blocked = ~allowed.to(device)  # (V,)
    idx = torch.as_tensor(list(ids), dtype=torch.long, device=device)[None]  # (1, T)
    with torch.no_grad():
        correct = int(model(idx, torch.tensor([idx.shape[1]], device=device))[0].argmax(-1)) == label
    if not correct:
        return AttackOutcome(False, False, None, idx[0].tolist())
    flipped: set[int] = set()
    for step in range(1, budget + 1):
        f, emb = class_target(model, idx[0], label)  # f: embeddings (N, T, C) -> log p(label) (N,)
        emb = emb.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(f(emb).sum(), emb)
        grad, e = grad[0].float(), emb[0].detach().float()  # (T, C)
        # first-order change of log p(label) when token t becomes v: E_v . g_t - e_t . g_t
        scores = grad @ weight.T - (grad * e).sum(-1, keepdim=True)  # (T, V)
        scores[:, blocked] = float("inf")
        scores[torch.arange(idx.shape[1], device=device), idx[0]] = float("inf")  # no-op swaps
        if flipped:
            scores[sorted(flipped)] = float("inf")
        k = min(candidates, int(torch.isfinite(scores).sum()))
        if k == 0:
            break
        top = scores.flatten().topk(k, largest=False).indices
        pos, tok = top // scores.shape[1], top % scores.shape[1]
        batch = idx.repeat(k, 1)  # (k, T)
        batch[torch.arange(k, device=device), pos] = tok
        with torch.no_grad():
            logp = _class_logprob(model, batch, label)  # (k,)
            best = int(logp.argmin())
            idx = batch[best : best + 1]
            flipped.add(int(pos[best]))
            still = int(model(idx, torch.tensor([idx.shape[1]], device=device))[0].argmax(-1)) == label
        if not still:
            return AttackOutcome(True, True, step, idx[0].tolist())
    return AttackOutcome(True, False, None, idx[0].tolist())


def hotflip_attack(
    clf, texts: Sequence[str], labels: Sequence[int], budget: int = 5, candidates: int = 8
) -> list[AttackOutcome]:
    """HotFlip every text of a LoadedClassifier (cut to its max_length); the adversarial ids
    are decoded back to text in ``adversarial``."""
    allowed = allowed_token_mask(clf.tokenizer, clf.model.gpt.transformer.wte.weight.shape[0])
    outcomes = []
    for ids, label in zip(clf.encode(texts), labels):
        o = hotflip(clf.model, ids, int(label), allowed, budget, candidates)
        o.adversarial = clf.tokenizer.decode(o.adversarial)
        outcomes.append(o)
    return outcomes


def attack_summary(outcomes: Sequence[AttackOutcome], seed: int = 0) -> dict[str, Any]:
    """Accuracy under attack (over all texts) and attack success rate (over texts right before the
    attack), with Wilson intervals, and mean edits needed (over successes), with a bootstrap one."""
    right = np.array([o.correct_before for o in outcomes], dtype=bool)
    success = np.array([o.success for o in outcomes], dtype=bool)
    edits = np.array([o.edits for o in outcomes if o.success], dtype=float)
    after = right & ~success
    s = success[right].astype(float)
    return {
        "texts": len(outcomes),
        "correct_before": int(right.sum()),
        "accuracy_before": _accuracy(right),
        "correct_after": int(after.sum()),
        "accuracy_under_attack": _accuracy(after),
        "accuracy_under_attack_interval": wilson_interval(int(after.sum()), len(after)),
        "successes": int(s.sum()),
        "success_rate": _accuracy(s),
        "success_rate_interval": wilson_interval(int(s.sum()), len(s)),
        "mean_edits": float(edits.mean()) if len(edits) else float("nan"),
        "mean_edits_interval": _interval(np.mean, edits, seed=seed) if len(edits) else None,
    }


# --- language model under typos -----------------------------------------------------------------


def text_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """(N, 3): total NLL (nats), tokens scored, characters scored per text. Each text is scored
    after ``<|endoftext|>`` when the tokenizer has one (every character counts), else from its
    second token; texts longer than the context are cut to it (`gptlab.eval.scoring.text_window`)."""
    windows = [text_window(tokenizer, text, model.config.block_size) for text in texts]
    scored = [ids for _, ids in windows]
    nll = -continuation_scores(model, [context for context, _ in windows], scored, max_batch_size=batch_size)
    return np.array([(n, len(ids), len(tokenizer.decode(ids))) for n, ids in zip(nll, scored)]).reshape(-1, 3)


def _bits_per_char(nll: np.ndarray, chars: np.ndarray) -> float:
    return float(nll.sum() / np.log(2) / chars.sum())


def lm_typo_shift(
    model,
    tokenizer,
    texts: Sequence[str],
    kinds: Sequence[str] = P.KINDS,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
) -> dict[str, Any]:
    """Per (kind, rate): bits per character and mean NLL per token, clean and perturbed, and the
    bits-per-character shift with a paired bootstrap interval over texts."""
    alphabet = tokenizer_alphabet(tokenizer)
    clean = text_nll(model, tokenizer, texts)
    out: dict[str, Any] = {
        "texts": len(texts),
        "clean": {
            "bits_per_char": _bits_per_char(clean[:, 0], clean[:, 2]),
            "nll_per_token": float(clean[:, 0].sum() / clean[:, 1].sum()),
            "perplexity_per_token": float(np.exp(clean[:, 0].sum() / clean[:, 1].sum())),
        },
        "perturbed": {},
    }

    def shift(nc, cc, nn, cn):
        return _bits_per_char(nn, cn) - _bits_per_char(nc, cc)

    for kind in P.check_kinds(kinds):
        for rate in rates:
            noisy = text_nll(model, tokenizer, [P.perturb(t, kind, rate, seed, alphabet) for t in texts])
            out["perturbed"][f"{kind}@{rate}"] = {
                "kind": kind,
                "rate": float(rate),
                "bits_per_char": _bits_per_char(noisy[:, 0], noisy[:, 2]),
                "nll_per_token": float(noisy[:, 0].sum() / noisy[:, 1].sum()),
                "perplexity_per_token": float(np.exp(noisy[:, 0].sum() / noisy[:, 1].sum())),
                "bits_per_char_shift": shift(clean[:, 0], clean[:, 2], noisy[:, 0], noisy[:, 2]),
                "bits_per_char_shift_interval": _interval(
                    shift, clean[:, 0], clean[:, 2], noisy[:, 0], noisy[:, 2], seed=seed
                ),
            }
    return out


# --- adversarial training -----------------------------------------------------------------------


def augment(
    data, kinds: Sequence[str] = P.KINDS, rate: float = 0.1, copies: int = 1, seed: int = 0, alphabet=None
):
    """ClassificationData with the originals followed by ``copies`` perturbed copies of each text
    (same labels); copy c of text i uses kind ``kinds[(i + c) % len(kinds)]``, so every kind is
    represented evenly."""
    from gptlab.data.tasks import ClassificationData

    kinds = P.check_kinds(kinds)
    if copies < 1:
        raise GptlabError(f"copies must be at least 1, got {copies}")
    texts, labels = list(data.texts), list(data.labels)
    for c in range(copies):
        for i, (text, label) in enumerate(zip(data.texts, data.labels)):
            texts.append(P.perturb(text, kinds[(i + c) % len(kinds)], rate, seed, alphabet, index=c))
            labels.append(label)
    return ClassificationData(texts, labels, list(data.label_names), data.source)


def write_jsonl(data, path: str | Path) -> Path:
    """A ClassificationData as JSONL ``{"text", "label"}`` lines (label names), which
    finetune_classifier reads with its default columns."""
    from gptlab.io import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (
        json.dumps({"text": t, "label": data.label_names[y]}, ensure_ascii=False) + "\n"
        for t, y in zip(data.texts, data.labels)
    )
    atomic_write_text(path, "".join(lines))
    return path


def adversarial_training(
    options,
    kinds: Sequence[str] = P.KINDS,
    rate: float = 0.1,
    copies: int = 1,
    attack_rates: Sequence[float] = (0.1,),
    hotflip_budget: int = 0,
) -> dict[str, Any]:
    """Train a clean and an adversarially trained classifier from ``options`` (a ClassifyOptions:
    base model, data, hyper-parameters; ``options.out`` becomes a folder holding both runs) and
    compare them on the held-out test texts. Returns a JSON-ready dict (see the module docstring)."""
    from gptlab.data.tasks import load_classification, stratified_split
    from gptlab.finetune.classifier_run import load_classifier
    from gptlab.finetune.classify import finetune_classifier

    data = load_classification(
        options.data, options.text_column, options.label_column, options.labels, options.header
    )
    train, _, test = stratified_split(data, 0.0, options.test_fraction, options.seed)
    if len(test) == 0:
        raise GptlabError(f"{options.data}: no test texts left out; raise the test fraction")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    from gptlab.rundir import load_model

    alphabet = tokenizer_alphabet(load_model(options.model)[1])  # what the base tokenizer can encode
    files = {
        "clean": write_jsonl(train, out / "train_clean.jsonl"),
        "adversarial": write_jsonl(
            augment(train, kinds, rate, copies, options.seed, alphabet), out / "train_adv.jsonl"
        ),
    }
    write_jsonl(test, out / "test.jsonl")
    # the held-out test split is already gone; the runs' own test split is a small unused slice
    val_fraction = options.val_fraction / (1 - options.test_fraction)
    result: dict[str, Any] = {"kinds": list(kinds), "rate": rate, "copies": copies, "test_texts": len(test)}
    correct: dict[
        str, tuple[np.ndarray, np.ndarray]
    ] = {}  # model -> (clean, noisy) per text, for the intervals
    for name, path in files.items():
        run_options = replace(
            options,
            data=str(path),
            out=str(out / name),
            text_column="text",
            label_column="label",
            labels=list(data.label_names),
            header=None,
            val_fraction=val_fraction,
            test_fraction=0.05,
            prompting_shots=(),
        )
        finetune_classifier(run_options)
        clf = load_classifier(out / name)
        noise = noise_accuracy(clf, test.texts, test.labels, kinds, attack_rates, options.seed)
        clean = next(iter(noise.values()))[0.0]
        entry = {
            "run": str(out / name),
            "train_texts": len(load_classification(path).texts),
            "clean_accuracy": _accuracy(clean),
            "noise_accuracy": {
                k: {str(r): _accuracy(v) for r, v in by.items() if r} for k, by in noise.items()
            },
        }
        attacked = np.concatenate([v for by in noise.values() for r, v in by.items() if r])
        entry["mean_noise_accuracy"] = _accuracy(attacked)
        correct[name] = (clean.astype(float), attacked.astype(float))
        if hotflip_budget:
            entry["hotflip"] = attack_summary(hotflip_attack(clf, test.texts, test.labels, hotflip_budget))
        result[name] = entry
    result["clean_accuracy_lost"] = (
        result["clean"]["clean_accuracy"] - result["adversarial"]["clean_accuracy"]
    )
    result["noise_accuracy_gained"] = (
        result["adversarial"]["mean_noise_accuracy"] - result["clean"]["mean_noise_accuracy"]
    )
    # paired over the same test texts (and the same perturbed copies): resample texts, not models
    result["clean_accuracy_lost_interval"] = _interval(
        _difference, correct["clean"][0], correct["adversarial"][0], seed=options.seed
    )
    result["noise_accuracy_gained_interval"] = _interval(
        _difference, correct["adversarial"][1], correct["clean"][1], seed=options.seed
    )
    return result


# --- the audit ----------------------------------------------------------------------------------


def read_test_split(run: str | Path, label_names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Texts and label indices of a classifier run's held-out ``test_split.jsonl``."""
    from gptlab.finetune.classifier_run import TEST_SPLIT_FILE

    path = Path(run) / TEST_SPLIT_FILE
    if not path.is_file():
        raise GptlabError(f"{path} not found: give the texts to attack with --data FILE")
    return read_labelled(path, label_names)


def read_labelled(
    path: str | Path, label_names: Sequence[str], text_column="text", label_column="label", header=None
):
    from gptlab.data.tasks import load_classification

    data = load_classification(path, text_column, label_column, labels=list(label_names), header=header)
    return data.texts, data.labels


def audit_robustness(
    classifier,
    texts: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    *,
    kinds: Sequence[str] = P.KINDS,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    max_texts: int | None = 500,
    greedy_edits: int = 5,
    greedy_candidates: int = 16,
    greedy_texts: int = 100,
    hotflip_budget: int = 5,
    hotflip_candidates: int = 8,
    hotflip_texts: int = 100,
    lm=None,
    lm_texts: int = 200,
    max_drop: float = 0.10,
    max_success_rate: float = 0.5,
    chance: float | None = None,
    adversarial: dict | None = None,
    device: str = "cpu",
) -> AuditResult:
    """The robustness audit of a classifier (a run directory or a LoadedClassifier) on ``texts``
    / ``labels`` (default: the run's test split); ``lm`` (a run directory or a (GPT, tokenizer)
    pair) adds the perplexity shift under typos; ``adversarial`` (what `adversarial_training`
    returned) adds its comparison. Attacks with a budget or text count of 0 are skipped. The noise
    and attack findings require clean accuracy clearly above ``chance`` (default: the majority
    class's share of the texts): its Wilson lower bound above it."""
    clf = _as_classifier(classifier, device)
    if texts is None:
        if not isinstance(classifier, (str, Path)):
            raise GptlabError("give texts and labels, or a classifier run directory with a test split")
        texts, labels = read_test_split(classifier, clf.label_names)
    texts, labels = list(texts), [int(y) for y in labels]
    if not texts or len(texts) != len(labels):
        raise GptlabError(f"need texts and as many labels, got {len(texts)} texts and {len(labels)} labels")
    if max_texts:
        texts, labels = texts[:max_texts], labels[:max_texts]
    rates = sorted({float(r) for r in rates if r > 0})
    if not rates:
        raise GptlabError("give at least one perturbation rate above 0 (edits per character)")
    kinds = P.check_kinds(kinds)
    top = rates[-1]
    findings: list[Finding] = []
    details: dict[str, Any] = {"texts": len(texts), "kinds": kinds, "rates": rates, "seed": seed}

    noise = noise_accuracy(clf, texts, labels, kinds, rates, seed)
    clean = noise[kinds[0]][0.0]
    if chance is None:  # always answering the commonest class scores this much
        chance = float(max(np.bincount(labels)) / len(labels))
    details["chance"] = chance
    above_chance = rate_above(ABOVE_CHANCE, int(clean.sum()), len(clean), chance, "clean accuracy")
    needs = (ABOVE_CHANCE,)
    findings.append(
        rate_finding(THREAT, "clean accuracy", int(clean.sum()), len(clean), note=f"chance {chance:.3g}")
    )
    details["noise"] = {k: {str(r): _accuracy(v) for r, v in by.items()} for k, by in noise.items()}
    for kind in kinds:
        noisy = noise[kind][top].astype(float)
        drop = _accuracy(clean) - _accuracy(noisy)
        interval = _interval(lambda c, n: c.mean() - n.mean(), clean.astype(float), noisy, seed=seed)
        findings.append(
            Finding(
                THREAT,
                f"accuracy drop, {kind} @ {top:g}",
                drop,
                interval,
                max_drop,
                True,
                f"accuracy {_accuracy(noisy):.3f} at {top:g} edits/char",
                n=len(clean),
                interval_kind="bootstrap",
                requires=needs,
            )
        )

    if greedy_edits and greedy_texts:
        g = attack_summary(
            greedy_char_attack(
                clf, texts[:greedy_texts], labels[:greedy_texts], kinds, greedy_edits, greedy_candidates, seed
            ),
            seed,
        )
        details["greedy_char_attack"] = g | {"max_edits": greedy_edits, "candidates": greedy_candidates}
        findings += _attack_findings("greedy char", g, "edits", max_success_rate)

    if hotflip_budget and hotflip_texts:
        outcomes = hotflip_attack(
            clf, texts[:hotflip_texts], labels[:hotflip_texts], hotflip_budget, hotflip_candidates
        )
        h = attack_summary(outcomes, seed)
        h["examples"] = [
            {"text": t, "adversarial": o.adversarial, "flips": o.edits}
            for t, o in zip(texts, outcomes)
            if o.success
        ][:5]
        details["hotflip"] = h | {"budget": hotflip_budget, "candidates": hotflip_candidates}
        findings += _attack_findings("HotFlip", h, "flips", max_success_rate)

    if lm is not None and lm_texts:
        from gptlab.rundir import load_model

        gpt, tok = load_model(lm, device=device) if isinstance(lm, (str, Path)) else lm
        shift = lm_typo_shift(gpt, tok, texts[:lm_texts], kinds, rates, seed)
        details["lm_typos"] = shift
        for kind in kinds:
            s = shift["perturbed"][f"{kind}@{top}"]
            findings.append(
                Finding(
                    "typos (LM)",
                    f"bits/char shift, {kind} @ {top:g}",
                    s["bits_per_char_shift"],
                    s["bits_per_char_shift_interval"],
                    note=f"clean {shift['clean']['bits_per_char']:.3f} bits/char",
                )
            )

    if adversarial is not None:
        details["adversarial_training"] = adversarial
        n = adversarial["test_texts"]
        findings.append(
            Finding(
                "adversarial training",
                "clean accuracy lost",
                adversarial["clean_accuracy_lost"],
                _pair(adversarial.get("clean_accuracy_lost_interval")),
                n=n,
                interval_kind="bootstrap",
                note="paired bootstrap over the held-out texts",
            )
        )
        findings.append(
            Finding("adversarial training", "noise accuracy gained", adversarial["noise_accuracy_gained"],
                    _pair(adversarial.get("noise_accuracy_gained_interval")), higher_is_worse=False, n=n,
                    interval_kind="bootstrap", note="paired bootstrap over the held-out texts")
        )  # fmt: skip

    plots = {"robustness_accuracy_vs_rate.png": plot_png(lambda ax: _draw_rates(ax, noise, kinds))}
    return AuditResult("robustness", findings, details, plots, [above_chance])


@dataclass
class RobustnessOptions:
    """`gptlab audit robustness`'s options (its flags are built from these fields)."""

    data: str | None = option(
        None, "labelled texts to attack (default: the run's test_split.jsonl)", metavar="FILE"
    )
    text_column: str = option("text", "text column of --data (and --train-data)")
    label_column: str = option("label", "label column of --data (and --train-data)")
    kinds: list[str] = option(list(P.KINDS), "perturbations, comma-separated", type=word_list)
    rates: list[float] = option(
        list(DEFAULT_RATES), "edits per character, comma-separated; findings use the largest", type=float_list
    )
    max_texts: int = option(500, "texts attacked with noise", type=positive_int)
    greedy_edits: int = option(5, "greedy char attack: edit budget (0 = off)", type=nonnegative_int)
    greedy_candidates: int = option(16, "random edits tried per round", type=positive_int)
    greedy_texts: int = option(100, "texts for the greedy attack", type=positive_int)
    hotflip_budget: int = option(5, "HotFlip: token flips allowed (0 = off)", type=nonnegative_int)
    hotflip_candidates: int = option(
        8, "first-order best flips evaluated exactly per round (1 = pure HotFlip)", type=positive_int
    )
    hotflip_texts: int = option(100, "texts for HotFlip", type=positive_int)
    lm: str | None = option(
        None, "a language-model run: measure its bits/char shift under the same typos", metavar="RUN"
    )
    lm_texts: int = option(200, "texts the LM scores", type=positive_int)
    max_drop: float = option(0.10, "fail when noise costs more accuracy than this", type=fraction)
    max_success_rate: float = option(0.5, "fail when an attack succeeds more often", type=fraction)
    chance: float | None = option(
        None,
        "precondition of the noise and attack verdicts: clean accuracy's lower 95%% bound must exceed "
        "this (default: the majority class's share of the texts)",
        type=fraction,
    )
    adversarial_training: str | None = option(
        None,
        "also train a clean and a noise-augmented classifier into DIR (base model and options from the run) "
        "and compare them on a held-out split",
        metavar="DIR",
    )
    train_data: str | None = option(
        None, "labelled file for --adversarial-training (default: the run's)", metavar="FILE"
    )
    adv_rate: float = option(0.1, "edits per character of the copies", type=fraction)
    adv_copies: int = option(1, "perturbed copies per training text", type=positive_int)
    epochs: int | None = option(
        None, "epochs for --adversarial-training (default: the run's)", type=positive_int
    )
    device: str = option("cpu", "cpu, cuda, mps or auto")
    seed: int = option(0, "seed of the perturbations and the bootstrap", type=seed_type)

    @classmethod
    def quick(cls, **changes) -> RobustnessOptions:
        """Fewer attacked texts (`audit all --quick`): the same attacks."""
        return cls(**{"max_texts": 100, "greedy_texts": 20, "hotflip_texts": 20} | changes)


def adversarial_options(run: Run, options: RobustnessOptions):
    """The classifier run's own fine-tuning options (its results.json), pointed at
    ``options.adversarial_training`` (and ``train_data``, ``epochs`` when given)."""
    from gptlab.finetune.classify import ClassifyOptions
    from gptlab.finetune.common import LoraOptions
    from gptlab.finetune.peft import PeftOptions
    from gptlab.io import read_json

    results = run.path / "results.json"
    if not results.is_file():
        raise GptlabError(
            f"{results} not found: --adversarial-training needs a run made by gptlab finetune classify"
        )
    saved = dict(read_json(results, "results file").get("options") or {})
    if not saved.get("model"):
        raise GptlabError(f"{results} does not record the run's options; retrain it with this gptlab")
    lora = saved.pop("lora", None) or {}
    saved["lora"] = LoraOptions(**{k: tuple(v) if k == "targets" else v for k, v in lora.items()})
    saved["peft"] = PeftOptions(**(saved.pop("peft", None) or {}))
    saved["prompting_shots"] = ()
    saved["progress"] = False
    saved["device"] = options.device
    known = set(ClassifyOptions.__dataclass_fields__)
    classify = ClassifyOptions(**{k: v for k, v in saved.items() if k in known})
    classify.out = options.adversarial_training
    if options.train_data:
        classify.data, classify.text_column, classify.label_column = (
            options.train_data,
            options.text_column,
            options.label_column,
        )
    if options.epochs:
        classify.epochs = options.epochs
    return classify


def run(run: Run, options: RobustnessOptions) -> AuditResult:
    """The robustness audit of a classifier run on ``options.data`` or its held-out test split;
    with ``options.adversarial_training`` a clean and a noise-augmented retraining compared."""
    clf = run.load_classifier(device=options.device)
    if options.data:
        texts, labels = read_labelled(
            options.data, clf.label_names, options.text_column, options.label_column
        )
    else:
        texts, labels = read_test_split(run.path, clf.label_names)
    adversarial = None
    if options.adversarial_training:
        adversarial = adversarial_training(
            adversarial_options(run, options),
            options.kinds,
            rate=options.adv_rate,
            copies=options.adv_copies,
            attack_rates=[max(options.rates)],
        )
    return audit_robustness(
        clf,
        texts,
        labels,
        kinds=options.kinds,
        rates=options.rates,
        seed=options.seed,
        max_texts=options.max_texts,
        greedy_edits=options.greedy_edits,
        greedy_candidates=options.greedy_candidates,
        greedy_texts=options.greedy_texts,
        hotflip_budget=options.hotflip_budget,
        hotflip_candidates=options.hotflip_candidates,
        hotflip_texts=options.hotflip_texts,
        lm=options.lm,
        lm_texts=options.lm_texts,
        max_drop=options.max_drop,
        max_success_rate=options.max_success_rate,
        chance=options.chance,
        adversarial=adversarial,
        device=options.device,
    )


# --- the LM typo audit (`audit all` on a language model) ------------------------------------------


@dataclass
class TyposOptions:
    """The typo audit's options: bits per character of held-out windows, clean and with typos."""

    texts: int = option(200, "held-out windows scored", type=positive_int)
    rates: tuple[float, ...] = option((0.05, 0.2), "edits per character; findings use the largest", cli=False)
    device: str = option("cpu", "cpu, cuda, mps or auto")
    seed: int = option(0, "seed of the windows and the typos", type=seed_type)

    @classmethod
    def quick(cls, **changes) -> TyposOptions:
        return cls(**{"texts": 50} | changes)


def run_typos(run: Run, options: TyposOptions) -> AuditResult:
    """The LM half of the robustness audit: bits per character on held-out windows of the run's
    data, clean and with each kind of typo (`lm_typo_shift`)."""
    model, tokenizer = run.load(device=options.device)
    windows = run.windows("val", options.texts, min(64, model.config.block_size), options.seed)
    texts = [tokenizer.decode(w) for w in windows]
    rates = options.rates
    shift = lm_typo_shift(model, tokenizer, texts, P.KINDS, rates, options.seed)
    findings = [
        Finding(
            "typos (LM)",
            f"bits/char shift, {kind} @ {rates[-1]:g}",
            shift["perturbed"][f"{kind}@{rates[-1]:g}"]["bits_per_char_shift"],
            shift["perturbed"][f"{kind}@{rates[-1]:g}"]["bits_per_char_shift_interval"],
            note=f"clean {shift['clean']['bits_per_char']:.3f} bits/char",
        )
        for kind in P.KINDS
    ]
    return AuditResult("typos", findings, {"lm_typos": shift, "texts": len(texts)})


def _attack_findings(name: str, s: dict, unit: str, max_success_rate: float) -> list[Finding]:
    needs = (ABOVE_CHANCE,)
    return [
        rate_finding(THREAT, f"accuracy under {name} attack", s["correct_after"], s["texts"],
                     note=f"clean {s['accuracy_before']:.3f}", requires=needs),
        rate_finding(THREAT, f"{name} attack success rate", s["successes"], s["correct_before"], max_success_rate,
                     True, f"over {s['correct_before']} texts right before the attack", requires=needs),
        Finding(THREAT, f"{name} mean {unit} needed", s["mean_edits"], s["mean_edits_interval"],
                n=s["successes"], interval_kind="bootstrap", requires=needs),
    ]  # fmt: skip


def _draw_rates(ax, noise: dict[str, dict[float, np.ndarray]], kinds: Collection[str]) -> None:
    for kind in kinds:
        rs = sorted(noise[kind])
        ax.plot(rs, [_accuracy(noise[kind][r]) for r in rs], "-o", label=kind)
    ax.set(
        xlabel="perturbation rate (edits per character)",
        ylabel="accuracy",
        title="accuracy under character noise",
    )
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
