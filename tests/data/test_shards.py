"""Token shards (prepare, TokenDataset) and batches (BatchSampler, iter_eval_batches)."""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import SHAKESPEARE

from gptlab.cli import main
from gptlab.data.shards import (
    BatchSampler,
    TokenDataset,
    choose_val_documents,
    iter_eval_batches,
    prepare,
    split_text,
    token_dtype,
    tokenize_documents,
)
from gptlab.errors import GptlabError

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def char(shakespeare):
    from gptlab.tokenizers import CharTokenizer

    # printable ASCII too, so the synthetic documents below ("document 0", digits) are covered
    return CharTokenizer.train([shakespeare, string.printable])


def write_token_folder(
    folder: Path, train: np.ndarray, vocab_size: int, val: np.ndarray | None = None
) -> Path:
    """A data folder in the documented format, written by hand (no tokenizer involved)."""
    folder.mkdir(parents=True, exist_ok=True)
    val = np.empty(0, dtype=train.dtype) if val is None else val
    train.tofile(folder / "train.bin")
    val.tofile(folder / "val.bin")
    splits = {
        "train": {"file": "train.bin", "tokens": len(train)},
        "val": {"file": "val.bin", "tokens": len(val)},
    }
    meta = {"format": "gptlab-tokens", "version": 1, "dtype": train.dtype.name, "vocab_size": vocab_size}
    (folder / "meta.json").write_text(json.dumps(meta | {"eot_id": None, "splits": splits}), "utf-8")
    return folder


@pytest.fixture
def counting_dataset(tmp_path) -> TokenDataset:
    """train = 0, 1, 2, ..., 999: a window's first token is its start position."""
    return TokenDataset(write_token_folder(tmp_path / "d", np.arange(1000, dtype=np.uint16), 1000), "train")


# ----- prepare ----------------------------------------------------------------------------------


def test_single_document_is_split_at_the_tail(tmp_path, shakespeare, char):
    meta = prepare([SHAKESPEARE], char, tmp_path / "out", val_fraction=0.1, progress=False)
    ids = np.array(char.encode(shakespeare) + ([char.eot_id] if char.eot_id is not None else []))
    train, val = TokenDataset(tmp_path / "out", "train"), TokenDataset(tmp_path / "out", "val")
    assert meta["split"]["method"] == "tail"
    assert len(val) == int(np.ceil(0.1 * len(ids)))
    assert np.array_equal(np.concatenate([train.tokens, val.tokens]), ids)
    assert train.dtype == np.uint16 and meta["dtype"] == "uint16"
    assert meta["splits"]["train"]["tokens"] == len(train)
    assert meta["vocab_size"] == char.vocab_size == train.vocab_size
    raw = SHAKESPEARE.read_bytes()
    assert meta["sources"] == [
        {"source": str(SHAKESPEARE), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    ]
    assert train.load_tokenizer().encode("To be, or not") == char.encode("To be, or not")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "meta.json",
        "tokenizer.json",
        "train.bin",
        "val.bin",
    ]


def test_documents_are_held_out_whole_and_end_with_endoftext(tmp_path, bpe, shakespeare):
    documents = [shakespeare[i * 2000 : (i + 1) * 2000] for i in range(20)]
    meta = prepare(documents, bpe, tmp_path / "out", val_fraction=0.2, seed=3, progress=False)
    train = TokenDataset(tmp_path / "out", "train").tokens
    val = TokenDataset(tmp_path / "out", "val").tokens
    assert meta["split"]["method"] == "documents"
    encoded = [bpe.encode(doc) + [bpe.eot_id] for doc in documents]

    def units(tokens):  # cut the stream after each <|endoftext|>
        cuts = np.flatnonzero(tokens == bpe.eot_id) + 1
        return [t.tolist() for t in np.split(tokens, cuts)[:-1]]

    train_docs, val_docs = units(train), units(val)
    assert len(train_docs) + len(val_docs) == 20 == meta["documents"]
    assert train_docs == [e for e in encoded if e in train_docs]  # whole documents, original order
    assert val_docs == [e for e in encoded if e in val_docs]
    assert not set(map(tuple, train_docs)) & set(map(tuple, val_docs))
    assert 0.1 <= len(val) / (len(train) + len(val)) <= 0.2

    prepare(documents, bpe, tmp_path / "same", val_fraction=0.2, seed=3, progress=False)
    assert np.array_equal(TokenDataset(tmp_path / "same", "val").tokens, val)
    prepare(documents, bpe, tmp_path / "other", val_fraction=0.2, seed=4, progress=False)
    assert not np.array_equal(TokenDataset(tmp_path / "other", "val").tokens, val)


