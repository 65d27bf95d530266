"""What a study stage is: a name, the stages it reads, its config section, and two functions.

A stage module (gptlab/study/stages/<name>.py) defines ``STAGE = Stage(...)``; the registry in
gptlab/study/stages/__init__.py lists the modules. ``run(ctx)`` does the work, writing any files
into ``ctx.dir`` (a temporary folder, renamed to DIR/<name> only when ``run`` returns) and returns
the JSON-ready result, which the runner stores as DIR/<name>/result.json. ``report(result, view)``
turns a finished result into a `Section` of the study report: method rows, tables and figures,
and findings sentences built by gptlab.study.findings from the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    """A report table: a caption, column names and rows of cells (numbers are formatted by the
    report; every number shown comes from a stage's result.json)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    """A stage's part of the report."""

    title: str
    method: list[tuple[str, Any]] = field(default_factory=list)  # (what, value): config, seeds, tokens
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file relative to the stage dir, caption)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class StageContext:
    """What a running stage gets: its folder (temporary until it finishes), its config section,
    the whole study config, the finished results of the stages it needs (``upstream[name]``) and
    their folders, and the study folder."""

    name: str
    dir: Path
    section: Any
    config: Any  # gptlab.study.config.StudyConfig
    upstream: dict[str, dict]
    upstream_dirs: dict[str, Path]
    study_dir: Path
    progress: bool = True
    upstream_stages: dict[str, Stage] = field(default_factory=dict)  # the Stage of each upstream result

    def bar(self, total: int, unit: str = "step", desc: str | None = None):
        """The stage's own progress bar (tqdm), drawn on stderr under the study's bar over stages
        and removed when it closes; a no-op bar when the study runs without progress (--json,
        --no-progress, not a terminal)."""
        import sys

        from tqdm import tqdm

        return tqdm(
            total=total,
            unit=unit,
            desc=desc or self.name,
            disable=not self.progress,
            file=sys.stderr,
            leave=False,
            position=1,
        )


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    section: type  # the dataclass of its [name] config section
    run: Callable[[StageContext], dict]
    report: Callable[[dict, Path], Section] | None = None  # (result, its stage folder) -> Section
    needs: tuple[str, ...] = ()  # upstream stages: their results are inputs of this one
    version: int = 1  # bump when the stage computes something else from the same inputs
    publish: tuple[str, ...] = ()  # files of its folder copied to the study folder once it finished
