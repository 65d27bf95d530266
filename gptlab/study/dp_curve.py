"""The privacy-utility curve of the study's ``defences`` stage: DP-SGD at several epsilons on one
canary-inserted corpus, each run measured for utility (validation perplexity), canary exposure
per repetition count and membership-inference AUC, each against the non-private run (epsilon inf).

The corpus is the pretraining corpus with ``per_count`` canaries inserted 1, 4, 16 ... times each
(gptlab.audit.memorization.insert_canaries) and as many never inserted (the controls, exposure by
chance). Every run trains the same recipe on it with ``dp.epsilon`` set (0, i.e. off, for inf).

Intervals, all 95%:
- utility: per val window, the run's mean NLL minus the non-private run's on the same window; a
  normal interval over windows (paired), reported as a perplexity change in percent.
- exposure: per canary, its exposure under the run minus under the non-private run (paired over
  the same canaries), Student-t interval (a few canaries per count), per repetition count.
- membership: the loss attack (members: train windows, non-members: val windows) AUC with a
  stratified bootstrap interval, and the AUC difference to the non-private run bootstrapped over
  the same texts.

DP-SGD's guarantee is per occurrence: a canary present r times is protected at the group-privacy
level r * epsilon (and r * e^((r-1) epsilon) * delta), which for r = 16 and epsilon = 8 is no
protection at all. Each row states that bound; `group_note` writes the explanation the report
gives when a repeated canary's exposure does not fall.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.study.findings import fmt, mean_interval, t_interval

CORPUS_FILE = "corpus.txt"
CANARIES_FILE = "canaries.json"


def epsilon_label(eps: float) -> str:
    return "inf" if math.isinf(eps) else f"{eps:g}"


def parse_epsilons(values: list[str]) -> list[float]:
    from gptlab.errors import GptlabError

    out = []
    for v in values:
        try:
            eps = float(v)
        except ValueError:
            raise GptlabError(f"defences.epsilons: {v!r} is not a number or 'inf'") from None
        if not eps > 0:
            raise GptlabError(f"defences.epsilons: {v!r} must be > 0 (inf: no DP)")
        out.append(eps)
    if math.inf not in out:  # every comparison is against the non-private run
        out.insert(0, math.inf)
    return out


def canary_corpus(config, out: Path, fmt_: str, repeats: list[int], per_count: int, seed: int):
    """Write OUT/corpus.txt (the config's corpus with canaries) and OUT/canaries.json; returns the
    canaries (with their repeats; 0 = control)."""
    from gptlab.audit.memorization import insert_canaries, make_canaries, write_canaries
    from gptlab.data.corpus import DOCUMENT_SEPARATOR, config_texts
    from gptlab.io import atomic_write_text

    text = DOCUMENT_SEPARATOR.join(config_texts(config.data))
    counts = [r for r in [0, *repeats] for _ in range(per_count)]
    canaries = make_canaries(len(counts), fmt_, seed)
    # canaries only where the train split comes from: the val split is the corpus's tail
    span = max(0.05, 1.0 - config.data.val_fraction - 0.02)
    text, canaries = insert_canaries(text, canaries, counts, seed, span=span)
    atomic_write_text(out / CORPUS_FILE, text)
    write_canaries(out / CANARIES_FILE, canaries)
    return canaries


def privacy_curve(
    config,
    out_dir: str | Path,
    epsilons: list[float],
    canary_format: str,
    repeats: list[int],
    per_count: int,
    membership_texts: int,
    eval_tokens: int,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    n_boot: int = 500,
) -> dict[str, Any]:
    """Train ``config`` (a RunConfig) on the canary corpus at each epsilon and measure it; see the
    module doc. Returns the JSON-ready result (runs under OUT/eps-<epsilon>)."""
    from gptlab.audit.common import bootstrap_interval, roc_auc
    from gptlab.audit.membership import membership_features
    from gptlab.audit.memorization import canary_exposures
    from gptlab.data.shards import TokenDataset
    from gptlab.run import Run
    from gptlab.study.stages.pretrain import window_nll
    from gptlab.train import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    canaries = canary_corpus(config, out, canary_format, repeats, per_count, seed)
    data = replace(config.data, input=[str(out / CORPUS_FILE)], dir="")
    measured: dict[float, dict[str, Any]] = {}
    for eps in epsilons:
        label = epsilon_label(eps)
        cfg = replace(
            config,
            data=data,
            dp=replace(config.dp, epsilon=0.0 if math.isinf(eps) else eps),
            train=replace(config.train, out_dir=str(out / f"eps-{label}"), progress=progress),
        )
        trained = train(cfg)
        if trained.stop_reason in ("interrupted", "terminated"):
            raise KeyboardInterrupt
        run = Run.open(trained.run_dir)
        model, tokenizer = run.load(device=device)
        val = np.asarray(TokenDataset(run.data_dir, "val").tokens[: eval_tokens + 1], dtype=np.int64)
        length = min(model.config.block_size, 64)
        members = [tokenizer.decode(w) for w in run.windows("train", membership_texts, length, seed)]
        nonmembers = [tokenizer.decode(w) for w in run.windows("val", membership_texts, length, seed + 1)]
        measured[eps] = {
            "run": f"eps-{label}",
            "privacy": trained.privacy,
            "steps": trained.step,
            "window_loss": np.array([nll.mean() for _, nll in window_nll(model, val)]),
            "exposures": canary_exposures(model, tokenizer, canaries, seed=seed),
            "member_loss": membership_features(model, tokenizer, members + nonmembers)["loss"],
        }
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))].astype(int)
    base = measured[math.inf]
    rows = []
    for eps, m in measured.items():
        loss = float(m["window_loss"].mean())
        d_loss, d_iv = mean_interval(list(m["window_loss"] - base["window_loss"]))
        scores = -m["member_loss"]
        auc = roc_auc(scores, labels)
        auc_iv = bootstrap_interval(roc_auc, scores, labels, n_boot=n_boot, seed=seed, stratify=labels)
        d_auc = auc - roc_auc(-base["member_loss"], labels)
        d_auc_iv = None
        if not math.isinf(eps):
            d_auc_iv = list(
                bootstrap_interval(
                    lambda a, b, y: roc_auc(a, y) - roc_auc(b, y),
                    scores,
                    -base["member_loss"],
                    labels,
                    n_boot=n_boot,
                    seed=seed,
                    stratify=labels,
                )
            )
        rows.append(
            {
                "epsilon": label_value(eps),
                "label": epsilon_label(eps),
                "run": m["run"],
                "steps": m["steps"],
                "privacy": m["privacy"],
                "val_loss": loss,
                "val_perplexity": math.exp(loss),
                "val_windows": len(m["window_loss"]),
                "loss_change": None if math.isinf(eps) else d_loss,
                "loss_change_ci95": None if math.isinf(eps) or d_iv is None else list(d_iv),
                "perplexity_change_pct": None if math.isinf(eps) else 100 * (math.exp(d_loss) - 1),
                "perplexity_change_pct_ci95": None
                if math.isinf(eps) or d_iv is None
                else [100 * (math.exp(d_iv[0]) - 1), 100 * (math.exp(d_iv[1]) - 1)],
                "membership_auc": auc,
                "membership_auc_ci95": list(auc_iv),
                "membership_auc_change": None if math.isinf(eps) else d_auc,
                "membership_auc_change_ci95": d_auc_iv,
                "exposure": _by_repeats(m["exposures"], base["exposures"], eps, math.isinf(eps)),
            }
        )
    space = canaries[0].space_size
    return {
        "canary_format": canary_format,
        "candidates": space,
        "max_exposure": math.log2(space),
        "repeats": [0, *repeats],
        "canaries_per_count": per_count,
        "membership_texts": {"members": len(members), "nonmembers": len(nonmembers), "tokens": length},
        "rows": rows,
        "canaries": {r["run"]: _canary_rows(measured[e]["exposures"]) for e, r in zip(measured, rows)},
    }


def label_value(eps: float) -> float | str:
    """Epsilon as JSON holds it ("inf" for no DP: strict JSON has no infinity)."""
    return "inf" if math.isinf(eps) else eps


def _canary_rows(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("secret", "repeats", "exposure", "rank")} for r in rows]


def _by_repeats(rows: list[dict], base_rows: list[dict], eps: float, is_base: bool) -> list[dict]:
    """Per repetition count: mean exposure with its interval over canaries, the paired change from
    the non-private run, the group-privacy bound r * epsilon."""
    out = []
    for r in sorted({row["repeats"] for row in rows}):
        idx = [i for i, row in enumerate(rows) if row["repeats"] == r]
        values = [rows[i]["exposure"] for i in idx]
        mean, iv = t_interval(values)
        entry: dict[str, Any] = {
            "repeats": r,
            "canaries": len(idx),
            "exposure": mean,
            "exposure_ci95": list(iv) if iv else None,
            "exposure_max": max(values),
            "group_epsilon": None if r == 0 else label_value(r * eps),
        }
        if not is_base:
            change, change_iv = t_interval([rows[i]["exposure"] - base_rows[i]["exposure"] for i in idx])
            entry["change"] = change
            entry["change_ci95"] = list(change_iv) if change_iv else None
        out.append(entry)
    return out


def group_note(eps_label: str, entry: dict) -> str | None:
    """The explanation when a repeated canary's exposure did not measurably fall under DP: DP bounds
    one occurrence; r > 1 occurrences are protected only at r * epsilon."""
    r, iv = entry["repeats"], entry.get("change_ci95")
    if r < 2 or "change" not in entry or (iv is not None and iv[1] < 0):
        return None
    outcome = (
        "rose" if iv is not None and iv[0] > 0 else "did not measurably fall"
    )  # the interval decides, not the point estimate
    bound = entry["group_epsilon"]
    shown = bound if isinstance(bound, str) else fmt(bound)
    weak = isinstance(bound, str) or bound >= 10  # e^10 > 20,000: a ratio that bounds nothing in practice
    return (
        f"At epsilon={eps_label}, canaries inserted {r} times: exposure {outcome} "
        f"(change {fmt(entry['change'])} bits, 95% CI {_iv(iv)}). This does not contradict DP-SGD: its "
        f"guarantee covers one occurrence (one training window), and {r} copies are protected only at the "
        f"group-privacy level r*epsilon = {shown} (the probability of any outcome may change by a factor "
        f"of up to e^{shown}, plus the delta terms), {'which is no protection at all' if weak else 'a far weaker guarantee'}: "
        "a secret repeated that often is a pattern of the data, which DP-SGD does not stop the model from learning."
    )


def _iv(iv) -> str:
    return "none" if iv is None else f"[{fmt(iv[0])}, {fmt(iv[1])}]"
