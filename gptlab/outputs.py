"""One rule for every verb that writes: nothing a user made is lost, and a bad ``--out`` fails first.

Two kinds of output:

* a **folder the verb owns** (a run, an exported model, prepared data): ``claim_folder`` refuses an
  existing non-empty folder unless ``overwrite``, and with ``overwrite`` empties it first, so no
  stale file of the old run (a ``trainer_state.json``, say) is mixed into the new one;
* **named files in a shared folder** (HTML views, audit reports, a tokenizer file):
  ``claim_files`` refuses when any of the files it would write exists, unless ``overwrite``; other
  files in the folder are left alone, so several views can share one folder.

Both refuse to write into (or over) a source the verb reads from: ``export --model R --out R`` and
``audit all --model R --out R/audit`` are errors even with ``--overwrite``. And both check, before any work is done, that the folder can be
created and written: a path under a regular file or a read-only folder is an error in milliseconds,
not after an hour of training.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gptlab.errors import GptlabError

PathLike = str | os.PathLike

OVERWRITE_HINT = "pass --overwrite to replace it"


def claim_folder(
    path: PathLike,
    *,
    what: str = "output folder",
    overwrite: bool = False,
    sources: Iterable[PathLike | None] = (),
) -> Path:
    """Make ``path`` an empty, writable folder for a verb to fill, or raise GptlabError.

    An existing non-empty folder is refused unless ``overwrite``; with it, its contents are removed
    (the folder itself stays, so a mount point or a symlinked folder keeps working)."""
    path = Path(path)
    _refuse_sources(path, sources, what)
    if path.exists() and not path.is_dir():
        raise GptlabError(f"{what} {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise GptlabError(f"{what} {path} already exists and is not empty: {OVERWRITE_HINT}")
        _empty(path, what)
    _make_writable_dir(path, what)
    return path


def claim_files(
    folder: PathLike,
    names: Iterable[str],
    *,
    what: str = "output folder",
    overwrite: bool = False,
    sources: Iterable[PathLike | None] = (),
) -> Path:
    """Check that ``folder`` can hold the files ``names`` without replacing any, or raise GptlabError.
    With ``overwrite`` existing files may be replaced (by the caller, when it writes them)."""
    folder = Path(folder)
    _refuse_sources(folder, sources, what, holds_ok=True)
    if folder.exists() and not folder.is_dir():
        raise GptlabError(f"{what} {folder} exists and is not a folder")
    existing = sorted(name for name in names if (folder / name).exists())
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise GptlabError(f"{what} {folder} already holds {shown}: {OVERWRITE_HINT}")
    _make_writable_dir(folder, what)
    return folder


def claim_file(
    path: PathLike,
    *,
    what: str = "output file",
    overwrite: bool = False,
    sources: Iterable[PathLike | None] = (),
) -> Path:
    """Check that the single file ``path`` may be written: not an existing file (unless
    ``overwrite``), not a folder, not one of ``sources``, and its folder creatable and writable."""
    path = Path(path)
    _refuse_sources(path, sources, what, holds_ok=True)
    if path.is_dir():
        raise GptlabError(f"{what} {path} is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise GptlabError(f"{what} {path} already exists: {OVERWRITE_HINT}")
    _make_writable_dir(path.parent, f"folder of {what}")
    return path


def _refuse_sources(
    path: Path, sources: Iterable[PathLike | None], what: str, holds_ok: bool = False
) -> None:
    """The output may not be a source nor inside one (a run's folder is the run's: `audit all
    --out RUN/audit` would put a report into it); unless ``holds_ok`` (named files, nothing
    emptied) it may not hold one either, since emptying it for --overwrite would delete it."""
    target = _real(path)
    for source in sources:
        if source is None or not Path(source).expanduser().exists():
            continue  # e.g. a hub name: not a local path
        src = _real(Path(source))
        if target == src or src in target.parents or (not holds_ok and target in src.parents):
            raise GptlabError(f"{what} {path} would overwrite its own input {source}: choose another --out")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _empty(path: Path, what: str) -> None:
    try:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as e:
        raise GptlabError(f"cannot empty {what} {path} for --overwrite: {e.strerror or e}") from None


def _make_writable_dir(path: Path, what: str) -> None:
    """Prove a file can be written in ``path`` (a read-only mount or folder fails here). Folders
    created for the proof are removed again, so a verb that fails later leaves nothing behind;
    the writer creates them when it writes."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise GptlabError(f"cannot create {what} {path}: {parent} is a file, not a folder")
            break
    created = [p for p in [path, *path.parents] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gptlab-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GptlabError(f"cannot write to {what} {path}: {e.strerror or e}") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
