"""Text in: the built-in default corpus and reading the user's text files and folders.

The default corpus needs no download: it is the Python documentation that ships with every
CPython (``pydoc_data.topics``: ~465 KB of English prose about the language), optionally with the
docstrings of the pure-Python standard library modules. Its exact content therefore depends on the
Python version, but for one interpreter it is always the same string.

Reading files: a file given by name is read whatever its suffix; a folder is searched recursively
for files with a suffix in ``TEXT_SUFFIXES`` (hidden files and folders, whose name starts with
``.``, are skipped), in sorted path order so results never depend on the file system. Every file
must be non-empty UTF-8 text; a binary file is reported with the byte offset of the first NUL byte
or invalid UTF-8 sequence.
"""

from __future__ import annotations

import ast
import os
import sys
import sysconfig
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

from gptlab.errors import GptlabError

PathLike = str | os.PathLike

# put between documents when the default corpus is joined into one string: two blank lines, so a
# document boundary reads like a section break (each pydoc topic starts with its own title line)
DOCUMENT_SEPARATOR = "\n\n\n"

# suffixes picked up when a folder is given (a file given by name is read whatever its suffix)
TEXT_SUFFIXES = frozenset(
    {".txt", ".text", ".md", ".markdown", ".rst", ".tex", ".py", ".json", ".jsonl", ".csv", ".tsv", ".html"}
    | {".htm", ".xml", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".c", ".h", ".cpp", ".js", ".ts", ".sh"}
)

_BOM = "\ufeff"
BUILTIN_CORPUS = "builtin"  # the data.input item that names the built-in corpus (default_documents)


def default_documents(include_docstrings: bool = False) -> list[str]:
    """The built-in corpus as a list of documents (one per pydoc topic, then one per module docstring).

    Topics come in sorted key order and module docstrings in sorted module-name order, so the list
    is the same on every run of the same Python version.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise GptlabError(
            "this Python has no bundled documentation (module pydoc_data is missing), so there is no "
            "built-in corpus: give your own text files instead"
        ) from None
    documents = [topics[key].strip() for key in sorted(topics)]
    if include_docstrings:
        documents += [doc for _, doc in stdlib_docstrings()]
    return [doc for doc in documents if doc]


def default_corpus(include_docstrings: bool = False) -> str:
    """The built-in corpus as one string: :func:`default_documents` joined with ``DOCUMENT_SEPARATOR``."""
    return DOCUMENT_SEPARATOR.join(default_documents(include_docstrings))


def stdlib_docstrings() -> list[tuple[str, str]]:
    """(module name, docstring) of the public pure-Python top-level stdlib modules, sorted by name.

    Read from the source files without importing anything (importing ``antigravity`` opens a web
    browser; others have side effects too).
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for name in sorted(n for n in sys.stdlib_module_names if not n.startswith("_")):
        for source in (stdlib / f"{name}.py", stdlib / name / "__init__.py"):
            if source.is_file():
                doc = _module_docstring(source)
                if doc:
                    found.append((name, f"Module {name}\n\n{doc}"))
                break
    return found


def _module_docstring(path: Path) -> str | None:
    """The docstring of a Python source file, from its first tokens only (no full parse, no import)."""
    try:
        with open(path, "rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    continue
                if tok.type != tokenize.STRING:
                    return None
                value = ast.literal_eval(tok.string)
                return _clean_docstring(value) if isinstance(value, str) else None
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):
        return None
    return None


def _clean_docstring(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc).strip()


def find_text_files(paths: Iterable[PathLike]) -> list[Path]:
    """Expand files and folders into a list of files (folders: recursive, sorted, ``TEXT_SUFFIXES`` only)."""
    paths = list(paths)
    if not paths:
        raise GptlabError("no input given: expected one or more text files or folders")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in TEXT_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                suffixes = " ".join(sorted(TEXT_SUFFIXES))
                raise GptlabError(f"folder {path} has no text files (looked for: {suffixes})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise GptlabError(f"input not found: {path}")
    return files


def read_text_file(path: PathLike) -> str:
    """Read one non-empty UTF-8 text file (a leading byte-order mark is dropped; line ends are kept)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GptlabError(f"input not found: {path}") from None
    except IsADirectoryError:
        raise GptlabError(f"input {path} is a folder, expected a text file") from None
    except OSError as e:
        raise GptlabError(f"cannot read input {path}: {e.strerror}") from None
    if not data:
        raise GptlabError(f"input {path} is empty (0 bytes), expected text")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise GptlabError(f"input {path} looks binary: NUL byte at byte offset {nul}, expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GptlabError(
            f"input {path} is not UTF-8 text: invalid byte 0x{data[e.start]:02x} at byte offset {e.start} "
            "(convert it to UTF-8 first, e.g. with iconv)"
        ) from None
    text = text.removeprefix(_BOM)
    if not text:
        raise GptlabError(f"input {path} holds only a byte-order mark, expected text")
    return text


def iter_texts(paths: Iterable[PathLike]) -> Iterator[tuple[Path, str]]:
    """Yield (file, text) for every file under ``paths`` (see :func:`find_text_files`), one at a time."""
    for path in find_text_files(paths):
        yield path, read_text_file(path)


def read_texts(paths: Iterable[PathLike]) -> list[str]:
    """The texts of every file under ``paths``, in :func:`find_text_files` order."""
    return [text for _, text in iter_texts(paths)]


def config_texts(data_config) -> list[str]:
    """The raw training texts a config's ``[data]`` section names in ``data.input``: the built-in
    corpus's documents for "builtin", one text per file for a file or folder (in
    :func:`find_text_files` order). GptlabError when it names none (it trains from ``data.dir``)."""
    if not data_config.input:
        raise GptlabError(
            "this needs the raw training text, but the config trains from a prepared folder (data.dir); "
            "give the corpus file(s) explicitly"
        )
    texts: list[str] = []
    for item in data_config.input:
        texts += default_documents() if item == BUILTIN_CORPUS else read_texts([item])
    return texts
