"""Study configs: a ``[study]`` section plus one section per registered stage, from a TOML preset
(gptlab/study/presets/<name>.toml) or file, then ``section.key=value`` overrides.

    [study]       which stages, the seed, the profile's name and the device
    [pretrain]    the training config (a `gptlab train` preset or TOML) and overrides on it
    [architecture], [benchmarks], [vulnerabilities], [report]: see each stage's module

Each stage's section is a dataclass declared by the stage itself (gptlab/study/stages/), so a new
stage brings its own settings; an unknown section or key is an error that lists the known ones.
Values are type-checked against the field's default (ints are accepted for floats).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gptlab.config import list_presets, load_toml, parse_override, resolve_config_path
from gptlab.errors import GptlabError

PRESETS_DIR = Path(__file__).parent / "presets"


@dataclass
class StudySection:
    profile: str = "custom"  # what the report calls this study: tiny, quick, full, custom
    stages: list[str] = field(default_factory=list)  # [] = every registered stage, in order
    seed: int = 0
    device: str = "cpu"  # where evaluations run (training follows [pretrain]'s train.device)


@dataclass
class StudyConfig:
    study: StudySection
    sections: dict[str, Any]  # stage name -> its section dataclass

    def section(self, name: str) -> Any:
        return self.study if name == "study" else self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        return {"study": asdict(self.study), **{k: asdict(v) for k, v in self.sections.items()}}

    def stage_names(self) -> list[str]:
        from gptlab.study.stages import STAGES

        names = self.study.stages or list(STAGES)
        unknown = [n for n in names if n not in STAGES]
        if unknown:
            raise GptlabError(
                f"study.stages: unknown stage {', '.join(unknown)} (stages: {', '.join(STAGES)})"
            )
        return [n for n in STAGES if n in names]  # registry order: upstream stages come first


def list_study_presets() -> list[str]:
    return list_presets(PRESETS_DIR)


def resolve_study_config(name_or_path: str | os.PathLike) -> Path:
    return resolve_config_path(str(name_or_path), PRESETS_DIR, "study config")


def load_study_config(config: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """Defaults, then the TOML file or preset ``config``, then ``section.key=value`` overrides."""
    from gptlab.study.stages import STAGES

    study = StudyConfig(StudySection(), {name: stage.section() for name, stage in STAGES.items()})
    if config:
        path = resolve_study_config(config)
        source = f"study config {path}"
        data = load_toml(path)
        for section, values in data.items():
            if not isinstance(values, dict):
                raise GptlabError(f"{source}: [{section}] must be a table of key = value")
            for key, value in values.items():
                set_study_value(study, f"{section}.{key}", value, source)
    for text in overrides:
        key, value = parse_override(text)
        set_study_value(study, key, value, f"override {text!r}")
    study.stage_names()  # an unknown stage name fails now
    return study


def set_study_value(study: StudyConfig, dotted: str, value: Any, source: str = "override") -> None:
    section, _, key = dotted.partition(".")
    known_sections = ["study", *study.sections]
    if section not in known_sections or not key:
        raise GptlabError(
            f"{source}: {dotted!r} is not a study config key: expected section.key with a section among "
            f"{', '.join(known_sections)}"
        )
    target = study.section(section)
    names = [f.name for f in fields(target)]
    if key not in names:
        raise GptlabError(f"{source}: unknown key {dotted!r} (known in [{section}]: {', '.join(names)})")
    setattr(target, key, _typed(getattr(target, key), value, dotted, source))


def _typed(default: Any, value: Any, dotted: str, source: str) -> Any:
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and default and all(isinstance(v, int) and not isinstance(v, bool) for v in default):
        # a list of integers (repetition counts): its default says so
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value
        raise GptlabError(f"{source}: {dotted} must be a list of integers, got {value!r}")
    if kind is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise GptlabError(f"{source}: {dotted} must be a list of strings, got {value!r}")
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise GptlabError(f"{source}: {dotted} must be a {kind.__name__}, got {value!r}")