def test_literal_endoftext_text_is_not_a_document_boundary(tmp_path, bpe):
    meta = prepare(
        ["a story " + EOT + " goes on", "another story"],
        bpe,
        tmp_path / "out",
        val_fraction=0,
        progress=False,
    )
    tokens = TokenDataset(tmp_path / "out", "train").tokens
    assert (tokens == bpe.eot_id).sum() == 2  # one after each document, none from the typed text
    assert meta["split"]["method"] == "none" and meta["splits"]["val"]["tokens"] == 0


def test_a_huge_document_falls_back_to_a_tail_split(tmp_path, char, shakespeare):
    meta = prepare([shakespeare[:50_000], "tiny"], char, tmp_path / "out", val_fraction=0.1, progress=False)
    assert meta["split"]["method"] == "tail"
    assert choose_val_documents([900, 10], 0.1, seed=0) is None
    assert choose_val_documents([500], 0.1, seed=0) is None
    assert choose_val_documents([10] * 10, 0.2, seed=0) is not None


def test_folders_are_documents_per_file(tmp_path, char):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for i in range(6):
        (tmp_path / "in" / ("sub" if i % 2 else "") / f"{i}.txt").write_text(f"document {i} " * 50, "utf-8")
    meta = prepare([tmp_path / "in"], char, tmp_path / "out", val_fraction=0.3, progress=False)
    assert meta["documents"] == 6 and len(meta["sources"]) == 6
    assert meta["split"]["method"] == "documents"


def test_vocabularies_over_65536_use_uint32(tmp_path):
    class CodePointTokenizer:  # the tokenizer contract, with an id per Unicode code point
        vocab_size, eot_id = 0x110000, None

        def encode_batch(self, texts, allowed_special=(), num_workers=1):
            return [[ord(c) for c in text] for text in texts]

        def save(self, path):
            Path(path).write_text("{}", "utf-8")

    meta = prepare(["smile 🙂 ∑"], CodePointTokenizer(), tmp_path / "out", val_fraction=0, progress=False)
    dataset = TokenDataset(tmp_path / "out", "train")
    assert meta["dtype"] == "uint32" and dataset.dtype == np.uint32
    assert dataset.tokens.tolist() == [ord(c) for c in "smile 🙂 ∑"]
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
@pytest.mark.parametrize("backend", ["python", "tiktoken"])
def test_workers_and_cutting_do_not_change_the_tokens(shakespeare, pattern, backend, monkeypatch):
    from gptlab.tokenizers import BPETokenizer

    # whitespace runs before newlines and CRLF: where a careless cut would change the pre-tokens
    text = shakespeare[:12_000].replace("\n\n", " \n\n", 40).replace(".\n", ".\r\n", 40) + " <|endoftext|>x"
    tokenizer = BPETokenizer.train(text, vocab_size=350, special_tokens=[EOT], pattern=pattern)
    encode_batch = tokenizer.encode_batch
    monkeypatch.setattr(
        tokenizer, "encode_batch", lambda texts, **kw: encode_batch(texts, backend=backend, **kw)
    )
    documents = [text, text[5000:9000]]
    expected = [tokenizer.encode(doc, backend="python") for doc in documents]
    parallel = tokenize_documents(documents, tokenizer, num_workers=2, chunk_chars=300, progress=False)
    assert [a.tolist() for a in parallel] == expected
    assert len(split_text(text, 300)) > 20  # the cuts really happened


def test_a_custom_pattern_is_never_cut(shakespeare, monkeypatch):
    from gptlab.tokenizers import BPETokenizer

    tokenizer = BPETokenizer.train(
        shakespeare[:3000], vocab_size=270, special_tokens=[EOT], pattern=r"\S+\n?|\s"
    )
    seen = []
    encode_batch = tokenizer.encode_batch
    monkeypatch.setattr(
        tokenizer, "encode_batch", lambda texts, **kw: seen.extend(texts) or encode_batch(texts, **kw)
    )
    tokenize_documents([shakespeare[:3000]], tokenizer, num_workers=2, chunk_chars=300, progress=False)
    assert seen == [shakespeare[:3000]]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n\t", max_size=300), st.integers(1, 50))
