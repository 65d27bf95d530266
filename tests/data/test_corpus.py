"""The built-in corpus (deterministic, offline) and reading text files and folders (clear errors)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import re
import subprocess
import sys
from pydoc_data.topics import topics

import pytest
from samples import SHAKESPEARE, UNICODE

from gptlab.data.corpus import (
    DOCUMENT_SEPARATOR,
    default_corpus,
    default_documents,
    find_text_files,
    iter_texts,
    read_text_file,
    read_texts,
    stdlib_docstrings,
)
from gptlab.errors import GptlabError


def test_default_corpus_is_the_bundled_python_docs_in_key_order():
    corpus = default_corpus()
    assert len(corpus) > 400_000  # ~465 KB of prose on CPython 3.10-3.13
    keys = sorted(topics)
    end = 0
    for key in keys:  # every topic present, in sorted key order (str.index raises otherwise)
        end = corpus.index(topics[key].strip(), end) + len(topics[key].strip())
    assert corpus.count(DOCUMENT_SEPARATOR) >= len(keys) - 1
    assert corpus == DOCUMENT_SEPARATOR.join(default_documents())


def test_default_corpus_is_identical_in_another_process():
    # guards against depending on set/dict iteration order or hash randomization
    code = (
        "import hashlib; from gptlab.data.corpus import default_corpus as c; "
        "print(hashlib.sha256(c(True).encode()).hexdigest())"
    )
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == hashlib.sha256(default_corpus(True).encode()).hexdigest()


@pytest.mark.parametrize("module", ["json", "textwrap", "argparse", "heapq", "email"])
def test_stdlib_docstrings_match_the_imported_modules(module):
    found = dict(stdlib_docstrings())
    assert (
        found[module]
        == f"Module {module}\n\n" + inspect.cleandoc(importlib.import_module(module).__doc__).strip()
    )


def test_docstrings_extend_the_default_corpus():
    plain, extended = default_corpus(), default_corpus(include_docstrings=True)
    assert extended.startswith(plain + DOCUMENT_SEPARATOR)
    names = [name for name, _ in stdlib_docstrings()]
    assert names == sorted(names)
    assert not any(name.startswith("_") for name in names)
    assert "antigravity" not in sys.modules  # read from source, never imported


def test_folder_is_read_recursively_in_sorted_order_skipping_hidden_and_non_text(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "b" / "z.md").write_text("zed", "utf-8")
    (tmp_path / "b" / "a.rst").write_text("ay", "utf-8")
    (tmp_path / "a.txt").write_text("first", "utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00")
    (tmp_path / ".hidden.txt").write_text("secret", "utf-8")
    (tmp_path / ".git" / "HEAD.txt").write_text("ref", "utf-8")
    files = find_text_files([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.txt", "b/a.rst", "b/z.md"]
    assert read_texts([tmp_path]) == ["first", "ay", "zed"]
    assert [p.name for p, _ in iter_texts([tmp_path / "b" / "z.md", tmp_path / "a.txt"])] == ["z.md", "a.txt"]


def test_a_file_named_explicitly_is_read_whatever_its_suffix(tmp_path):
    path = tmp_path / "LICENSE"
    path.write_text("MIT\r\nline two", "utf-8")
    assert read_texts([path]) == ["MIT\r\nline two"]  # line ends kept as they are


def test_sample_files_read_as_utf8():
    for path in (SHAKESPEARE, UNICODE):
        assert read_text_file(path) == path.read_bytes().decode("utf-8").removeprefix("\ufeff")


def test_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert read_text_file(path) == "hello"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty (0 bytes)"),
        (b"text then \x00 binary", "NUL byte at byte offset 10"),
        (b"caf\xe9 latin-1", "invalid byte 0xe9 at byte offset 3"),
        (b"\xef\xbb\xbf", "only a byte-order mark"),
    ],
)
def test_bad_files_are_clear_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(GptlabError, match=re.escape(message)) as e:
        read_texts([path])
    assert str(path) in str(e.value)


def test_missing_paths_and_empty_folders_are_errors(tmp_path):
    with pytest.raises(GptlabError, match="input not found: .*nope.txt"):
        read_texts([tmp_path / "nope.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(GptlabError, match="has no text files"):
        read_texts([tmp_path / "empty"])
    with pytest.raises(GptlabError, match="no input given"):
        read_texts([])
    with pytest.raises(GptlabError, match="is a folder"):
        read_text_file(tmp_path)
