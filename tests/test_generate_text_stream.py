"""TextStream, the one tokens -> text assembler (stream_text, chat and the server use it):
whatever way a text is split into tokens, the pieces join to the text decoded at once; a stop
string is never released, even split across tokens; held-back text comes out at the end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gptlab.generate import REPLACEMENT_CHAR, TextStream


class ByteTokens:
    """One token per UTF-8 byte (id = the byte): characters span several tokens."""

    vocab_size = 256
    eot_id = None

    def decode(self, ids) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class ChunkTokens:
    """Tokens are arbitrary byte chunks, registered as they are made: any split of a text's bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    @property
    def vocab_size(self) -> int:
        return len(self.chunks)

    def token(self, chunk: bytes) -> int:
        self.chunks.append(chunk)
        return len(self.chunks) - 1

    def decode(self, ids) -> str:
        return b"".join(self.chunks[i] for i in ids).decode("utf-8", errors="replace")


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # any UTF-8-encodable text


@st.composite
def split_bytes(draw, data: bytes) -> list[bytes]:
    """``data`` cut at random places (including inside characters)."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=len(data))))
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def run(tokenizer, tokens, stops=()) -> tuple[list[str], TextStream]:
    stream = TextStream(tokenizer, stops)
    pieces = [stream.push(t) for t in tokens]
    if not stream.stopped:
        pieces.append(stream.finish())
    return pieces, stream


@given(st.data(), TEXT)
def test_any_token_split_gives_the_text_decoded_at_once(data, text):
    tokenizer = ChunkTokens()
    chunks = data.draw(split_bytes(text.encode()))
    pieces, _ = run(tokenizer, [tokenizer.token(c) for c in chunks])
    assert "".join(pieces) == text


@given(TEXT, TEXT, st.text(min_size=1, max_size=4), TEXT)
def test_a_stop_string_is_never_released_even_split_across_tokens(before, between, stop, after):
    text = before + stop + between + after
    pieces, stream = run(ByteTokens(), list(text.encode()), [stop])
    released = "".join(pieces)
    assert stop not in released
    assert stream.stopped
    assert released == text[: text.index(stop)]  # everything before the first occurrence


@given(TEXT, st.text(min_size=2, max_size=5))
def test_held_back_text_is_released_at_the_end(text, stop):
    # the text ends with a proper prefix of the stop string: held back while it might be a stop
    # string, released by finish once the completion is over
    ending = stop[:-1]
    full = text + ending
    if stop in full:
        return
    stream = TextStream(ByteTokens(), [stop])
    streamed = "".join(stream.push(b) for b in full.encode())
    assert full.startswith(streamed) and len(streamed) <= len(full) - len(ending)
    assert streamed + stream.finish() == full
    assert not stream.stopped


def test_an_unfinished_character_comes_out_as_replacement_at_the_end():
    stream = TextStream(ByteTokens())
    assert stream.push(ord("a")) == "a"
    assert stream.push("é".encode()[0]) == ""  # waits for its second byte
    assert stream.finish() == REPLACEMENT_CHAR


def test_ids_past_the_vocabulary_have_no_text():
    stream = TextStream(ByteTokens())
    assert stream.push(300) == "" and stream.push(ord("b")) == "b"
