"""`gptlab finetune classify`, `gptlab classify`, `gptlab eval classify` end to end on a tiny
synthetic task (a random tiny GPT learns it to 100%), LoRA runs, and clear errors on bad data."""

from __future__ import annotations

import json
import string

import pytest
import torch
from synthetic_task import synthetic_rows, write_task_tsv

from gptlab.cli import main
from gptlab.data.tasks import load_classification, stratified_split
from gptlab.errors import GptlabError
from gptlab.finetune.classifier_run import load_classifier
from gptlab.finetune.classify import ClassifyOptions, finetune_classifier
from gptlab.finetune.common import LoraOptions
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import load_model, save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tok = CharTokenizer.train(string.ascii_letters + " :\n", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    )
    return save_model(tmp_path_factory.mktemp("base") / "run", gpt, tok)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_task_tsv(tmp_path_factory.mktemp("data") / "task.tsv", 400)


@pytest.fixture(scope="module")
def full_run(base_run, data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "full"
    options = ClassifyOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(out),
        epochs=12,
        batch_size=16,
        lr=3e-3,
        device="cpu",
        prompting_shots=(0, 2),
        progress=False,
    )
    return finetune_classifier(options)


@pytest.mark.slow
def test_tiny_task_reaches_100_percent_and_writes_the_run(full_run):
    assert full_run.test.accuracy == 1.0
    out = full_run.out_dir
    for name in (
        "classifier.json",
        "head.safetensors",
        "model.safetensors",
        "metrics.jsonl",
        "metrics.png",
        "results.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(full_run.history) == 12
    record = json.loads(lines[0])
    assert {"loss", "accuracy", "macro_f1", "f1_alarm", "f1_calm"} <= set(record["train"]) | set(
        record["val"]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["confusion_matrix"][0][1] == 0 and set(results["prompting"]) == {
        "0-shot",
        "2-shot",
    }
    assert results["costs"]["trainable_percent"] == pytest.approx(100.0, abs=0.5)


@pytest.mark.slow
def test_best_checkpoint_is_the_best_val_epoch(full_run):
    val = [(r["val"]["macro_f1"], -r["val"]["loss"]) for r in full_run.history]
    assert full_run.best_epoch == 1 + val.index(max(val))
    meta = json.loads((full_run.out_dir / "classifier.json").read_text())
    assert meta["best_epoch"] == full_run.best_epoch and meta["label_names"] == ["alarm", "calm"]


@pytest.mark.slow
def test_classify_cli_prints_labels_and_probabilities(full_run, capsys):
    assert main(["classify", "--model", str(full_run.out_dir), "abzc", "abcd", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in results] == ["alarm", "calm"]
    assert all(0.5 < r["probability"] <= 1 for r in results)
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert main(["classify", "--model", str(full_run.out_dir), "zzz"]) == 0
    assert capsys.readouterr().out.startswith("alarm\t")


@pytest.mark.slow
def test_eval_classify_matches_the_run_test_split(full_run, data_file, tmp_path, capsys):
    data = load_classification(data_file)
    _, _, test = stratified_split(data, 0.1, 0.2, seed=0)
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(
        "".join(
            json.dumps({"text": t, "label": data.label_names[y]}) + "\n"
            for t, y in zip(test.texts, test.labels)
        )
    )
    assert (
        main(["eval", "classify", "--model", str(full_run.out_dir), "--data", str(test_file), "--json"]) == 0
    )
    got = json.loads(capsys.readouterr().out)
    assert got["accuracy"] == full_run.test.accuracy
    assert got["confusion_matrix"] == full_run.summary["test"]["confusion_matrix"]
    # the error analysis of the same texts: the one the run wrote (results.json) and its report shows
    saved = json.loads((full_run.out_dir / "results.json").read_text())["error_analysis"]
    assert got["error_analysis"] == saved and saved["n"] == len(test.texts)
    assert sum(b["n"] for b in saved["by_length"]) == sum(b["n"] for b in saved["by_negation"]) == saved["n"]
    assert "Error analysis (test set)" in (full_run.out_dir / "report.html").read_text()
    assert main(["eval", "classify", "--model", str(full_run.out_dir), "--data", str(test_file)]) == 0
    printed = capsys.readouterr().out
    assert "confusion matrix" in printed and "least confident correct answers" in printed


@pytest.mark.slow
def test_head_only_trains_only_the_head_and_keeps_the_lm(base_run, data_file, tmp_path):
    options = ClassifyOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(tmp_path / "head"),
        epochs=1,
        lr=1e-2,
        trainable="head",
        device="cpu",
        prompting_shots=(),
        progress=False,
    )
    result = finetune_classifier(options)
    assert result.summary["costs"]["trainable_params"] == 32 * 2 + 2
    tuned = load_classifier(result.out_dir).model.gpt.state_dict()
    original, _ = load_model(base_run)
    for k, v in original.state_dict().items():
        assert torch.equal(v, tuned[k]), k
    forgetting = result.summary.get("forgetting")
    assert forgetting is None  # a hand-made base run has no pretraining data to measure


@pytest.mark.slow
def test_lora_run_saves_a_small_adapter_and_reloads_identically(base_run, data_file, tmp_path):
    options = ClassifyOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(tmp_path / "lora"),
        epochs=2,
        lr=5e-3,
        trainable="head",
        lora=LoraOptions(rank=2, alpha=4),
        device="cpu",
        prompting_shots=(),
        progress=False,
    )
    result = finetune_classifier(options)
    out = result.out_dir
    assert (out / "adapter.safetensors").is_file() and not (out / "model.safetensors").exists()
    costs = result.summary["costs"]
    assert costs["trainable_percent"] < 50 and costs["trainable_params"] < costs["total_params"]
    clf = load_classifier(out)
    probs = clf.predict_proba(["abzc", "abcd"])
    assert probs.shape == (2, 2) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert load_classifier(out).predict_proba(["abzc", "abcd"]).equal(probs)


@pytest.mark.slow
def test_lora_run_without_its_base_model_is_a_clear_error(base_run, data_file, tmp_path):
    import shutil

    base_copy = tmp_path / "base"
    shutil.copytree(base_run, base_copy)
    options = ClassifyOptions(
        model=str(base_copy),
        data=str(data_file),
        out=str(tmp_path / "lora"),
        epochs=1,
        trainable="head",
        lora=LoraOptions(rank=2),
        device="cpu",
        prompting_shots=(),
        progress=False,
    )
    out = finetune_classifier(options).out_dir
    shutil.rmtree(base_copy)
    with pytest.raises(GptlabError, match="not there any more"):
        load_classifier(out)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("label\ttext\ncalm\tabc\nalarm\n", "bad.tsv", r"line 3: expected at least 2 fields"),
        ("label\ttext\ncalm\tabc\nalarm\t  \n", "bad.tsv", r"line 3: empty text"),
        ('{"text": "abc", "label": "calm"}\n{"text": "ab"\n', "bad.jsonl", r"line 2"),
        (
            '{"text": "abc", "label": "calm"}\n{"txt": "ab", "label": "calm"}\n',
            "bad.jsonl",
            r"line 2: missing field 'text'",
        ),
    ],
)
def test_malformed_data_gives_exit_2_with_the_line(base_run, tmp_path, capsys, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    code = main(
        ["finetune", "classify", "--model", str(base_run), "--data", str(path), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


@pytest.mark.slow
def test_eval_with_an_unknown_label_names_the_line(full_run, tmp_path, capsys):
    path = tmp_path / "other.tsv"
    path.write_text("label\ttext\ncalm\tabc\nurgent\tabz\n")
    assert main(["eval", "classify", "--model", str(full_run.out_dir), "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 3: unknown label 'urgent'" in err


def test_not_a_classifier_run_is_a_clear_error(base_run, capsys):
    assert main(["classify", "--model", str(base_run), "abc"]) == 2
    assert "not a classifier run" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_classify_reads_jsonl_fields_as_it_reads_tsv_columns(base_run, tmp_path, capsys):
    # SST-2's layout: {"sentence": ..., "label": 0 or 1} with integer labels
    rows = [(0 if y == "calm" else 1, x) for y, x in synthetic_rows(60, seed=3)]
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"idx": i, "sentence": x, "label": y}) + "\n" for i, (y, x) in enumerate(rows))
    )
    options = ClassifyOptions(
        model=str(base_run),
        data=str(train),
        out=str(tmp_path / "clf"),
        text_column="sentence",
        label_column="label",
        epochs=1,
        device="cpu",
        prompting_shots=(),
        progress=False,
    )
    run = finetune_classifier(options).out_dir
    held_out = [(0 if y == "calm" else 1, x) for y, x in synthetic_rows(20, seed=4)]
    jsonl, tsv = tmp_path / "test.jsonl", tmp_path / "test.tsv"
    jsonl.write_text("".join(json.dumps({"sentence": x, "label": y}) + "\n" for y, x in held_out))
    tsv.write_text("sentence\tlabel\n" + "".join(f"{x}\t{y}\n" for y, x in held_out))
    results = []
    for data, flags in (
        (jsonl, ["--text-field", "sentence", "--label-field", "label"]),
        (tsv, []),
        (jsonl, []),
    ):
        assert main(["eval", "classify", "--model", str(run), "--data", str(data), *flags, "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        results.append({k: v for k, v in got.items() if k != "data"})
    assert results[0] == results[1] == results[2]
    assert results[0]["labels"] == ["0", "1"] and results[0]["n"] == 20
    assert [c["support"] for c in results[0]["per_class"].values()] == [10, 10]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "ab", "label": 0}\n{"sentence": "ab", "label": 2}\n')
    assert main(["eval", "classify", "--model", str(run), "--data", str(bad)]) == 2
    assert "line 2: unknown label '2'" in capsys.readouterr().err
