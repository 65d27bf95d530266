"""What an analysis is (gptlab.interpret.ANALYSES holds them) and what one gives back.

An analysis is an options dataclass (the single source of its defaults and help, see
gptlab.options) and ``run(run: Run, options) -> AnalysisResult``; the registry adds what
``gptlab analyze`` shows of it. Nothing here imports torch: building the CLI's parser from the
registry stays fast, and each analysis imports its maths inside ``run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError
from gptlab.options import option, positive_int, required

if TYPE_CHECKING:
    from gptlab.run import Run

Views = dict[str, str | bytes]  # file name -> contents: the HTML page first, then what it comes with


@dataclass
class AnalysisResult:
    """What an analysis found: the numbers, and two ways to show them, made only when asked for."""

    data: dict[str, Any]  # JSON-ready numbers: what `--json` prints
    table: Callable[[], str]  # the plain-text report `gptlab analyze VIEW` prints
    views: Callable[[], Views]  # the self-contained files `--out DIR` writes
    summary: str = ""  # one line saying what the view shows (its link on `analyze all`'s index)

    def write(self, out_dir: str | Path) -> Path:
        """Write the views into ``out_dir`` (made if needed), the page last, so it never links a
        file that is not there yet; the path of the page."""
        from gptlab.io import atomic_write_bytes, atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (page, *rest) = self.views().items()
        for name, content in [*rest, page]:
            write = atomic_write_bytes if isinstance(content, bytes) else atomic_write_text
            write(out / name, content)
        return out / page[0]


@dataclass
class AllOptions:
    """``analyze all``: every registered analysis for one text, each with its defaults (see
    each analysis's ``in_all``)."""

    text: str = required("the text for attention, lens and saliency (and the sampling prompt)")
    samples: int = option(6, "samples per setting in the sampling study", type=positive_int)
    max_new_tokens: int = option(30, "tokens per sample in the sampling study", type=positive_int)


@dataclass(frozen=True)
class Analysis:
    """One registered analysis: see the module docstring and docs/architecture.md."""

    options: type  # its options dataclass: the fields are the flags of `gptlab analyze NAME`
    run: Callable[[Run, Any], AnalysisResult]
    help: str  # one line for `gptlab analyze --help`
    files: tuple[str, ...]  # what its views write into --out (the HTML page first), claimed before any work
    title: str  # its link's title on `analyze all`'s index
    in_all: Callable[[Run, AllOptions], Any] | None = None  # its options in `analyze all` (None: left out)
    needs_attention: bool = False  # reads attention or a residual stream: `analyze all` skips it for an RNN


# ------------------------------------------------------------------------ helpers the analyses share


def encode_text(tokenizer, text: str) -> list[int]:
    """The token ids of ``text``; GptlabError when it encodes to none."""
    ids = tokenizer.encode(text)
    if not ids:
        raise GptlabError("--text encodes to no tokens")
    return ids


def token_piece(tokenizer, i: int) -> str:
    """The text of token id i (<id> past the tokenizer's vocabulary, for a padded model)."""
    from gptlab.interpret.sampling import decode_padded

    return decode_padded(tokenizer, [i])


def token_pieces(tokenizer, ids) -> list[str]:
    return [token_piece(tokenizer, i) for i in ids]
