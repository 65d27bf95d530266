"""Stage ``defences``: each mitigation against the attack it targets, before and after, with 95%
intervals (the experiments are gptlab.study.dp_curve and gptlab.study.mitigations):

- ``dp``: DP-SGD at each of ``epsilons`` on the pretraining recipe with canaries inserted
  1, 4, 16 times: validation perplexity against canary exposure (per repetition count, with the
  group-privacy bound r * epsilon) and membership-inference AUC: the privacy-utility curve.
- ``adversarial``: a classifier trained on typo-augmented data: accuracy under typos and HotFlip.
- ``cda``: counterfactual data augmentation of the pretraining corpus: the bias gap.
- ``injection``: the input guard and injection-aware fine-tuning on an instruction model built
  as examples/injection-lab.sh builds it: attack success per family.
- ``poisoning``: the spectral-signature detector's flagged rows removed: backdoor success.

``experiments`` switches them on and off. The findings claim a change only when its interval
excludes zero; the audits' failed preconditions and inconclusive verdicts are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.study.stage import Section, Stage, StageContext

EXPERIMENTS = ("dp", "adversarial", "cda", "injection", "poisoning")
CURVE_FIGURE = "privacy_utility.png"


@dataclass
class DefencesSection:
    experiments: list[str] = field(default_factory=lambda: list(EXPERIMENTS))  # which run ([] = none)
    # dp: the [pretrain] recipe (plus dp_set) on its corpus with canaries, at each epsilon ("inf": no DP)
    epsilons: list[str] = field(default_factory=lambda: ["inf", "8", "3", "1"])
    dp_set: list[str] = field(default_factory=list)  # key=value overrides on the recipe for these runs
    canary_format: str = "the secret code is NNNNN"  # N: a digit (10^5 candidates: exact ranks)
    canary_repeats: list[int] = field(default_factory=lambda: [1, 4, 16])
    canaries_per_count: int = 4  # canaries per repetition count (and as many controls, never inserted)
    membership_texts: int = 100  # train windows (members) and val windows (non-members)
    eval_tokens: int = 20_000  # val tokens for the perplexity
    # adversarial, poisoning: classifiers fine-tuned from the study's model
    classify_data: str = ""  # labelled file ("": the SST-2 train subset of the data registry)
    text_column: str = "sentence"  # a name or a 0-based position
    label_column: str = "label"
    max_texts: int = 400  # a seeded random subset of the file
    classify_epochs: int = 3
    classify_lr: float = 3e-4
    classify_batch_size: int = 16
    adv_rate: float = 0.1  # typo edits per character, in training copies and in the attack
    hotflip_budget: int = 3  # token flips (0: no HotFlip)
    poison_rate: float = 0.1
    trigger: str = "cf"
    detector_multiplier: float = 1.5  # remove the top multiplier x eps of each class
    # cda
    cda_pairs: str = "occupations"  # built-in probe pairs: occupations, names or all
    cda_min_pairs: int = 20
    n_boot: int = 500
    # injection: examples/injection-lab.sh's model
    injection_suite: int = 3000  # probe-tasks examples
    injection_vocab: int = 1200
    injection_set: list[str] = field(
        default_factory=lambda: ["model.n_layer=3", "model.n_head=4", "model.n_embd=128", "model.block_size=192",
                                 "model.dropout=0.0", "train.max_steps=200", "train.batch_size=16"]
    )  # fmt: skip
    injection_epochs: int = 8
    injection_probe_examples: int = 4  # clean inputs per task, each crossed with every attack
    injection_defence_examples: int = 200


def run(ctx: StageContext) -> dict:
    section: DefencesSection = ctx.section
    unknown = [e for e in section.experiments if e not in EXPERIMENTS]
    if unknown:
        raise GptlabError(
            f"defences.experiments: unknown {', '.join(unknown)} (known: {', '.join(EXPERIMENTS)})"
        )
    seed, device = ctx.config.study.seed, ctx.config.study.device
    model = str(ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"])
    no_recipe = _no_recipe(ctx)
    result: dict = {"experiments": list(section.experiments), "skipped": {}}
    if "dp" in section.experiments:
        if no_recipe:
            result["skipped"]["dp"] = no_recipe
        else:
            result["dp"] = _dp(ctx, section)
    if {"adversarial", "poisoning"} & set(section.experiments):
        from gptlab.study import mitigations

        data, labels, unencodable = mitigations.labelled_subset(
            section.classify_data or _sst2(), section.text_column, section.label_column, section.max_texts,
            ctx.dir / "classify-data.jsonl", seed, model,
        )  # fmt: skip
        result["classify_data"] = {
            "file": section.classify_data or "sst2-train-subset",
            "unencodable": unencodable,
        }
        settings = {"epochs": section.classify_epochs, "lr": section.classify_lr,
                    "batch_size": section.classify_batch_size, "device": device, "seed": seed}  # fmt: skip
        if "adversarial" in section.experiments:
            result["adversarial"] = mitigations.adversarial(
                model,
                data,
                labels,
                ctx.dir / "adversarial",
                settings,
                section.adv_rate,
                section.hotflip_budget,
            )
        if "poisoning" in section.experiments:
            result["poisoning"] = mitigations.poisoning(
                model, data, labels, ctx.dir / "poisoning", settings, section.poison_rate, section.trigger,
                section.detector_multiplier, seed,
            )  # fmt: skip
    if "cda" in section.experiments:
        from gptlab.study import mitigations

        if no_recipe:
            result["skipped"]["cda"] = no_recipe
        else:
            result["cda"] = mitigations.cda(
                model,
                ctx.dir / "cda",
                section.cda_pairs,
                seed,
                section.n_boot,
                section.cda_min_pairs,
                ctx.progress,
            )
    if "injection" in section.experiments:
        from gptlab.study import mitigations

        result["injection"] = mitigations.injection(
            ctx.dir / "injection", section, seed, device, ctx.progress
        )
    return result


def _no_recipe(ctx: StageContext) -> str:
    """Why DP and CDA cannot retrain the study's pretraining ("" when they can): both retrain its
    recipe on a changed corpus, so they need the recipe and its raw text."""
    if ctx.upstream["pretrain"]["result"]["external"]:
        return "the study's model is an existing run (--model): there is no recipe to retrain"
    from gptlab.config import load_config

    pre = ctx.config.sections["pretrain"]
    if not load_config(pre.config, pre.set).data.input:
        return (
            "the pretraining recipe trains from a prepared folder (data.dir): there is no raw text to change"
        )
    return ""


def _sst2() -> str:
    from gptlab.data.registry import download

    return str(download("sst2-train-subset", progress=False))


def _dp(ctx: StageContext, section: DefencesSection) -> dict:
    from gptlab.config import check_values, load_config
    from gptlab.io import atomic_write_bytes
    from gptlab.study import dp_curve

    pre = ctx.config.sections["pretrain"]
    config = load_config(pre.config, [*pre.set, *section.dp_set])
    check_values(config)
    repeats = list(section.canary_repeats)
    if not repeats or min(repeats) < 1:
        raise GptlabError("defences.canary_repeats: give repetition counts of at least 1")
    result = dp_curve.privacy_curve(
        config, ctx.dir / "dp", dp_curve.parse_epsilons(section.epsilons), section.canary_format, repeats,
        section.canaries_per_count, section.membership_texts, section.eval_tokens, ctx.config.study.seed,
        ctx.config.study.device, ctx.progress, section.n_boot,
    )  # fmt: skip
    atomic_write_bytes(ctx.dir / CURVE_FIGURE, _curve_plot(result["rows"]))
    result["figure"] = CURVE_FIGURE
    return result


def _curve_plot(rows: list[dict]) -> bytes:
    """Validation perplexity (x) against each repetition count's mean exposure (with its 95%
    interval over canaries) and the membership AUC (y), one point per epsilon."""
    from gptlab.audit.common import plot_png

    def draw(ax):
        x = [r["val_perplexity"] for r in rows]
        for i, rep in enumerate(rows[0]["exposure"]):
            ys = [r["exposure"][i]["exposure"] for r in rows]
            ivs = [r["exposure"][i]["exposure_ci95"] or [y, y] for r, y in zip(rows, ys)]
            err = [[y - iv[0] for y, iv in zip(ys, ivs)], [iv[1] - y for y, iv in zip(ys, ivs)]]
            label = f"exposure, {rep['repeats']}x" if rep["repeats"] else "exposure, controls"
            ax.errorbar(x, ys, yerr=err, fmt="o-", capsize=3, label=label)
        for r, xi in zip(rows, x):
            ax.annotate(f"eps={r['label']}", (xi, r["exposure"][-1]["exposure"]), fontsize=7)
        ax.set_xlabel("validation perplexity")
        ax.set_ylabel("canary exposure (bits)")
        auc = ax.twinx()
        auc.plot(x, [r["membership_auc"] for r in rows], "k--s", label="membership AUC")
        auc.set_ylabel("membership AUC (loss attack)")
        ax.legend(fontsize=7, loc="upper left")
        auc.legend(fontsize=7, loc="upper right")
        ax.set_title("privacy-utility curve (DP-SGD)")

    return plot_png(draw, figsize=(7, 4.5))


def report(result: dict, stage_dir: Path) -> Section:
    from gptlab.study import defences_report as parts

    section = Section("Defences")
    section.method = [("experiments", ", ".join(result["experiments"]) or "none")]
    section.method += [(f"not run: {name}", why) for name, why in result["skipped"].items()]
    for name, add in (("dp", parts.dp), ("adversarial", parts.adversarial), ("cda", parts.cda),
                      ("injection", parts.injection), ("poisoning", parts.poisoning)):  # fmt: skip
        if name in result:
            add(result[name], section)
    return section


STAGE = Stage("defences", "Defences", DefencesSection, run, report, needs=("pretrain",))
