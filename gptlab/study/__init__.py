"""``gptlab study``: the whole report (build, test, attack) from one resumable command.

    config = load_study_config("study-tiny", ["architecture.seeds=3"])
    result = run_study(config, "studies/tiny")      # again: finished stages are reused

Stages are registered in gptlab/study/stages/ (one file each); the runner (gptlab.study.runner)
hashes each stage's inputs, reuses what is finished and unchanged, and runs the rest in order.
docs/study.md describes the stages, the presets and what is left to build.
"""

from gptlab.study.config import StudyConfig, list_study_presets, load_study_config
from gptlab.study.runner import StudyResult, run_study

__all__ = ["StudyConfig", "StudyResult", "list_study_presets", "load_study_config", "run_study"]
