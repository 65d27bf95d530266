"""Stage ``vulnerabilities``: ``audit all`` on the pretrained model (gptlab.audit.all), ``--quick``
by default: every applicable audit (or the ``audits`` named), its findings with their intervals
and verdicts (interval mode: a verdict is pass or fail only when the interval is on one side of
the threshold), and the verdict counts. The audit's own report.html is kept in the stage folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

AUDIT_DIR = "audit"


@dataclass
class VulnerabilitiesSection:
    quick: bool = True
    audits: list[str] = field(default_factory=list)  # [] = every audit that applies to the model


def run(ctx: StageContext) -> dict:
    from gptlab.audit.all import audit_all

    section: VulnerabilitiesSection = ctx.section
    model = ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"]
    _, skipped, results = audit_all(
        model,
        ctx.dir / AUDIT_DIR,
        seed=ctx.config.study.seed,
        quick=section.quick,
        names=section.audits or None,
    )
    audits = {}
    for r in results:
        d = r.to_dict()
        audits[r.name] = {"counts": d["counts"], "findings": [_finding(f) for f in d["findings"]]}
    totals: dict[str, int] = {}
    for a in audits.values():
        for verdict, n in a["counts"].items():
            totals[verdict] = totals.get(verdict, 0) + n
    return {"quick": section.quick, "audits": audits, "skipped": skipped, "counts": totals}


def _finding(f: dict) -> dict:
    keep = ("threat", "metric", "value", "interval", "threshold", "higher_is_worse", "n", "verdict", "reason")
    return {k: f.get(k) for k in keep}


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Vulnerabilities")
    section.method = [("audit profile", "quick" if result["quick"] else "full")]
    section.method += [(f"not run: {name}", why) for name, why in result["skipped"].items()]
    verdicts = sorted(result["counts"])
    section.tables.append(
        Table(
            "Verdict counts per audit",
            ["audit", *verdicts],
            [[name, *(a["counts"].get(v, 0) for v in verdicts)] for name, a in result["audits"].items()],
        )
    )
    rows = []
    for name, a in result["audits"].items():
        for f in a["findings"]:
            rows.append(
                [
                    name,
                    f["threat"],
                    f["metric"],
                    f["value"],
                    findings.fmt_interval(f["interval"]),
                    f["threshold"],
                    f["verdict"],
                ]
            )
            if f["verdict"] in ("pass", "fail") and f["threshold"] is not None:
                section.findings.append(
                    findings.against_reference(
                        f"{name}: {f['metric']}", f["value"], f["interval"], f["threshold"], "the threshold"
                    )
                )
    section.tables.append(
        Table("Findings", ["audit", "threat", "metric", "value", "interval", "threshold", "verdict"], rows)
    )
    counts = ", ".join(f"{result['counts'][v]} {v}" for v in verdicts)
    section.notes.append(f"Verdicts over all audits: {counts}.")
    return section


STAGE = Stage("vulnerabilities", "Vulnerabilities", VulnerabilitiesSection, run, report, needs=("pretrain",))