def test_split_text_cuts_only_at_a_newline_between_non_spaces(text, chunk_chars):
    pieces = split_text(text, chunk_chars)
    assert "".join(pieces) == text
    for piece, following in zip(pieces, pieces[1:]):
        assert piece.endswith("\n") and not piece[-2].isspace() and not following[0].isspace()
        assert len(piece) > chunk_chars


def test_prepare_errors(tmp_path, char):
    path = SHAKESPEARE
    with pytest.raises(GptlabError, match="pass pathlib.Path"):
        prepare([str(path)], char, tmp_path / "out", progress=False)
    for bad in (-0.1, 1.0):
        with pytest.raises(GptlabError, match="val_fraction must be in"):
            prepare([path], char, tmp_path / "out", val_fraction=bad, progress=False)
    with pytest.raises(GptlabError, match="no input given"):
        prepare([], char, tmp_path / "out", progress=False)
    (tmp_path / "a-file").write_text("x")

    class NeverEncodes:  # the output folder is checked before any tokenizing
        vocab_size, eot_id, pattern = 10, None, None

        def encode_batch(self, *args, **kwargs):
            raise AssertionError("tokenized before checking the output folder")

    with pytest.raises(GptlabError, match="a-file exists and is not a folder"):
        prepare([path], NeverEncodes(), tmp_path / "a-file", progress=False)
    with pytest.raises(GptlabError, match="cannot create output folder"):
        prepare([path], char, tmp_path / "a-file" / "sub", progress=False)
    assert (tmp_path / "a-file").read_text() == "x"


def test_the_builtin_corpus_prepares_offline(tmp_path):
    from gptlab.data.corpus import default_documents
    from gptlab.tokenizers import CharTokenizer

    documents = default_documents()[:40]
    tokenizer = CharTokenizer.train(documents, special_tokens=[EOT])
    meta = prepare(documents, tokenizer, tmp_path / "d", val_fraction=0.1, progress=False)
    assert meta["documents"] == 40 and meta["split"]["method"] == "documents"
    train, val = TokenDataset(tmp_path / "d", "train"), TokenDataset(tmp_path / "d", "val")
    assert len(train) + len(val) == sum(len(d) + 1 for d in documents)  # one char per token + EOT each
    x, y = BatchSampler(train, batch_size=2, block_size=16).next_batch()
    assert x.shape == y.shape == (2, 16)


def test_dataset_errors(tmp_path, char):
    with pytest.raises(GptlabError, match="not a prepared data folder"):
        TokenDataset(tmp_path / "missing", "train")
    folder = tmp_path / "out"
    prepare([SHAKESPEARE], char, folder, progress=False)
    with pytest.raises(GptlabError, match="no split 'test'"):
        TokenDataset(folder, "test")
    train_bin = folder / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-2])
    with pytest.raises(GptlabError, match="truncated or from another preparation"):
        TokenDataset(folder, "train")

    write_token_folder(tmp_path / "ids", np.array([1, 2, 3, 9, 4], dtype=np.uint16), vocab_size=9)
    with pytest.raises(GptlabError, match="token 3 has id 9, but vocab_size is 9"):
        TokenDataset(tmp_path / "ids", "train")


