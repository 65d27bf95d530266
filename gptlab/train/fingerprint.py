"""What a run's prepared data was made from, so that RUN/data is never reused for other data.

A run that gives raw text (``data.input``) tokenizes it once into RUN/data; a resumed run, or a
new start after a failed one, reuses that folder. The fingerprint recorded in RUN/data/meta.json
(key ``"fingerprint"``) says what it was made from:

    {"inputs": [{"input": "notes/", "files": [{"path", "bytes", "sha256"}, ...]} | {"input": "builtin"}],
     "tokenizer": {"kind": "bpe", "vocab_size": 4096} | {"kind": "char"}
                  | {"kind": "file", "path": ..., "sha256": ...},
     "val_fraction": 0.1}

On reuse the config's fingerprint is computed again (every input file hashed) and compared: a
different input, tokenizer or split is refused with what differs. Comparison is by content: a
file that moved but is byte-identical is the same input. A recorded input file that is gone (the
raw text deleted after preparation) cannot be checked: it is reused with a warning, as long as
the config names the same path. Folders written by an earlier gptlab have no fingerprint: they
are accepted and the fingerprint is recorded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gptlab.config import DataSection
from gptlab.data.corpus import BUILTIN_CORPUS
from gptlab.data.registry import file_sha256
from gptlab.errors import GptlabError
from gptlab.io import atomic_write_json, read_json

FINGERPRINT_KEY = "fingerprint"


def file_record(path: Path) -> dict[str, Any]:
    try:
        sha256, size = file_sha256(path), path.stat().st_size
    except OSError as e:
        raise GptlabError(f"cannot read input {path}: {e.strerror or e}") from None
    return {"path": str(path.resolve()), "bytes": size, "sha256": sha256}


def input_record(item: str) -> dict[str, Any]:
    if item == BUILTIN_CORPUS:
        return {"input": item}
    from gptlab.data.corpus import find_text_files

    return {"input": item, "files": [file_record(p) for p in find_text_files([Path(item)])]}


def tokenizer_record(data: DataSection) -> dict[str, Any]:
    if data.tokenizer == "bpe":
        return {"kind": "bpe", "vocab_size": data.vocab_size}
    if data.tokenizer == "char":
        return {"kind": "char"}
    path = Path(data.tokenizer)
    if not path.is_file():
        raise GptlabError(
            f"data.tokenizer {data.tokenizer!r} not found: expected bpe, char or a tokenizer file"
        )
    return {"kind": "file", "path": str(path.resolve()), "sha256": file_record(path)["sha256"]}


def data_fingerprint(data: DataSection, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of what ``data`` asks for. With ``recorded`` (the folder's), an input that
    names the same path as a recorded one whose files are gone takes the recorded entry."""
    old_inputs = {entry.get("input"): entry for entry in (recorded or {}).get("inputs", [])}
    inputs = []
    for item in data.input:
        if item in old_inputs and item != BUILTIN_CORPUS and not Path(item).exists():
            print(
                f"warning: data.input {item} is gone: cannot check that the prepared data still match it; "
                "reusing them",
                file=sys.stderr,
            )
            inputs.append(old_inputs[item])
        else:
            inputs.append(input_record(item))
    return {"inputs": inputs, "tokenizer": tokenizer_record(data), "val_fraction": data.val_fraction}


def record_fingerprint(data_dir: Path, fingerprint: dict[str, Any]) -> None:
    meta_path = data_dir / "meta.json"
    meta = read_json(meta_path, "data meta file")
    meta[FINGERPRINT_KEY] = fingerprint
    atomic_write_json(meta_path, meta)


def check_prepared_data(data_dir: Path, data: DataSection) -> None:
    """Refuse to reuse ``data_dir`` (a run's prepared data) for what ``data`` asks for when they
    differ; record the fingerprint of a folder prepared by an earlier gptlab."""
    meta = read_json(data_dir / "meta.json", "data meta file")
    recorded = meta.get(FINGERPRINT_KEY) if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        record_fingerprint(data_dir, data_fingerprint(data))
        return
    wanted = data_fingerprint(data, recorded)
    problem = describe_difference(recorded, wanted)
    if problem:
        raise GptlabError(
            f"{data_dir} was prepared from other data: {problem}. To train on the new data use another "
            f"train.out_dir (or, if this run has no checkpoint yet, delete {data_dir}); to continue this "
            "run, give the config it was prepared with"
        )


def describe_difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in words (None if they match)."""
    old_inputs, new_inputs = recorded.get("inputs", []), wanted["inputs"]
    if [_content(e) for e in old_inputs] != [_content(e) for e in new_inputs]:
        return (
            f"data.input changed: the run was prepared from {_describe_inputs(old_inputs)}, "
            f"the config asks for {_describe_inputs(new_inputs)}"
        )
    if recorded.get("tokenizer") != wanted["tokenizer"]:
        return (
            f"data.tokenizer changed: the run was prepared with {_describe_tokenizer(recorded.get('tokenizer'))}, "
            f"the config asks for {_describe_tokenizer(wanted['tokenizer'])}"
        )
    if recorded.get("val_fraction") != wanted["val_fraction"]:
        return (
            f"data.val_fraction changed: the run was prepared with {recorded.get('val_fraction')}, "
            f"the config asks for {wanted['val_fraction']}"
        )
    return None


def _content(entry: dict[str, Any]) -> Any:
    if "files" not in entry:
        return entry.get("input")
    return [(f.get("bytes"), f.get("sha256")) for f in entry["files"]]


def _describe_inputs(entries: list[dict[str, Any]]) -> str:
    parts = []
    for entry in entries:
        files = entry.get("files")
        if files is None:
            parts.append(str(entry.get("input")))
        elif len(files) == 1:
            f = files[0]
            parts.append(f"{entry.get('input')} ({f.get('bytes')} bytes, sha256 {str(f.get('sha256'))[:12]})")
        else:
            parts.append(f"{entry.get('input')} ({len(files)} files)")
    return ", ".join(parts) or "nothing"


def _describe_tokenizer(t: Any) -> str:
    if not isinstance(t, dict):
        return repr(t)
    if t.get("kind") == "bpe":
        return f"bpe (vocab_size {t.get('vocab_size')})"
    if t.get("kind") == "file":
        return f"the tokenizer file {t.get('path')} (sha256 {str(t.get('sha256'))[:12]})"
    return str(t.get("kind"))
