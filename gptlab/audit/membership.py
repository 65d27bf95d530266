"""Membership inference (`gptlab audit membership`): can an attacker tell whether a text was in the
training set from the model's outputs alone?

Members are texts from the training data, non-members held-out texts from the same distribution.
Each text gets, from teacher-forced losses (one plain forward pass, after <|endoftext|> when the
tokenizer has one, cut to the model's context):

- **loss**: the mean token cross-entropy under the target model; members score lower (the
  loss-threshold attack, Yeom, Giacomelli, Fredrikson & Jha, CSF 2018).
- **zlib**: loss / zlib entropy (bits of the zlib-compressed UTF-8 text): texts that are easy for
  any compressor (repetitive) are discounted (Carlini et al., "Extracting Training Data from Large
  Language Models", USENIX Security 2021, Section 6.2).
- **reference**: target loss - reference loss, where the reference model was trained on data
  disjoint from the target's: a text that is easy for both is just easy; only the difference is
  evidence of membership (Carlini et al. 2021; the calibration of Watson et al., ICLR 2022, and
  Mireshghallah et al. 2022's likelihood-ratio form for LMs). Each model reads the text with its
  own tokenizer.
- **classifier**: a gradient-boosting classifier (scikit-learn) on those features (plus the zlib
  length, the token count and the reference loss). Its scores are out-of-fold: stratified k-fold
  cross-validation, each text scored by a model that did not see its label, so its AUC is an
  honest estimate rather than a fit to the evaluation set. It is the strongest attacker here and
  assumes some labelled members and non-members (as the shadow-model attack of Shokri et al., S&P
  2017, does through shadow models). On a few hundred texts without signal its out-of-fold AUC
  scatters around 0.5 and leans slightly below it (a known effect of cross-validating a flexible
  model on noise); read it with its interval.

Texts are scored from the start of a document (after <|endoftext|>); windows cut from a run's
token splits start mid-document, which costs members and non-members alike.

For every score (higher = "more likely a member": the negated losses and ratios) the audit reports
the ROC AUC and the TPR at 1% and 0.1% FPR (the low-FPR regime that matters for privacy, Carlini
et al., "Membership Inference Attacks From First Principles", S&P 2022), each with a stratified
percentile bootstrap interval, and the ROC curves on linear and log axes.

Precondition: a TPR at FPR x is only resolvable when x of the non-members is at least one text
(``min_false_positives``, default 1): with fewer than 1/x non-members the TPR "at 1% FPR" is the
TPR at FPR 0, a different and noisier number, so those findings are inconclusive (100 non-members
for 1%, 1000 for 0.1%). The loss gap gets a stratified bootstrap interval; no threshold.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.audit.common import (
    AuditResult,
    Finding,
    Precondition,
    bootstrap_interval,
    plot_png,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from gptlab.errors import GptlabError
from gptlab.options import fraction, int_at_least, option, positive_int, seed_type
from gptlab.run import Run

THREAT = "membership inference"
FPRS = (0.01, 0.001)
SCORE_LABELS = {
    "loss": "loss",
    "zlib": "zlib ratio",
    "reference": "reference-calibrated",
    "classifier": "attack classifier (OOF)",
}


def text_losses(model, tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean token cross-entropy (nats) and the number of scored tokens of every text (its first
    window: see `gptlab.eval.scoring.text_window`)."""
    from gptlab.eval.scoring import continuation_scores, text_window

    windows = [text_window(tokenizer, text, model.config.block_size) for text in texts]
    scores = continuation_scores(
        model, [context for context, _ in windows], [scored for _, scored in windows]
    )
    counts = np.array([len(scored) for _, scored in windows], dtype=np.float64)
    return -scores / counts, counts


def zlib_bits(texts: Sequence[str]) -> np.ndarray:
    return np.array([8.0 * len(zlib.compress(t.encode("utf-8"), 9)) for t in texts])


def membership_features(
    model, tokenizer, texts: Sequence[str], reference: tuple[Any, Any] | None = None
) -> dict[str, np.ndarray]:
    """Per-text features: loss, zlib_bits, zlib_ratio, n_tokens and, with a (model, tokenizer)
    reference, ref_loss and calibrated = loss - ref_loss."""
    loss, n_tokens = text_losses(model, tokenizer, texts)
    bits = zlib_bits(texts)
    feats = {"loss": loss, "zlib_bits": bits, "zlib_ratio": loss / bits, "n_tokens": n_tokens}
    if reference is not None:
        ref_loss, _ = text_losses(reference[0], reference[1], texts)
        feats["ref_loss"] = ref_loss
        feats["calibrated"] = loss - ref_loss
    return feats


