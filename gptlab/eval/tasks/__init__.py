"""Benchmark tasks (``gptlab eval tasks``), scored as lm-evaluation-harness scores them.

A task is a `Task` (gptlab/eval/tasks/base.py); each file here defines one family of tasks and
exports ``TASKS``, a list of them. `TASKS` below is the registry: adding a task family is one new
file and one line in ``_FAMILIES``.
"""

from __future__ import annotations

from gptlab.errors import GptlabError
from gptlab.eval.tasks import advbench, crows_pairs, hellaswag, lambada, popqa, sst2, truthfulqa, winobias
from gptlab.eval.tasks.base import Doc, Loglikelihood, Task, TaskFile

_FAMILIES: list = [
    # one line per task family file
    lambada,
    sst2,
    hellaswag,
    truthfulqa,
    popqa,
    crows_pairs,
    winobias,
    advbench,
]

TASKS: dict[str, Task] = {task.name: task for family in _FAMILIES for task in family.TASKS}


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name is an error that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise GptlabError(
            f"unknown task {name!r}; the tasks are: {', '.join(sorted(TASKS)) or '(none)'}"
        ) from None


__all__ = ["TASKS", "Doc", "Loglikelihood", "Task", "TaskFile", "get_task"]
