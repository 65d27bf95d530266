"""The chunker: every word covered, consecutive chunks share exactly `overlap` words, streaming;
and the document reader: binary files skipped, JSONL ids, bad input errors."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gptlab.errors import GptlabError
from gptlab.rag.chunking import chunk_spans, chunk_words, read_chunks


@given(n=st.integers(0, 300), size=st.integers(1, 40), data=st.data())
def test_chunks_cover_every_word_and_overlap_exactly(n, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    spans = chunk_spans(n, size, overlap)
    covered = set()
    for start, end in spans:
        assert 0 < end - start <= size
        covered |= set(range(start, end))
    assert covered == set(range(n))
    for (s1, e1), (s2, _) in zip(spans, spans[1:]):
        assert s2 == s1 + size - overlap  # a fixed stride
        assert e1 - s2 == overlap  # consecutive chunks share exactly `overlap` words
        assert e1 - s1 == size  # only the last chunk may be short
    if spans:  # the last chunk adds a word no earlier chunk had
        assert len(spans) == 1 or spans[-1][1] > spans[-2][1]


def test_chunker_streams_an_endless_document():
    words = (str(i) for i in itertools.count())  # never ends: a chunker that reads it all would hang
    first = list(itertools.islice(chunk_words(words, 4, 1), 3))
    assert first == [(0, ["0", "1", "2", "3"]), (3, ["3", "4", "5", "6"]), (6, ["6", "7", "8", "9"])]


@pytest.mark.parametrize("size, overlap", [(0, 0), (4, 4), (4, -1)])
def test_bad_sizes_are_refused(size, overlap):
    with pytest.raises(GptlabError):
        list(chunk_words(["a"], size, overlap))


def test_folder_reading_skips_binary_files_with_a_message(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("one two three\nfour five\n")
    (tmp_path / "sub" / "b.md").write_text("six")
    (tmp_path / "c.bin").write_bytes(b"PK\x03\x04\x00\x00binary")
    (tmp_path / "d.dat").write_bytes(b"\xff\xfe not utf-8")
    warnings = []
    chunks = list(read_chunks(tmp_path, 3, 1, warnings.append))
    assert [(c.doc, c.start, c.text) for c in chunks] == [
        ("a.txt", 0, "one two three"),
        ("a.txt", 2, "three four five"),
        ("sub/b.md", 0, "six"),
    ]
    assert len(warnings) == 2 and "c.bin" in warnings[0] and "d.dat" in warnings[1]


def test_jsonl_rows_are_documents_with_their_ids(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        json.dumps({"id": "x", "text": "a b c"}) + "\n\n" + json.dumps({"id": "y", "text": "d"}) + "\n"
    )
    assert [(c.doc, c.text) for c in read_chunks(path, 8, 0)] == [("x", "a b c"), ("y", "d")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n', ":2: document id 'x' appears twice"),
        ('{"id": 1, "text": "a"}\n', ':1: expected {"id": string, "text": string}'),
        ("not json\n", ":1 is not valid JSON"),
        ("[" * 100_000 + "\n", ":1 is nested too deeply"),  # gptlab.io.parse_json's guard
    ],
)
def test_bad_jsonl_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "docs.jsonl"
    path.write_text(content)
    with pytest.raises(GptlabError, match=message.replace("{", r"\{").replace("}", r"\}").replace("'", "'")):
        list(read_chunks(path, 8, 0))


def test_a_bad_byte_after_the_sniffed_head_names_its_line(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"ok line\n" * 2000 + b"bad \xff byte\n")  # past the first 8 KiB
    with pytest.raises(GptlabError, match=r"late.txt:2001: not UTF-8"):
        list(read_chunks(path, 8, 0))


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(GptlabError, match="documents not found"):
        list(read_chunks(tmp_path / "nope", 8, 0))


def test_words_cut_by_read_blocks_are_joined(tmp_path, monkeypatch):
    import gptlab.rag.chunking as chunking

    monkeypatch.setattr(chunking, "READ_BLOCK", 5)  # blocks end inside words and inside "é"
    text = "alpha béta  gamma\ndelta epsilon zeta eta"
    path = tmp_path / "one.txt"
    path.write_text(text, encoding="utf-8")
    words = [w for c in read_chunks(path, 100, 0) for w in c.text.split(" ")]
    assert words == text.split()