def test_cli_prepare(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["data", "prepare", "--input", str(SHAKESPEARE), "--tokenizer", "char",
                 "--out", str(out), "--val-fraction", "0.2", "--json"])  # fmt: skip
    assert code == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta == json.loads((out / "meta.json").read_text("utf-8"))
    assert len(TokenDataset(out, "val")) == meta["splits"]["val"]["tokens"] > 0

    code = main(["data", "prepare", "--input", str(SHAKESPEARE), "--vocab-size", "300",
                 "--out", str(tmp_path / "bpe")])  # fmt: skip
    assert code == 0
    assert TokenDataset(tmp_path / "bpe", "train").vocab_size == 300
    assert (
        main(
            [
                "data",
                "prepare",
                "--input",
                str(tmp_path / "nope"),
                "--tokenizer",
                "char",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("x")
    code = main(["data", "prepare", "--input", str(SHAKESPEARE), "--vocab-size", "300",
                 "--out", str(tmp_path / "a-file")])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.startswith("error: data folder")


# ----- batches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["random", "epoch"])
def test_batches_are_windows_with_targets_shifted_by_one(counting_dataset, mode):
    sampler = BatchSampler(counting_dataset, batch_size=4, block_size=16, seed=0, mode=mode)
    for _ in range(5):
        x, y = sampler.next_batch()
        assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
        starts = x[:, :1]
        assert torch.equal(x, starts + torch.arange(16))  # contiguous tokens of the split
        assert torch.equal(y, x + 1)
        assert int(y.max()) <= 999


@pytest.mark.parametrize("mode", ["random", "epoch"])
@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 3)])
def test_resuming_gives_exactly_the_uninterrupted_batches(counting_dataset, mode, rank, world_size):
    args = dict(batch_size=5, block_size=16, seed=7, rank=rank, world_size=world_size, mode=mode)
    reference = BatchSampler(counting_dataset, **args)
    expected = [reference.next_batch()[0] for _ in range(30)]  # several epochs in epoch mode

    first = BatchSampler(counting_dataset, **args)
    for _ in range(11):
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = BatchSampler(counting_dataset, **args)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.next_batch()[0], e) for e in expected[11:])


def test_epoch_mode_visits_every_window_once_per_epoch(counting_dataset):
    sampler = BatchSampler(counting_dataset, batch_size=6, block_size=10, seed=1, mode="epoch")
    n_windows = (1000 - 1) // 10  # 99 non-overlapping windows; 99 = 16 * 6 + 3
    starts = np.concatenate([sampler.next_batch()[0][:, 0].numpy() for _ in range(33)])  # 2 epochs
    epoch0, epoch1 = starts[:n_windows], starts[n_windows : 2 * n_windows]
    assert sorted(epoch0) == sorted(epoch1) == list(range(0, 990, 10))
    assert not np.array_equal(epoch0, epoch1)  # reshuffled
    assert sampler.epoch == 2


def test_ranks_draw_disjoint_windows_in_epoch_mode(counting_dataset):
    world = 3
    per_rank = []
    for rank in range(world):
        sampler = BatchSampler(
            counting_dataset, batch_size=4, block_size=10, seed=5, rank=rank, world_size=world, mode="epoch"
        )
        per_rank.append(np.concatenate([sampler.next_batch()[0][:, 0].numpy() for _ in range(8)]))  # 32 of 33
    for a in range(world):
        assert len(set(per_rank[a])) == 32
        for b in range(a + 1, world):
            assert not set(per_rank[a]) & set(per_rank[b])


def test_random_mode_uses_a_stream_per_rank_and_seed(counting_dataset):
    def starts(seed, rank):
        sampler = BatchSampler(
            counting_dataset, batch_size=8, block_size=16, seed=seed, rank=rank, world_size=2
        )
        return np.concatenate([sampler.next_batch()[0][:, 0].numpy() for _ in range(4)])

    assert np.array_equal(starts(0, 0), starts(0, 0))
    assert not np.array_equal(starts(0, 0), starts(0, 1))
    assert not np.array_equal(starts(0, 0), starts(1, 0))


def test_random_windows_cover_every_start_and_never_run_past_the_end(tmp_path):
    small = TokenDataset(write_token_folder(tmp_path / "s", np.arange(40, dtype=np.uint16), 40), "train")
    sampler = BatchSampler(small, batch_size=64, block_size=16, seed=0)
    starts = np.concatenate([sampler.next_batch()[0][:, 0].numpy() for _ in range(10)])
    assert sorted(set(starts.tolist())) == list(range(40 - 16))  # 24 possible starts, 640 draws


def test_resume_with_other_settings_is_refused(counting_dataset):
    state = BatchSampler(counting_dataset, batch_size=4, block_size=16, seed=0).state_dict()
    with pytest.raises(GptlabError, match="saved state has batch_size=4, this run has batch_size=8"):
        BatchSampler(counting_dataset, batch_size=8, block_size=16, seed=0).load_state_dict(state)
    with pytest.raises(GptlabError, match="field 'step'"):
        BatchSampler(counting_dataset, batch_size=4, block_size=16, seed=0).load_state_dict(
            state | {"step": -1}
        )


