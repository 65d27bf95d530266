"""Run a study: each stage in order, reused when its inputs are unchanged, into DIR/<stage>/.

A stage's inputs are its config section, its version and the input hashes of the stages it needs,
hashed together (SHA-256 of the canonical JSON). DIR/<stage>/result.json records that hash; on a
rerun a stage whose recorded hash equals the new one is reused without running, and a stage whose
section changed gets a new hash, and so does every stage downstream of it (their hashes include
it): they run again. A stage runs in DIR/.<stage>.partial/ and is renamed to DIR/<stage>/ only when
it returns, so Ctrl-C or a crash loses at most the stage in flight; the next run starts that stage
over (a leftover .partial folder is removed first).

DIR/study.json marks the folder as a study (the config of the last invocation). A folder holding
anything else is refused unless ``overwrite`` (which empties it); a study folder is continued.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json
from gptlab.study.config import StudyConfig
from gptlab.study.stage import StageContext

STUDY_FILE = "study.json"
STUDY_FORMAT = "gptlab-study"
RESULT_FILE = "result.json"
PARTIAL_SUFFIX = ".partial"


@dataclass
class StudyResult:
    out_dir: Path
    ran: list[str] = field(default_factory=list)  # stages run by this invocation
    reused: list[str] = field(default_factory=list)  # stages whose recorded result was kept
    skipped: list[str] = field(default_factory=list)  # stages left out by --only/--skip
    hashes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # each ran stage's wall time here

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}


def input_hashes(config: StudyConfig) -> dict[str, str]:
    """Each configured stage's input hash, upstream first (a stage's hash covers its needs')."""
    from gptlab.study.stages import STAGES

    hashes: dict[str, str] = {}
    names = config.stage_names()
    for name in names:
        stage = STAGES[name]
        missing = [n for n in stage.needs if n not in names and n in _required(stage)]
        if missing:
            raise GptlabError(f"stage {name} needs {', '.join(missing)}: add it to study.stages")
        inputs = {
            "stage": name,
            "version": stage.version,
            "section": asdict(config.sections[name]),
            "upstream": {n: hashes[n] for n in stage.needs if n in hashes},
        }
        hashes[name] = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return hashes


def _required(stage) -> tuple[str, ...]:
    return () if stage.name == "report" else stage.needs  # the report covers whichever stages exist


def select(config: StudyConfig, only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[str]:
    """The configured stages to run: ``only`` those (if given), minus ``skip``."""
    names = config.stage_names()
    for flag, given in (("--only", only), ("--skip", skip)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise GptlabError(
                f"{flag}: {', '.join(unknown)} is not a stage of this study ({', '.join(names)})"
            )
    return [n for n in names if (not only or n in only) and n not in skip]


def recorded(out: Path, name: str) -> dict | None:
    """The stage's result.json, or None when it has not finished."""
    path = out / name / RESULT_FILE
    return read_json(path, f"{name} stage result") if path.is_file() else None


def claim(out: Path, overwrite: bool) -> None:
    """Make ``out`` a study folder: new, empty, already a study, or emptied with ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise GptlabError(f"{out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not (out / STUDY_FILE).is_file():
            raise GptlabError(
                f"{out} is not empty and holds no study ({STUDY_FILE}): choose another --out, "
                "or pass --overwrite to replace what is there"
            )
    out.mkdir(parents=True, exist_ok=True)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or continue) the study into ``out_dir``; see the module doc."""
    from gptlab.study.stages import STAGES

    out = Path(out_dir)
    log = log or (lambda line: print(line, file=sys.stderr))
    hashes = input_hashes(config)
    chosen = select(config, only, skip)
    claim(out, overwrite)
    atomic_write_json(out / STUDY_FILE, {"format": STUDY_FORMAT, "version": 1, "config": config.to_dict()})
    result = StudyResult(out, hashes=hashes, skipped=[n for n in hashes if n not in chosen])
    bar = _bar(len(chosen), progress)
    try:
        for name in chosen:
            stage = STAGES[name]
            bar.set_description(name)
            done = recorded(out, name)
            if done is not None and done.get("inputs_hash") == hashes[name]:
                result.reused.append(name)
                log(f"{name}: reused (inputs unchanged)")
                _publish(stage, out)
                bar.update(1)
                continue
            upstream = _upstream(out, stage, hashes)
            start = time.perf_counter()
            log(f"{name}: running")
            _run_stage(stage, config, out, upstream, hashes[name], progress)
            _publish(stage, out)
            result.ran.append(name)
            result.seconds[name] = time.perf_counter() - start
            bar.update(1)
    finally:
        bar.close()
    return result


def _upstream(out: Path, stage, hashes: dict[str, str]) -> dict[str, dict]:
    """The finished results this stage reads; a needed stage not finished with its current
    inputs is an error (it was skipped, or its config changed and it did not run)."""
    found = {}
    for need in stage.needs:
        if need not in hashes:
            continue
        done = recorded(out, need)
        if done is None or done.get("inputs_hash") != hashes[need]:
            state = "has not run" if done is None else "is stale (its config changed)"
            raise GptlabError(
                f"stage {stage.name} needs {need}, which {state}: run it (drop it from --skip/--only)"
            )
        found[need] = done
    return found


def _run_stage(
    stage, config: StudyConfig, out: Path, upstream: dict, inputs_hash: str, progress: bool
) -> None:
    from gptlab.study.stages import STAGES

    partial = out / f".{stage.name}{PARTIAL_SUFFIX}"
    if partial.exists():  # a stage interrupted before: its files are not trusted
        shutil.rmtree(partial)
    partial.mkdir()
    ctx = StageContext(
        name=stage.name,
        dir=partial,
        section=config.sections[stage.name],
        config=config,
        upstream=upstream,
        upstream_dirs={n: out / n for n in upstream},
        study_dir=out,
        progress=progress,
        upstream_stages={n: STAGES[n] for n in upstream},
    )
    start = time.perf_counter()
    body = stage.run(ctx)
    record = {
        "stage": stage.name,
        "version": stage.version,
        "inputs_hash": inputs_hash,
        "upstream": {n: r["inputs_hash"] for n, r in upstream.items()},
        "section": asdict(config.sections[stage.name]),
        "seconds": time.perf_counter() - start,
        "result": body,
    }
    atomic_write_json(partial / RESULT_FILE, record)
    final = out / stage.name
    if final.exists():  # the stale result: removed only now that its replacement is complete
        shutil.rmtree(final)
    partial.rename(final)


def _publish(stage, out: Path) -> None:
    """Copy the stage's published files (the report's study.md/html) to the study folder."""
    from gptlab.io import atomic_write_bytes

    for file in stage.publish:
        atomic_write_bytes(out / file, (out / stage.name / file).read_bytes())


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="stage", desc="study", disable=not progress, file=sys.stderr, leave=True)
