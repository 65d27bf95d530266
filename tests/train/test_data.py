"""A run's prepared data (RUN/data) is reused only for the data it was made from: its fingerprint
(inputs' sha256, tokenizer, split) is recorded in meta.json and compared on every reuse."""

from __future__ import annotations

import hashlib
import json

import pytest

from gptlab.cli import main
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.train.trainer import prepare_run_data


def config_for(run, *inputs, tokenizer="char", **extra):
    overrides = [
        f"data.input={json.dumps([str(p) for p in inputs])}",
        f"data.tokenizer={tokenizer}",
        "data.vocab_size=300",
        f"train.out_dir={json.dumps(str(run))}",
    ]
    return load_config(None, overrides + [f"{k}={v}" for k, v in extra.items()])


@pytest.fixture
def texts(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    b.write_text("pack my box with five dozen liquor jugs\n" * 50)
    return a, b


def meta(run):
    return json.loads((run / "data" / "meta.json").read_text())


def test_the_fingerprint_records_each_input_and_the_tokenizer(tmp_path, texts):
    a, _ = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)
    fingerprint = meta(run)["fingerprint"]
    (entry,) = fingerprint["inputs"]
    assert entry["input"] == str(a)
    assert entry["files"] == [
        {
            "path": str(a.resolve()),
            "bytes": a.stat().st_size,
            "sha256": hashlib.sha256(a.read_bytes()).hexdigest(),
        }
    ]
    assert fingerprint["tokenizer"] == {"kind": "char"} and fingerprint["val_fraction"] == 0.1


def test_other_inputs_are_refused_saying_what_differs(tmp_path, texts):
    a, b = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)  # e.g. a start that failed later
    with pytest.raises(GptlabError, match=r"data.input changed: .*prepared from .*a\.txt.*asks for .*b\.txt"):
        prepare_run_data(config_for(run, b), run, progress=False)
    a.write_text("edited since\n" * 40)  # same path, other content
    with pytest.raises(GptlabError, match=r"data.input changed"):
        prepare_run_data(config_for(run, a), run, progress=False)


def test_another_tokenizer_or_split_is_refused(tmp_path, texts):
    a, _ = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)
    with pytest.raises(
        GptlabError, match=r"data.tokenizer changed: .*with char.*asks for bpe \(vocab_size 300\)"
    ):
        prepare_run_data(config_for(run, a, tokenizer="bpe"), run, progress=False)
    with pytest.raises(GptlabError, match=r"data.val_fraction changed"):
        prepare_run_data(config_for(run, a, **{"data.val_fraction": 0.2}), run, progress=False)
    prepare_run_data(config_for(run, a), run, progress=False)  # the same data: reused


def test_a_moved_identical_file_is_the_same_data(tmp_path, texts):
    a, _ = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)
    moved = tmp_path / "moved.txt"
    a.rename(moved)
    prepare_run_data(config_for(run, moved), run, progress=False)


def test_a_deleted_input_is_reused_with_a_warning(tmp_path, texts, capsys):
    a, _ = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)
    a.unlink()  # the raw text removed once the tokens were prepared
    prepare_run_data(config_for(run, a), run, progress=False)
    assert "is gone" in capsys.readouterr().err
    with pytest.raises(GptlabError, match="input not found"):  # but a different missing path is an error
        prepare_run_data(config_for(run, tmp_path / "c.txt"), run, progress=False)


def test_a_folder_without_fingerprint_is_accepted_and_gets_one(tmp_path, texts):
    a, _ = texts
    run = tmp_path / "run"
    prepare_run_data(config_for(run, a), run, progress=False)
    old = meta(run)
    del old["fingerprint"]  # as an earlier gptlab wrote it
    (run / "data" / "meta.json").write_text(json.dumps(old))
    prepare_run_data(config_for(run, a), run, progress=False)
    assert meta(run)["fingerprint"]["inputs"][0]["input"] == str(a)


@pytest.mark.slow  # over 0.4 s: keeps `-m "not slow"` under a minute
def test_resume_with_another_data_input_is_an_error(tmp_path, texts, capsys):
    a, b = texts
    run = tmp_path / "run"
    common = [
        "model.block_size=8",
        "model.n_layer=1",
        "model.n_head=1",
        "model.n_embd=8",
        "train.batch_size=2",
    ]
    common += ["train.eval_batches=1", "train.sample_tokens=0", "train.progress=false", "train.device=cpu"]
    args = ["train", f"data.input={json.dumps(str(a))}", "data.tokenizer=char", "train.max_steps=2", *common]
    assert main([*args, "--out", str(run), "--json"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), f"data.input={json.dumps(str(b))}", "train.max_steps=4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data.input changed" in err and "b.txt" in err