def attack_classifier_scores(
    features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold member probabilities of a gradient-boosting classifier: each row is scored by a
    model fitted on the other folds only."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = np.asarray(labels)
    smallest = int(min(labels.sum(), len(labels) - labels.sum()))
    folds = min(folds, smallest)
    if folds < 2:
        raise GptlabError("the attack classifier needs at least 2 members and 2 non-members")
    # shallow trees, few rounds and a leaf minimum: the attack sets are small (hundreds of texts)
    clf = GradientBoostingClassifier(
        n_estimators=50, max_depth=2, learning_rate=0.1, min_samples_leaf=5, random_state=seed
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(clf, features, labels, cv=cv, method="predict_proba")[:, 1]


def membership_scores(
    member_feats: dict[str, np.ndarray],
    nonmember_feats: dict[str, np.ndarray],
    folds: int = 5,
    seed: int = 0,
    classifier: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Attack scores (higher = member) for members followed by non-members, and the labels."""
    feats = {k: np.r_[member_feats[k], nonmember_feats[k]] for k in member_feats}
    labels = np.r_[np.ones(len(member_feats["loss"])), np.zeros(len(nonmember_feats["loss"]))].astype(int)
    scores = {"loss": -feats["loss"], "zlib": -feats["zlib_ratio"]}
    if "calibrated" in feats:
        scores["reference"] = -feats["calibrated"]
    if classifier:
        names = [
            k for k in ("loss", "zlib_ratio", "zlib_bits", "n_tokens", "ref_loss", "calibrated") if k in feats
        ]
        X = np.stack([feats[k] for k in names], axis=1)  # (N, F)
        scores["classifier"] = attack_classifier_scores(X, labels, folds=folds, seed=seed)
    return scores, labels


def audit_membership(
    model,
    tokenizer,
    members: Sequence[str],
    nonmembers: Sequence[str],
    reference: tuple[Any, Any] | str | Path | None = None,
    *,
    folds: int = 5,
    classifier: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    auc_threshold: float = 0.6,
    tpr_thresholds: tuple[float, float] = (0.05, 0.01),
    min_false_positives: int = 1,
) -> AuditResult:
    """Membership inference on ``members`` (training texts) vs ``nonmembers`` (held-out texts);
    ``reference`` is a (model, tokenizer) or run directory trained on disjoint data. A score fails
    when its AUC exceeds ``auc_threshold`` or its TPR at 1% / 0.1% FPR exceeds ``tpr_thresholds``
    (chance is the FPR itself); a TPR at FPR x needs x * #non-members >= ``min_false_positives``
    (else it is inconclusive)."""
    from gptlab.rundir import load_model

    if isinstance(model, (str, Path)):
        model, tokenizer = load_model(model)
    if isinstance(reference, (str, Path)):
        reference = load_model(reference)
    if len(members) < 2 or len(nonmembers) < 2:
        raise GptlabError("membership inference needs at least 2 member and 2 non-member texts")
    mf = membership_features(model, tokenizer, members, reference)
    nf = membership_features(model, tokenizer, nonmembers, reference)
    scores, labels = membership_scores(mf, nf, folds=folds, seed=seed, classifier=classifier)
    losses = np.r_[mf["loss"], nf["loss"]]
    member = np.r_[np.ones(len(mf["loss"])), np.zeros(len(nf["loss"]))]

    def loss_gap(loss, y):
        return float(loss[y == 0].mean() - loss[y == 1].mean())

    findings: list[Finding] = [
        Finding(
            THREAT,
            "loss gap (non-members - members)",
            loss_gap(losses, member),
            bootstrap_interval(loss_gap, losses, member, n_boot=n_boot, seed=seed, stratify=member),
            note="nats per token; the generalisation gap the loss attack exploits",
            n=len(losses),
            interval_kind="bootstrap",
        )
    ]
    preconditions = [
        Precondition(
            _resolves(fpr),
            fpr * len(nonmembers) >= min_false_positives,
            f"{len(nonmembers)} non-members: {fpr:g} of them is {fpr * len(nonmembers):.3g} texts, "
            f"at least {min_false_positives} needed ({int(np.ceil(min_false_positives / fpr))} non-members)",
        )
        for fpr in FPRS
    ]
    details: dict[str, Any] = {
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
        "mean_loss": {"members": float(mf["loss"].mean()), "nonmembers": float(nf["loss"].mean())},
        "scores": {},
    }
    curves = {}
    for name, s in scores.items():
        label = SCORE_LABELS[name]
        auc = roc_auc(s, labels)
        auc_iv = bootstrap_interval(roc_auc, s, labels, n_boot=n_boot, seed=seed, stratify=labels)
        findings.append(Finding(THREAT, f"ROC AUC ({label})", auc, auc_iv, auc_threshold, n=len(labels),
                                interval_kind="bootstrap"))  # fmt: skip
        entry = {"auc": auc, "auc_interval": list(auc_iv)}
        for fpr, threshold in zip(FPRS, tpr_thresholds):
            tpr = tpr_at_fpr(s, labels, fpr)
            iv = bootstrap_interval(
                lambda a, b, f=fpr: tpr_at_fpr(a, b, f), s, labels, n_boot=n_boot, seed=seed, stratify=labels
            )
            findings.append(
                Finding(
                    THREAT,
                    f"TPR@{fpr * 100:g}%FPR ({label})",
                    tpr,
                    interval=iv,
                    threshold=threshold,
                    note=f"chance = {fpr:g}",
                    n=len(labels),
                    interval_kind="bootstrap",
                    requires=(_resolves(fpr),),
                )
            )
            entry[f"tpr_at_{fpr:g}"] = tpr
            entry[f"tpr_at_{fpr:g}_interval"] = list(iv)
        details["scores"][name] = entry
        curves[label] = roc_curve(s, labels)
    plots = {"roc.png": _roc_plot(curves, log=False), "roc_log.png": _roc_plot(curves, log=True)}
    return AuditResult("membership", findings, details, plots, preconditions)


def _resolves(fpr: float) -> str:
    return f"non-members resolve {fpr * 100:g}% FPR"


@dataclass
class MembershipOptions:
    """`gptlab audit membership`'s options (its flags are built from these fields)."""

    members: str | None = option(
        None, "training texts, one per line (default: run's train split)", metavar="FILE"
    )
    nonmembers: str | None = option(
        None, "held-out texts, one per line (default: the run's val split)", metavar="FILE"
    )
    reference: str | None = option(None, "a model trained on data disjoint from the target's", metavar="RUN")
    windows: int = option(500, "windows per split when reading the run", type=positive_int)
    window_tokens: int = option(64, "tokens per window (at most the context)", type=positive_int)
    max_texts: int = option(2000, "at most this many texts per side", type=positive_int)
    folds: int = option(5, "cross-validation folds of the attack classifier", type=int_at_least(2))
    classifier: bool = option(True, "skip the gradient-boosting attack")
    bootstrap: int = option(1000, "bootstrap resamples", type=positive_int)
    auc_threshold: float = option(0.6, "fail when an AUC exceeds this", type=fraction)
    min_false_positives: int = option(
        1,
        "a TPR at FPR x gets a verdict only when x of the non-members is at least this many texts "
        "(1: 100 non-members for 1%%, 1000 for 0.1%%)",
        type=positive_int,
    )
    device: str = option("cpu", "cpu, cuda, mps or auto")
    seed: int = option(0, "seed of the windows, folds and bootstrap", type=seed_type)

    @classmethod
    def quick(cls, **changes) -> MembershipOptions:
        """Fewer windows and resamples (`audit all --quick`): the same estimators."""
        return cls(**{"windows": 100, "bootstrap": 200} | changes)


def _read_lines(path: str) -> list[str]:
    from gptlab.data.corpus import read_text_file

    return [line for line in read_text_file(path).splitlines() if line.strip()]


def run(run: Run, options: MembershipOptions) -> AuditResult:
    """Membership inference on a run: ``options.members`` / ``nonmembers`` files, or windows of
    its training split (members) and validation split (non-members) decoded to text."""
    import random

    model, tokenizer = run.load(device=options.device)
    reference = Run.open(options.reference).load(device=options.device) if options.reference else None
    if bool(options.members) != bool(options.nonmembers):
        raise GptlabError("give both --members and --nonmembers, or neither (then the run's splits are used)")
    if options.members:
        members, nonmembers = _read_lines(options.members), _read_lines(options.nonmembers)
        source = {"members": options.members, "nonmembers": options.nonmembers}
    else:
        length = min(options.window_tokens, model.config.block_size)
        members = [tokenizer.decode(w) for w in run.windows("train", options.windows, length, options.seed)]
        nonmembers = [
            tokenizer.decode(w) for w in run.windows("val", options.windows, length, options.seed + 1)
        ]
        source = {
            "members": "train split windows",
            "nonmembers": "val split windows",
            "window_tokens": length,
        }
    rng = random.Random(options.seed)
    if len(members) > options.max_texts:
        members = rng.sample(members, options.max_texts)
    if len(nonmembers) > options.max_texts:
        nonmembers = rng.sample(nonmembers, options.max_texts)
    result = audit_membership(
        model,
        tokenizer,
        members,
        nonmembers,
        reference=reference,
        folds=options.folds,
        classifier=options.classifier,
        n_boot=options.bootstrap,
        seed=options.seed,
        auc_threshold=options.auc_threshold,
        min_false_positives=options.min_false_positives,
    )
    result.details["model"] = str(run.path)
    result.details["reference"] = options.reference
    result.details["source"] = source
    return result


def _roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], log: bool) -> bytes:
    def draw(ax):
        floor = 1e-4
        for label, (fpr, tpr) in curves.items():
            if log:
                ax.step(np.maximum(fpr, floor), np.maximum(tpr, floor), where="post", label=label)
            else:
                ax.plot(fpr, tpr, label=label)
        grid = np.logspace(-4, 0, 50) if log else np.linspace(0, 1, 2)
        ax.plot(grid, grid, "k--", lw=0.8, label="chance")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("Membership inference ROC" + (" (log scale)" if log else ""))
        ax.legend(fontsize=8)

    return plot_png(draw)
