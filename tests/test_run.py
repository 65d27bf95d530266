"""gptlab.run.Run: every kind of run, each made by the writer that makes it for real (a tiny
`gptlab train`, save_model, an instruction-tuned model's model.json, `finetune classify` full and
LoRA, `gptlab quantize`, `gptlab convert` and a raw Hugging Face GPT-2 folder), answers what it is,
where its data is, and loads; anything that is not a run is a clear GptlabError."""

from __future__ import annotations

import json
import shutil
import string

import numpy as np
import pytest
import torch
from synthetic_task import synthetic_rows

from gptlab.config import load_config
from gptlab.convert import convert_from_hf, quantize_run
from gptlab.errors import GptlabError
from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
from gptlab.finetune.common import LoraOptions
from gptlab.hf_folder import to_hf_gpt2
from gptlab.model import GPT, GPTConfig
from gptlab.run import Run
from gptlab.rundir import save_model
from gptlab.tokenizers import BPETokenizer, CharTokenizer
from gptlab.tokenizers.base import EOT
from gptlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

# a small corpus of its own: the runs here must not depend on ../shared
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}.\n" for i in range(400))


def tiny_gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0))


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer.train(string.printable, special_tokens=[EOT])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A `gptlab train` run: RUN/config.toml, RUN/data, RUN/best, RUN/checkpoints/step-N."""
    root = tmp_path_factory.mktemp("train")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    overrides = [
        f"data.input={json.dumps(str(root / 'corpus.txt'))}",
        "data.tokenizer=char",
        "model.block_size=16",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=16",
        "train.batch_size=2",
        "train.max_steps=4",
        "train.eval_every=2",
        "train.eval_batches=1",
        "train.sample_tokens=4",
        "train.progress=false",
        f"train.out_dir={json.dumps(str(root / 'run'))}",
    ]
    train(load_config(None, overrides))
    return root / "run"


@pytest.fixture(scope="module")
def plain(tmp_path_factory, char_tok):
    """A model saved with save_model alone (no training config, no data)."""
    return save_model(tmp_path_factory.mktemp("plain") / "run", tiny_gpt(char_tok.vocab_size), char_tok)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A Hugging Face GPT-2 folder as `export` (and transformers' save_pretrained) lays it out."""
    bpe = BPETokenizer.train(TEXT, vocab_size=280, special_tokens=[EOT])
    return to_hf_gpt2(tiny_gpt(bpe.vocab_size), tmp_path_factory.mktemp("hf") / "gpt2", bpe)


@pytest.fixture(scope="module")
def classifier_runs(tmp_path_factory, plain):
    """A full and a LoRA classifier, fine-tuned from copies of ``plain`` (one epoch each)."""
    root = tmp_path_factory.mktemp("clf")
    data = root / "task.tsv"
    data.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(60)))
    base = shutil.copytree(plain, root / "base")
    runs = {}
    for name, lora in (("full", LoraOptions()), ("lora", LoraOptions(rank=2))):
        options = ClassifyOptions(
            model=str(base), data=str(data), out=str(root / name), epochs=1, batch_size=8, lora=lora,
            device="cpu", prompting_shots=(), progress=False,
        )  # fmt: skip
        runs[name] = finetune_classifier(options).out_dir
    return runs


def test_a_training_run_is_an_lm_with_its_config_and_data(trained):
    run = Run.open(trained)
    assert run.kind == "lm" and run.path == trained
    assert run.config == GPTConfig(**json.loads((trained / "model.json").read_text())["config"])
    assert run.config.n_embd == 16 and run.train_config.train.max_steps == 4
    assert run.data_dir == trained / "data" and run.require_data_dir() == trained / "data"
    assert run.has_split("train") and run.has_split("val")
    assert run.template == "alpaca"
    model, tokenizer = run.load()
    assert not model.training and tokenizer.vocab_size == run.tokenizer.vocab_size
    assert run.tokenizer.decode(run.tokenizer.encode("the fox")) == "the fox"


def test_windows_are_deterministic_per_seed_and_come_from_the_split_asked_for(trained):
    run = Run.open(trained)
    windows = run.windows("val", n=4, length=8, seed=0)
    assert len(windows) == 4 and all(len(w) == 8 for w in windows)
    assert run.windows("val", n=4, length=8, seed=0) == windows
    assert run.windows("val", n=4, length=8, seed=1) != windows
    for split in ("train", "val"):
        tokens = np.fromfile(trained / "data" / f"{split}.bin", dtype=json.loads(
            (trained / "data" / "meta.json").read_text())["dtype"]).tolist()  # fmt: skip
        text = ",".join(map(str, tokens))
        for w in run.windows(split, n=3, length=6, seed=2):
            assert ",".join(map(str, w)) in text, split


def test_a_checkpoint_folder_and_best_answer_for_their_run(trained):
    (step,) = [p for p in (trained / "checkpoints").iterdir() if p.is_dir()]
    whole = Run.open(trained)
    for folder in (step, trained / "best"):
        run = Run.open(folder)
        assert run.kind == "lm" and run.config == whole.config
        assert run.train_config.to_dict() == whole.train_config.to_dict()
        assert run.data_dir == trained / "data"


