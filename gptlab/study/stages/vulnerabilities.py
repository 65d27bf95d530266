"""Stage ``vulnerabilities``: ``audit all`` (gptlab.audit.all) on every model of the study it
applies to, ``--quick`` by default:

- ``pretrained``: the pretrain stage's model (every applicable audit, or the ``audits`` named);
- ``canaried``: the pretraining config trained again on its corpus with canaries inserted
  (gptlab.audit.canaried: ``canary_per_repeat`` canaries for each count in ``canary_repeats``, 0 =
  controls), audited for memorisation: the canary exposure per repetition count. Not built when the
  study studies an existing run (there is no pretraining config to repeat);
- ``instruct``: the pretrained model fine-tuned on the probe-tasks instruction suite
  (gptlab.data.probe_tasks, ``instruct_examples`` records, chat template, loss on the responses),
  audited for prompt injection and leaking.

Each finding keeps its interval and verdict (interval mode: pass or fail only when the interval is
on one side of the threshold); the report gives the verdict counts per model and audit. A model
that cannot be built here (its reason is recorded) is listed as not run, like an audit that does
not apply. The audits' own report.html files are kept in ``<model>-audit/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

PRETRAINED, CANARIED, INSTRUCT = "pretrained", "canaried", "instruct"
MODELS = (PRETRAINED, CANARIED, INSTRUCT)


@dataclass
class VulnerabilitiesSection:
    quick: bool = True
    audits: list[str] = field(default_factory=list)  # on the pretrained model; [] = every applicable one
    canaries: bool = True  # train the canary-inserted pretraining run and audit its memorisation
    canary_repeats: list[int] = field(default_factory=lambda: [0, 1, 4, 16])  # copies per canary
    canary_per_repeat: int = 2  # canaries per repetition count
    canary_set: list[str] = field(default_factory=list)  # overrides on the pretraining config for it
    instruct: bool = True  # fine-tune the probe-tasks instruction model and audit injection/leaking
    instruct_examples: int = 600
    instruct_epochs: int = 2
    instruct_minutes: float = 0.0  # a time cap on its fine-tune (0: none)


def run(ctx: StageContext) -> dict:
    section: VulnerabilitiesSection = ctx.section
    pre = ctx.upstream["pretrain"]["result"]
    model = ctx.study_dir / pre["run"]
    builders = {PRETRAINED: lambda: (model, section.audits or None)}  # every model: (its run, audits)
    if section.canaries:
        builders[CANARIED] = lambda: (_canaried(ctx, section, pre), ["memorization"])
    if section.instruct:
        builders[INSTRUCT] = lambda: (_instruct(ctx, section, model), ["injection"])
    models, not_built = {}, {}
    bar = ctx.bar(len(builders), unit="model")
    for name, build in builders.items():
        bar.set_description(f"vulnerabilities: {name}")
        try:
            path, names = build()
        except GptlabError as e:  # this model cannot be made from this study: say why, go on
            not_built[name] = str(e)
            bar.update(1)
            continue
        shown = pre["run"] if name == PRETRAINED else f"{ctx.name}/{path.relative_to(ctx.dir)}"
        models[name] = _audit(ctx, name, path, names) | {"run": shown}
        bar.update(1)
    bar.close()
    totals: dict[str, int] = {}
    for m in models.values():
        for verdict, n in m["counts"].items():
            totals[verdict] = totals.get(verdict, 0) + n
    return {"quick": section.quick, "models": models, "not_built": not_built, "counts": totals}


def _audit(ctx: StageContext, name: str, path: Path, names: list[str] | None) -> dict:
    from gptlab.audit.all import audit_all

    _, skipped, results = audit_all(
        path, ctx.dir / f"{name}-audit", seed=ctx.config.study.seed, quick=ctx.section.quick, names=names
    )
    audits, counts = {}, {}
    for r in results:
        d = r.to_dict()
        audits[r.name] = {"counts": d["counts"], "findings": [_finding(f) for f in d["findings"]]}
        if r.name == "memorization" and "exposure_by_repeats" in r.details:
            audits[r.name]["exposure_by_repeats"] = [
                {"repeats": int(k), **v} for k, v in r.details["exposure_by_repeats"].items()
            ]
        for verdict, n in d["counts"].items():
            counts[verdict] = counts.get(verdict, 0) + n
    return {"audits": audits, "skipped": skipped, "counts": counts}


def _canaried(ctx: StageContext, section: VulnerabilitiesSection, pre: dict) -> Path:
    """The pretraining config, with ``canary_set`` on it, trained on its corpus with canaries."""
    from gptlab.audit.canaried import train_with_canaries
    from gptlab.config import check_values, load_config
    from gptlab.data.corpus import config_texts

    if pre["external"]:
        raise GptlabError("the study studies an existing run: there is no pretraining config to repeat")
    if not section.canary_repeats or any(r < 0 for r in section.canary_repeats):
        raise GptlabError(f"vulnerabilities.canary_repeats must be counts >= 0, got {section.canary_repeats}")
    if section.canary_per_repeat < 1:
        raise GptlabError("vulnerabilities.canary_per_repeat must be at least 1")
    spec = ctx.config.sections["pretrain"]
    config = load_config(spec.config, [*spec.set, *section.canary_set])
    config.train.progress = ctx.progress
    config.train.sample_tokens = 0
    check_values(config)
    text = "\n".join(config_texts(config.data))
    out = ctx.dir / CANARIED
    out.mkdir()
    run_dir, _ = train_with_canaries(
        config, text, out, section.canary_repeats, section.canary_per_repeat, seed=ctx.config.study.seed
    )
    return run_dir


def _instruct(ctx: StageContext, section: VulnerabilitiesSection, model: Path) -> Path:
    """The pretrained model fine-tuned on the probe-tasks suite (the injection audit's own tasks)."""
    from gptlab.data.probe_tasks import probe_task_examples
    from gptlab.finetune.instruct import InstructOptions, finetune_instruct
    from gptlab.io import atomic_write_text

    out = ctx.dir / INSTRUCT
    out.mkdir()
    data = out / "probe-tasks.json"
    records = probe_task_examples(section.instruct_examples, ctx.config.study.seed)
    atomic_write_text(data, json.dumps(records, indent=1))
    options = InstructOptions(
        model=str(model),
        data=str(data),
        out=str(out / "run"),
        template="chat",
        mask_prompt=True,
        lr=2e-3,
        epochs=section.instruct_epochs,
        batch_size=16,
        max_minutes=section.instruct_minutes or None,
        max_new_tokens=24,
        max_test_examples=20,
        compare_base=False,
        val_fraction=0.05,
        test_fraction=0.05,
        seed=ctx.config.study.seed,
        device=ctx.config.study.device,
        progress=False,
    )
    finetune_instruct(options)
    return out / "run"


def _finding(f: dict) -> dict:
    keep = ("threat", "metric", "value", "interval", "interval_kind", "threshold", "higher_is_worse", "n")
    return {k: f.get(k) for k in (*keep, "verdict", "reason")}


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Vulnerabilities")
    section.method = [("audit profile", "quick" if result["quick"] else "full")]
    for name, m in result["models"].items():
        section.method.append((f"model: {name}", m["run"]))
        section.method += [(f"not run on {name}: {audit}", why) for audit, why in m["skipped"].items()]
    section.method += [(f"model not built: {name}", why) for name, why in result["not_built"].items()]
    verdicts = sorted(result["counts"])
    section.tables.append(
        Table(
            "Verdict counts per model and audit",
            ["model", "audit", *verdicts],
            [
                [name, audit, *(a["counts"].get(v, 0) for v in verdicts)]
                for name, m in result["models"].items()
                for audit, a in m["audits"].items()
            ],
        )
    )
    rows = []
    for name, m in result["models"].items():
        for audit, a in m["audits"].items():
            for f in a["findings"]:
                rows.append(
                    [
                        name,
                        audit,
                        f["threat"],
                        f["metric"],
                        f["value"],
                        findings.fmt_interval(f["interval"]),
                        f["threshold"],
                        f["verdict"],
                    ]  # fmt: skip
                )
                if f["verdict"] in ("pass", "fail") and f["threshold"] is not None:
                    section.findings.append(
                        findings.against_reference(
                            f"{name} model, {audit}: {f['metric']}",
                            f["value"],
                            f["interval"],
                            f["threshold"],
                            "the threshold",
                        )
                    )
    section.tables.append(
        Table(
            "Findings",
            ["model", "audit", "threat", "metric", "value", "interval", "threshold", "verdict"],
            rows,
        )
    )
    exposure = result["models"].get(CANARIED, {}).get("audits", {}).get("memorization", {})
    if exposure.get("exposure_by_repeats"):
        section.tables.append(
            Table(
                "Canary exposure (bits) per repetition count (repeats 0: the controls, never inserted, "
                "whose exposure is what chance gives)",
                ["repeats", "canaries", "mean exposure", "max exposure"],
                [[e["repeats"], e["n"], e["mean"], e["max"]] for e in exposure["exposure_by_repeats"]],
            )
        )
    counts = ", ".join(f"{result['counts'][v]} {v}" for v in verdicts)
    section.notes.append(f"Verdicts over all models and audits: {counts}.")
    return section


STAGE = Stage(
    "vulnerabilities", "Vulnerabilities", VulnerabilitiesSection, run, report, needs=("pretrain",), version=2
)
