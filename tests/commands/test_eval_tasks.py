"""``gptlab eval tasks``: --list, one JSON document with --json, tasks.json/tasks.html with --out
(never replacing them without --overwrite), clear errors, and every kind of run gptlab loads."""

from __future__ import annotations

import json

import pytest
import torch
from benchmark_tasks import TASKS_DATA, small_gpt, task_tokenizer

from gptlab.cli import main
from gptlab.convert import convert_from_hf, quantize_run
from gptlab.errors import GptlabError
from gptlab.eval.tasks.runner import TaskOptions, evaluate, evaluate_run
from gptlab.hf_folder import to_hf_gpt2
from gptlab.rundir import save_model

# tiny models: one thread each is faster than two fighting over a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["--data-dir", str(TASKS_DATA), "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tok():
    return task_tokenizer()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, tok):
    return save_model(
        tmp_path_factory.mktemp("plain") / "run", small_gpt(tok.vocab_size, block_size=128), tok
    )


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["eval", "tasks", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_task(capsys):
    code, out, _ = _run(capsys, "--list")
    assert code == 0 and "lambada" in out and "multiple_choice" in out and "perplexity, acc" in out
    code, out, _ = _run(capsys, "--list", "--json")
    names = {t["name"]: t for t in json.loads(out)["tasks"]}
    assert names["sst2"]["metrics"] == ["acc"] and names["lambada"]["output_type"] == "loglikelihood"


def test_json_is_one_document_with_each_metric_its_stderr_and_n(capsys, plain):
    code, out, _ = _run(
        capsys, "--model", str(plain), "--tasks", "lambada,sst2", "--json", "--show-prompts", "1", *ARGS
    )
    assert code == 0
    doc = json.loads(out)  # exactly one document: the prompts went to stderr
    lam, sst = doc["results"]["lambada"], doc["results"]["sst2"]
    assert set(lam) == {
        "acc",
        "acc_stderr",
        "acc_ci95",
        "perplexity",
        "perplexity_stderr",
        "perplexity_ci95",
        "n",
    }
    assert lam["n"] == 5 and sst["n"] == 6 and 0 <= sst["acc"] <= 1 and doc["model"] == str(plain)
    assert set(doc["categories"]["sst2"]) == {"negative", "positive"} and doc["truncated"] == {
        "lambada": 0,
        "sst2": 0,
    }


def test_the_table_and_the_prompts(capsys, plain):
    code, out, _ = _run(
        capsys, "--model", str(plain), "--tasks", "sst2", "--shots", "1", "--show-prompts", "2", *ARGS
    )
    assert code == 0 and out.count("--- sst2 item") == 2 and "Answer:" in out
    assert "acc ↑" in out and "95% interval" in out and "0.5" in out  # chance level


def test_out_writes_every_item_and_a_page_and_never_replaces_them_unasked(capsys, plain, tmp_path):
    out_dir = tmp_path / "report"
    code, _, _ = _run(capsys, "--model", str(plain), "--tasks", "lambada,sst2", "--out", str(out_dir), *ARGS)
    assert code == 0
    doc = json.loads((out_dir / "tasks.json").read_text())
    assert len(doc["items"]["sst2"]) == 6 and {"index", "answer", "metrics", "gold", "choice"} <= set(
        doc["items"]["sst2"][0]
    )
    page = (out_dir / "tasks.html").read_text()
    assert (
        "<svg" in page
        and "Per category" in page
        and "Examples" in page
        and "http" not in page.split("</svg>")[-1]
    )
    assert (
        "model&#x27;s choice" in page and "&#x27; positive&#x27;" in page and "greedy reproduces it" in page
    )
    assert doc["items"]["sst2"][0]["choices"] == [" negative", " positive"]
    before = (out_dir / "tasks.json").read_bytes()
    code, _, err = _run(capsys, "--model", str(plain), "--tasks", "sst2", "--out", str(out_dir), *ARGS)
    assert (
        code == 2
        and "already holds tasks.html, tasks.json" in err
        and (out_dir / "tasks.json").read_bytes() == before
    )
    code, _, _ = _run(
        capsys, "--model", str(plain), "--tasks", "sst2", "--out", str(out_dir), "--overwrite", *ARGS
    )
    assert code == 0 and "lambada" not in json.loads((out_dir / "tasks.json").read_text())["results"]


def test_bad_input_fails_before_anything_is_written(capsys, plain, tmp_path):
    out_dir = tmp_path / "report"
    code, _, err = _run(capsys, "--model", str(plain), "--tasks", "sst2,nope", "--out", str(out_dir), *ARGS)
    assert code == 2 and "unknown task 'nope'" in err and not out_dir.exists()
    code, _, err = _run(
        capsys, "--model", str(plain), "--tasks", "sst2", "--shots", "9", "--out", str(out_dir), *ARGS
    )
    assert code == 2 and "few-shot pool of 5" in err and not any(out_dir.glob("*"))
    code, _, err = _run(capsys, "--tasks", "sst2")
    assert code == 2 and "--model" in err


def _answers(result, task):
    return torch.tensor([a for it in result.items[task] for a in it["answer"]], dtype=torch.float64)


def test_a_training_run(tiny_run):
    result = evaluate_run(
        tiny_run, ["lambada", "sst2"], TaskOptions(data_dir=str(TASKS_DATA), progress=False)
    )
    assert result.results["lambada"]["n"] == 5 and 0 <= result.results["sst2"]["acc"] <= 1


def test_an_instruction_run_is_prompted_with_its_template(tmp_path, tok):
    run = save_model(
        tmp_path / "sft", small_gpt(tok.vocab_size), tok, extra={"finetune": "instruct", "template": "alpaca"}
    )
    result = evaluate_run(run, ["sst2"], TaskOptions(data_dir=str(TASKS_DATA), progress=False, limit=2))
    assert all(it["context"].endswith("Answer:\n\n### Response:\n") for it in result.items["sst2"])


def test_a_quantized_run(tmp_path, plain):
    quantize_run(plain, tmp_path / "q8", bits=8)
    options = TaskOptions(data_dir=str(TASKS_DATA), progress=False)
    quantized, full = evaluate_run(tmp_path / "q8", ["sst2"], options), evaluate_run(plain, ["sst2"], options)
    torch.testing.assert_close(_answers(quantized, "sst2"), _answers(full, "sst2"), atol=0.2, rtol=0.02)


def test_a_hugging_face_folder_and_its_conversion_score_as_the_model_itself(tmp_path, tok):
    model = small_gpt(tok.vocab_size)
    folder = to_hf_gpt2(model, tmp_path / "gpt2", tok)
    converted, _ = convert_from_hf(str(folder), tmp_path / "converted")
    options = TaskOptions(data_dir=str(TASKS_DATA), progress=False)
    expected = evaluate(model, tok, ["lambada", "sst2"], options)
    for path in (folder, converted):
        result = evaluate_run(path, ["lambada", "sst2"], options)
        for task in ("lambada", "sst2"):
            torch.testing.assert_close(_answers(result, task), _answers(expected, task), atol=1e-5, rtol=0)


def test_a_classifier_run_is_refused(tmp_path, plain):
    (tmp_path / "clf").mkdir()
    (tmp_path / "clf/classifier.json").write_text("{}")
    with pytest.raises(GptlabError, match="classifier run"):
        evaluate_run(tmp_path / "clf", ["sst2"], TaskOptions(progress=False))
