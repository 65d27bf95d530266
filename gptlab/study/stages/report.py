"""Stage ``report``: DIR/study.md and DIR/study.html from the finished results of every other
stage of the study (gptlab.study.render), closing with the machine, the software versions, the
git commit of gptlab and each stage's time. Everything shown is read from the stage results; the
environment it records is in this stage's own result.json."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gptlab.study.stage import Section, Stage, StageContext

MARKDOWN, HTML = "study.md", "study.html"


@dataclass
class ReportSection:
    title: str = "A GPT, built, tested and attacked"


def run(ctx: StageContext) -> dict:
    from gptlab.io import atomic_write_text
    from gptlab.study import render

    environment = _environment()
    times = {name: record["seconds"] for name, record in ctx.upstream.items()}
    profile = ctx.config.study.profile
    intro = [f"Study profile: {profile}. Every number below is read from DIR/<stage>/result.json."]
    if profile in ("tiny", "quick"):
        intro.append(
            f"This is the {profile} profile: small models, few seeds and quick audits, for a first look."
        )
    parts = []
    for name, record in ctx.upstream.items():
        stage = ctx.upstream_stages[name]
        section = (
            stage.report(record["result"], ctx.upstream_dirs[name]) if stage.report else Section(stage.title)
        )
        section.method.append(("stage time (s)", record["seconds"]))
        parts.append((name, section))
    closing = Section(
        "Environment", method=[*environment.items(), *((f"time of {n} (s)", t) for n, t in times.items())]
    )
    title = f"{ctx.section.title} (gptlab study, {profile} profile)"
    md = render.markdown(title, intro, [(n, s, n) for n, s in parts], closing)
    page = render.html_document(title, intro, [(n, s, ctx.upstream_dirs[n]) for n, s in parts], closing)
    atomic_write_text(ctx.dir / MARKDOWN, md)
    atomic_write_text(ctx.dir / HTML, page)
    return {"environment": environment, "stage_seconds": times, "files": [MARKDOWN, HTML]}


def _environment() -> dict:
    import numpy
    import torch

    from gptlab import __version__

    return {
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor() or "unknown",
        "cpu count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "gptlab": __version__,
        "gptlab git commit": _git_commit(),
    }


def _git_commit() -> str:
    """The commit of the gptlab source tree in use ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


STAGE = Stage("report", "Report", ReportSection, run, None, publish=(MARKDOWN, HTML))
