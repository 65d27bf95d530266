"""Corpus-scale `data prepare` (gptlab.data.streaming, gptlab.data.readers): formats, shards,
workers, resume, flat memory, and the training loader reading the shards."""

from __future__ import annotations

import gzip
import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gptlab.cli import main
from gptlab.data import streaming
from gptlab.data.readers import corpus_files, iter_pieces
from gptlab.data.shards import BatchSampler, TokenDataset, iter_eval_batches
from gptlab.data.streaming import goes_to_val, prepare_corpus
from gptlab.errors import GptlabError

EOT = "<|endoftext|>"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def corpus(tmp_path, shakespeare) -> Path:
    """A folder of every format: text, gzipped JSONL, zstd text, Parquet, plus a file to skip."""
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(shakespeare[:15_000], "utf-8")
    with gzip.open(folder / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(60):
            f.write(json.dumps({"text": shakespeare[15_000 + 300 * i : 15_300 + 300 * i], "id": i}) + "\n")
    zstandard = pytest.importorskip("zstandard")
    (folder / "c.txt.zst").write_bytes(
        zstandard.ZstdCompressor().compress(shakespeare[33_000:40_000].encode())
    )
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    rows = [shakespeare[40_000 + 500 * i : 40_500 + 500 * i] for i in range(16)]
    pq.write_table(pa.table({"text": rows}), folder / "d.parquet", row_group_size=7)
    (folder / "image.png").write_bytes(b"\x89PNG\x00")
    return folder


def documents_of(corpus: Path, shakespeare: str) -> list[str]:
    """The documents `corpus` holds, in the order prepare reads them (sorted paths)."""
    return (
        [shakespeare[:15_000], shakespeare[33_000:40_000]]
        + [shakespeare[40_000 + 500 * i : 40_500 + 500 * i] for i in range(16)]
        + [shakespeare[15_000 + 300 * i : 15_300 + 300 * i] for i in range(60)]
    )


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.bin"))}


def test_every_format_streams_to_the_ids_of_its_documents(tmp_path, corpus, shakespeare, bpe):
    meta = prepare_corpus([corpus], bpe, tmp_path / "out", shard_tokens=3000, val_fraction=0.25,
                          chunk_chars=3000, progress=False)  # fmt: skip
    docs = documents_of(corpus, shakespeare)
    assert [Path(s["source"]).name for s in meta["sources"]] == [
        "a.txt",
        "c.txt.zst",
        "d.parquet",
        "b.jsonl.gz",
    ]
    assert meta["documents"] == len(docs)
    # the reference: each document encoded whole, then its <|endoftext|>, routed by the seeded hash
    streams = {"train": [], "val": []}
    for i, doc in enumerate(docs):
        split = "val" if goes_to_val(i, 0.25, 0) else "train"
        streams[split] += bpe.encode(doc) + [bpe.eot_id]
    shards = meta["shards"]
    written = {
        split: np.concatenate(
            [np.fromfile(tmp_path / "out" / s["file"], dtype=np.uint16) for s in shards[split]]
        )
        for split in ("train", "val")
    }
    for split in ("train", "val"):
        assert written[split].tolist() == streams[split]
        assert (
            all(s["tokens"] == 3000 for s in shards[split][:-1]) and 0 < shards[split][-1]["tokens"] <= 3000
        )
        assert sum(s["documents"] for s in shards[split]) == streams[split].count(bpe.eot_id)
    assert meta["split"]["method"] == "documents" and meta["split"]["val_documents"] > 0
    # the loader reads the splits back across shard boundaries
    train, val = TokenDataset(tmp_path / "out", "train"), TokenDataset(tmp_path / "out", "val")
    assert np.asarray(train.tokens).tolist() == streams["train"]
    assert train.tokens[2990:3010].tolist() == streams["train"][2990:3010]
    assert train.tokens[-1] == bpe.eot_id
    assert len(val) == len(streams["val"])


def test_the_trainer_draws_batches_from_shards(tmp_path, corpus, bpe):
    prepare_corpus([corpus], bpe, tmp_path / "out", shard_tokens=1000, progress=False)
    train = TokenDataset(tmp_path / "out", "train")
    flat = np.asarray(train.tokens).astype(np.int64)
    sampler = BatchSampler(train, batch_size=8, block_size=64, seed=1)
    for _ in range(5):
        starts = sampler.batch_starts(sampler.step)
        x, y = sampler.next_batch()
        for row, s in enumerate(starts.tolist()):
            assert x[row].tolist() == flat[s : s + 64].tolist()
            assert y[row].tolist() == flat[s + 1 : s + 65].tolist()
    x, _ = next(iter_eval_batches(TokenDataset(tmp_path / "out", "val"), 2, 32))
    assert x.shape == (2, 32)
    assert len(train.head(0.5)) == -(-len(flat) // 2)


@pytest.mark.slow
def test_ids_do_not_depend_on_the_number_of_workers(tmp_path, corpus, bpe):
    bytes_by_workers = {}
    for workers in (1, 2, 3):
        prepare_corpus([corpus], bpe, tmp_path / f"w{workers}", shard_tokens=2500, workers=workers,
                       chunk_chars=3000, progress=False)  # fmt: skip
        bytes_by_workers[workers] = shard_bytes(tmp_path / f"w{workers}")
    assert bytes_by_workers[1] == bytes_by_workers[2] == bytes_by_workers[3]


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path, corpus, bpe, monkeypatch):
    options = {"shard_tokens": 1500, "chunk_chars": 2000, "progress": False}
    prepare_corpus([corpus], bpe, tmp_path / "whole", **options)

    monkeypatch.setattr(streaming, "CHECKPOINT_CHARS", 5_000)
    real_append, calls = streaming.ShardWriter.append, []

    def crash_midway(self, ids):
        calls.append(1)
        if len(calls) == 60:  # past several checkpoints and finished shards, not at the end
            raise KeyboardInterrupt
        return real_append(self, ids)

    monkeypatch.setattr(streaming.ShardWriter, "append", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus([corpus], bpe, tmp_path / "cut", **options)
    assert not (tmp_path / "cut" / "meta.json").exists() and (tmp_path / "cut" / "progress.json").exists()
    record = json.loads((tmp_path / "cut" / "progress.json").read_text())
    assert record["pieces_done"] > 0 and record["writers"]["train"]["shards"]
    with pytest.raises(GptlabError, match="not found: .*not a prepared data folder"):
        TokenDataset(tmp_path / "cut", "train")  # unfinished: refused, not read

    monkeypatch.setattr(streaming.ShardWriter, "append", real_append)
    encoded = []
    real_encode = streaming.encode_texts
    monkeypatch.setattr(
        streaming, "encode_texts", lambda tok, texts: encoded.extend(texts) or real_encode(tok, texts)
    )
    meta = prepare_corpus([corpus], bpe, tmp_path / "cut", resume=True, **options)
    assert shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "whole")
    assert meta["splits"] == json.loads((tmp_path / "whole" / "meta.json").read_text())["splits"]
    assert not (tmp_path / "cut" / "progress.json").exists() and not list((tmp_path / "cut").glob("*.part"))
    total = sum(len(p.text) for p in iter_pieces(corpus_files([corpus]), chunk_chars=4000))
    assert 0 < sum(map(len, encoded)) < total  # the pieces done before the cut were not tokenized again

    with pytest.raises(GptlabError, match="nothing to resume"):
        prepare_corpus([corpus], bpe, tmp_path / "cut", resume=True, **options)


def test_resume_refuses_changed_inputs_or_settings(tmp_path, corpus, bpe, monkeypatch):
    monkeypatch.setattr(streaming, "CHECKPOINT_CHARS", 10_000)
    monkeypatch.setattr(streaming, "_manifest", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus([corpus], bpe, tmp_path / "cut", shard_tokens=2000, progress=False)
    with pytest.raises(GptlabError, match=r"changed since it started \(shard_tokens\)"):
        prepare_corpus([corpus], bpe, tmp_path / "cut", shard_tokens=3000, resume=True, progress=False)
    (corpus / "a.txt").write_text("changed", "utf-8")
    with pytest.raises(GptlabError, match=r"\(sources\)"):
        prepare_corpus([corpus], bpe, tmp_path / "cut", shard_tokens=2000, resume=True, progress=False)


def test_one_document_gets_a_tail_split_over_shards(tmp_path, shakespeare):
    from gptlab.tokenizers import CharTokenizer

    char = CharTokenizer.train([shakespeare, string.printable], special_tokens=[EOT])
    (tmp_path / "one.txt").write_text(shakespeare[:6_000], "utf-8")
    meta = prepare_corpus([tmp_path / "one.txt"], char, tmp_path / "out", shard_tokens=500,
                          val_fraction=0.25, chunk_chars=900, progress=False)  # fmt: skip
    assert meta["split"]["method"] == "tail" and meta["shards"]["val"] == []
    ids = char.encode(shakespeare[:6_000]) + [char.eot_id]
    n_val = -(-len(ids) // 4)
    assert np.asarray(TokenDataset(tmp_path / "out", "val").tokens).tolist() == ids[-n_val:]
    assert np.asarray(TokenDataset(tmp_path / "out", "train").tokens).tolist() == ids[:-n_val]
    assert len(meta["splits"]["val"]["segments"]) > 1  # the tail spans shards, read without a copy on disk


def test_uint32_shards_for_big_vocabularies(tmp_path):
    from gptlab.tokenizers.base import Tokenizer

    class Big(Tokenizer):  # ids above 65535: code points + 60000
        vocab_size, eot_id, special_tokens = 70_000, None, {}

        def encode(self, text, allowed_special=(), disallowed_special=()):
            return [ord(c) + 60_000 for c in text]

        def decode(self, ids):
            return "".join(chr(i - 60_000) for i in ids)

        def token_bytes(self, token_id):
            return chr(token_id - 60_000).encode()

        def to_dict(self):
            return {"type": "big"}

        @classmethod
        def from_dict(cls, data, source=""):
            return cls()

        def save(self, path):
            Path(path).write_text("{}")

    (tmp_path / "t.txt").write_text("hello world", "utf-8")
    meta = prepare_corpus([tmp_path / "t.txt"], Big(), tmp_path / "out", val_fraction=0, progress=False)
    assert meta["dtype"] == "uint32"
    assert np.fromfile(tmp_path / "out" / "train-00000.bin", dtype=np.uint32).tolist() == [
        ord(c) + 60_000 for c in "hello world"
    ]


def test_bad_input_is_a_clear_error_with_file_and_line(tmp_path, bpe):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n', "utf-8")
    with pytest.raises(GptlabError, match=r"bad.jsonl:2: expected a JSON object with a string field 'text'"):
        prepare_corpus([bad], bpe, tmp_path / "o1", progress=False)
    bad.write_text('{"text": "fine"}\n\n{"text": \n', "utf-8")
    with pytest.raises(GptlabError, match=r"bad.jsonl:3: not valid JSON"):
        prepare_corpus([bad], bpe, tmp_path / "o2", progress=False)
    (tmp_path / "body.jsonl").write_text('{"body": "x"}\n', "utf-8")
    assert prepare_corpus([tmp_path / "body.jsonl"], bpe, tmp_path / "o3", text_field="body", val_fraction=0,
                          progress=False)["documents"] == 1  # fmt: skip
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(
        GptlabError, match=r"latin1.txt is not UTF-8 text: invalid byte at \(decompressed\) offset 3"
    ):
        prepare_corpus([tmp_path / "latin1.txt"], bpe, tmp_path / "o4", progress=False)
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"some text" * 100)[:-20])
    with pytest.raises(GptlabError, match="cannot read .*cut.txt.gz"):
        prepare_corpus([tmp_path / "cut.txt.gz"], bpe, tmp_path / "o5", progress=False)
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    pq.write_table(pa.table({"content": ["a"]}), tmp_path / "p.parquet")
    with pytest.raises(GptlabError, match=r"no column 'text' \(columns: content\)"):
        prepare_corpus([tmp_path / "p.parquet"], bpe, tmp_path / "o6", progress=False)


def test_cli_prepare_resume_and_json(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["data", "prepare", "--input", str(corpus), "--tokenizer", "char", "--out", str(out), "--shard-tokens",
            "5000", "--workers", "2", "--json"]  # fmt: skip
    assert main(args) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta == json.loads((out / "meta.json").read_text("utf-8")) and len(meta["shards"]["train"]) > 3
    assert main(args) == 2  # an existing folder is never overwritten without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


LARGE_STREAM = """
import os, resource, sys
from pathlib import Path
from gptlab.data.streaming import prepare_corpus
from gptlab.tokenizers import CharTokenizer
import string
words = ("the quick brown fox jumps over the lazy dog." * 4 + "\\n").encode()
size, out = int(sys.argv[1]), Path(sys.argv[2])
src = out.parent / "big.txt"
with open(src, "wb") as f:  # written lazily, block by block: the text never sits in memory
    block = words * ((1 << 20) // len(words))
    for _ in range(size // len(block)):
        f.write(block)
tok = CharTokenizer.train([string.printable], special_tokens=["<|endoftext|>"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepare_corpus([src], tok, out, shard_tokens=1 << 22, workers=1, progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
src.unlink()
print(before, after)
"""


def _peak_rss_growth_kb(tmp_path, size: int) -> int:
    script = tmp_path / "large.py"
    script.write_text(textwrap.dedent(LARGE_STREAM), "utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(size), str(tmp_path / f"out{size}")], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    before, after = map(int, done.stdout.split())
    return after - before


@pytest.mark.slow
def test_memory_stays_flat_as_the_corpus_grows(tmp_path):
    """Peak RSS growth while preparing a generated text does not grow with its size: 8 MB vs
    32 MB by default; GPTLAB_LARGE_CORPUS_GB=2 adds a 2 GB run (many minutes)."""
    small = _peak_rss_growth_kb(tmp_path, 8 << 20)
    large = _peak_rss_growth_kb(tmp_path, 32 << 20)
    # 4x the input (24 MB more text, ~100 MB more as Python strs and int lists), under 16 MB more
    # peak memory: what stays is one piece in flight, not the corpus
    assert large < small + 16 * 1024, (small, large)
    gigabytes = float(os.environ.get("GPTLAB_LARGE_CORPUS_GB", "0"))
    if gigabytes:
        huge = _peak_rss_growth_kb(tmp_path, int(gigabytes * (1 << 30)))
        assert huge < small + 16 * 1024, (small, large, huge)


def test_a_separator_splits_text_files_into_documents(tmp_path, bpe, monkeypatch):
    from gptlab.data import readers

    monkeypatch.setattr(readers, "READ_BYTES", 7)  # separators cut across reads, too
    stories = ["Once upon a time, a cat.", "The dog ran.\nIt was happy.", "The end."]
    (tmp_path / "stories.txt").write_text(f"\n{EOT}\n".join(stories) + f"\n{EOT}\n\n", "utf-8")
    texts = [p.text for p in iter_pieces([tmp_path / "stories.txt"], separator=EOT)]
    assert texts == stories
    meta = prepare_corpus([tmp_path / "stories.txt"], bpe, tmp_path / "out", separator=EOT, val_fraction=0,
                          progress=False)  # fmt: skip
    assert meta["documents"] == 3 and meta["separator"] == EOT
    expected = [i for story in stories for i in [*bpe.encode(story), bpe.eot_id]]
    assert np.asarray(TokenDataset(tmp_path / "out", "train").tokens).tolist() == expected
