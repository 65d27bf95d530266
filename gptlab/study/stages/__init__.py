"""The registry of study stages, in the order a study runs them (a stage comes after the stages
it needs). Adding a stage: one file here defining ``STAGE`` (gptlab.study.stage.Stage) and one
line in ``_MODULES`` before ``report``. The report reads every other stage of the study."""

from __future__ import annotations

from dataclasses import replace

from gptlab.study.stage import Stage
from gptlab.study.stages import (
    architecture,
    benchmarks,
    defences,
    forgetting,
    interpret,
    overfitting,
    pretrain,
    report,
    tasks,
    vulnerabilities,
)

_MODULES: list = [
    # one line per stage module
    pretrain,
    architecture,
    tasks,
    forgetting,
    overfitting,
    benchmarks,
    interpret,
    vulnerabilities,
    defences,
]

STAGES: dict[str, Stage] = {m.STAGE.name: m.STAGE for m in _MODULES}
STAGES["report"] = replace(report.STAGE, needs=tuple(STAGES))

__all__ = ["STAGES"]