def test_too_small_split_is_a_clear_error(tmp_path):
    tiny = TokenDataset(write_token_folder(tmp_path / "t", np.arange(16, dtype=np.uint16), 100), "train")
    BatchSampler(tiny, batch_size=2, block_size=15)  # 16 tokens: exactly one window of 15 + 1
    with pytest.raises(GptlabError, match="has 16 tokens, fewer than block_size \\+ 1 = 17"):
        BatchSampler(tiny, batch_size=2, block_size=16)
    empty_val = TokenDataset(tmp_path / "t", "val")
    with pytest.raises(GptlabError, match="the val split .* has 0 tokens"):
        list(iter_eval_batches(empty_val, batch_size=2, block_size=4, max_batches=1))
    with pytest.raises(GptlabError, match="fewer than world_size 4"):
        BatchSampler(tiny, batch_size=1, block_size=5, rank=0, world_size=4, mode="epoch")


def test_eval_batches_are_fixed_and_spread_over_the_split(counting_dataset):
    def starts(**kw):
        return [x[:, 0].tolist() for x, _ in iter_eval_batches(counting_dataset, **kw)]

    few = starts(batch_size=4, block_size=10, max_batches=3)
    assert few == starts(batch_size=4, block_size=10, max_batches=3)  # same windows every call
    flat = [s for batch in few for s in batch]
    assert len(flat) == 12 and flat == sorted(set(flat)) and flat[0] == 0 and flat[-1] >= 800
    assert all(s % 10 == 0 for s in flat)

    every = starts(batch_size=8, block_size=10)
    assert [s for batch in every for s in batch] == list(range(0, 990, 10))
    assert len(every[-1]) == 99 - 12 * 8  # the last batch is smaller

    by_rank = [starts(batch_size=8, block_size=10, rank=r, world_size=3) for r in range(3)]
    assert sorted(b[0] for batches in by_rank for b in batches) == sorted(b[0] for b in every)
    for x, y in iter_eval_batches(counting_dataset, batch_size=3, block_size=10, max_batches=2):
        assert torch.equal(y, x + 1)


# ----- ranks under torchrun ---------------------------------------------------------------------


def test_ranks_together_draw_the_single_process_batch_in_epoch_mode(counting_dataset):
    """What makes DDP reproduce one process (tests/train/test_distributed.py): in epoch mode the W ranks'
    batch k of batch_size b hold, between them, exactly the windows of a single process's batch k of
    batch_size W * b, with no window on two ranks (here 99 windows, W = 3: across epoch ends too)."""
    world, batch = 3, 4
    single = BatchSampler(counting_dataset, batch_size=world * batch, block_size=10, seed=2, mode="epoch")
    ranks = [
        BatchSampler(
            counting_dataset, batch_size=batch, block_size=10, seed=2, rank=r, world_size=world, mode="epoch"
        )
        for r in range(world)
    ]
    for step in range(20):  # 240 windows: two epochs and a half
        per_rank = [set(s.batch_starts(step).tolist()) for s in ranks]
        assert sum(len(s) for s in per_rank) == len(set().union(*per_rank)) == world * batch  # disjoint
        assert set().union(*per_rank) == set(single.batch_starts(step).tolist())


def test_eval_windows_are_disjoint_across_ranks_and_match_one_process(counting_dataset):
    """The trainer asks each of W ranks for ``eval_batches * W`` batches: between them they evaluate
    the windows one process with the same global batch (W * batch_size) evaluates, each once."""
    world, batch, eval_batches = 2, 3, 4

    def windows(**kw):
        return [tuple(x[:, 0].tolist()) for x, _ in iter_eval_batches(counting_dataset, block_size=10, **kw)]

    per_rank = [
        [
            s
            for b in windows(batch_size=batch, max_batches=eval_batches * world, rank=r, world_size=world)
            for s in b
        ]
        for r in range(world)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    single = [s for b in windows(batch_size=world * batch, max_batches=eval_batches) for s in b]
    assert sorted(per_rank[0] + per_rank[1]) == sorted(single) and len(single) == world * batch * eval_batches