def test_a_saved_model_alone_has_no_data(plain):
    run = Run.open(plain)
    assert run.kind == "lm" and run.train_config is None and run.data_dir is None
    assert not run.has_split("val")
    with pytest.raises(GptlabError, match="cannot find the data"):
        run.require_data_dir()


def test_an_instruction_tuned_run_says_its_template(tmp_path, char_tok):
    extra = {"finetune": "instruct", "template": "chat", "base_model": "somewhere"}
    run = Run.open(save_model(tmp_path / "sft", tiny_gpt(char_tok.vocab_size), char_tok, extra=extra))
    assert run.kind == "instruct" and run.template == "chat" and run.data_dir is None
    unknown = save_model(
        tmp_path / "future", tiny_gpt(char_tok.vocab_size), char_tok, extra={**extra, "template": "new"}
    )
    assert Run.open(unknown).template == "alpaca"  # a template this version does not know


def test_a_fine_tuned_model_beside_someone_elses_data_has_none(tmp_path, trained, char_tok):
    """A data/ folder next to a run belongs to another run: only RUN/best and checkpoints look up."""
    shutil.copytree(trained / "data", tmp_path / "data")
    sft = save_model(
        tmp_path / "sft", tiny_gpt(char_tok.vocab_size), char_tok, extra={"finetune": "instruct"}
    )
    assert Run.open(sft).data_dir is None


def test_classifier_runs_full_and_lora(classifier_runs, plain):
    for name, path in classifier_runs.items():
        run = Run.open(path)
        assert run.kind == "classifier", name
        assert run.classifier_meta["label_names"] == ["alarm", "calm"]
        assert run.config == Run.open(plain).config
        assert run.data_dir is None
        gpt, tokenizer = run.load()
        clf = run.load_classifier()
        assert isinstance(gpt, GPT) and clf.label_names == ["alarm", "calm"]
        assert tokenizer.encode("abz") == clf.tokenizer.encode("abz")
    lora = Run.open(classifier_runs["lora"])
    assert lora.classifier_base.name == "base" and not (classifier_runs["lora"] / "model.json").exists()


def test_a_lora_classifier_whose_base_is_gone_is_a_clear_error(classifier_runs, tmp_path):
    moved = shutil.copytree(classifier_runs["lora"], tmp_path / "lora")
    meta = json.loads((moved / "classifier.json").read_text())
    meta["base_model"] = str(tmp_path / "gone")
    (moved / "classifier.json").write_text(json.dumps(meta))
    run = Run.open(moved)
    assert run.kind == "classifier"
    with pytest.raises(GptlabError, match="not there any more"):
        run.load()
    with pytest.raises(GptlabError, match="gone does not exist"):
        _ = run.config


def test_a_quantized_run(tmp_path, plain):
    quantize_run(plain, tmp_path / "q8", bits=8)
    run = Run.open(tmp_path / "q8")
    assert run.kind == "quantized" and run.meta["quantization"]["bits"] == 8
    assert run.config == Run.open(plain).config and run.data_dir is None
    model, _ = run.load()
    assert model.quantization["bits"] == 8


def test_a_hugging_face_folder_and_a_run_converted_from_it(tmp_path, hf_folder):
    raw = Run.open(hf_folder)
    assert raw.kind == "hf-import" and raw.meta == {} and raw.extra == {}
    assert raw.config.n_embd == 32 and raw.config.vocab_size == 280
    assert raw.template == "alpaca" and raw.data_dir is None and raw.train_config is None
    model, tokenizer = raw.load()
    assert tokenizer.vocab_size == 280 and raw.tokenizer.encode("the fox") == tokenizer.encode("the fox")

    out, _ = convert_from_hf(str(hf_folder), tmp_path / "converted")
    run = Run.open(out)
    assert run.kind == "hf-import" and run.extra["converted_from"] == str(hf_folder)
    assert run.config == raw.config and run.data_dir is None
    converted, _ = run.load()
    ids = torch.tensor([tokenizer.encode("the quick brown fox")])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids)[0], model(ids)[0])


def test_what_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(GptlabError, match="does not exist"):
        Run.open(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(GptlabError, match="is not a folder"):
        Run.open(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GptlabError, match="is not a run: no model.json"):
        Run.open(tmp_path / "empty")


def test_create_claims_a_new_folder_and_refuses_a_used_one(tmp_path, plain):
    out = Run.create(tmp_path / "new" / "run")
    assert out == tmp_path / "new" / "run"
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(GptlabError, match="already exists and is not empty"):
        Run.create(tmp_path / "used")
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"
    assert Run.create(tmp_path / "used", overwrite=True) == tmp_path / "used"
    assert list((tmp_path / "used").iterdir()) == []
    with pytest.raises(GptlabError, match="would overwrite its own input"):
        Run.create(plain / "inside", sources=[plain])
