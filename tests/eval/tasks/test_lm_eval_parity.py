"""Parity with lm-evaluation-harness, the reference for how benchmark tasks are scored.

A tiny random Hugging Face GPT-2 (with a byte-level BPE tokenizer trained here, so nothing is
downloaded) is saved to a folder and scored by ``lm_eval.simple_evaluate`` offline, on local task
configs (tests/data/tasks/parity/*.yaml) over small JSON-lines fixtures, one task per request
type: multiple choice (acc, acc_norm), a lambada-style log-likelihood (acc, perplexity), rolling
log-likelihood (word/byte perplexity, bits per byte) and greedy generation until a newline
(exact match). The same model converted into a gptlab run scores the same items, defined below as
gptlab Tasks with the same prompts. Every per-item log-likelihood must agree within 1e-4, every
greedy flag and generated text must be the same, and so every metric. The model's context is
64 tokens, so one item of each kind is longer than it and is cut from the left, as the harness
cuts it (and counted), and the rolling text needs several windows.

Random weights are never greedy on hand-written text, so a few items are derived from the model
itself (a context followed by the word the model predicts, a question answered by the model's own
greedy output): without them acc and exact_match would be 0 on both sides whatever the code did.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from samples import SHAKESPEARE

from gptlab.convert import convert_from_hf
from gptlab.eval.tasks import Doc, Loglikelihood, Task, TaskFile
from gptlab.eval.tasks.metrics import choice_metrics
from gptlab.eval.tasks.readers import jsonl_docs

lm_eval = pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
runner = pytest.importorskip("gptlab.eval.tasks.runner")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # lm-eval alone takes seconds

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "tasks" / "parity"
TASK_NAMES = ("parity_mc", "parity_lambada", "parity_rolling", "parity_generate")
VOCAB, CONTEXT = 300, 64  # a short context, so the rolling task needs several windows
LOGLIK_ATOL = 1e-4
EOT = "<|endoftext|>"


# --- the items as gptlab Tasks: the same prompts as the YAML configs beside the fixtures -------


def loader(**fields):
    return lambda paths: jsonl_docs(paths[0], fields)


def mc_results(doc: Doc, answer: list[Loglikelihood]) -> dict[str, float]:
    return choice_metrics([a.logprob for a in answer], doc["label"], doc["choices"])


def lambada_results(doc: Doc, answer: Loglikelihood) -> dict[str, float]:
    return {"acc": float(answer.is_greedy), "perplexity": answer.logprob}


def rolling_results(doc: Doc, answer: float) -> dict:
    text = doc["page"]
    n_words, n_bytes = len(re.split(r"\s+", text)), len(text.encode("utf-8"))  # as the harness counts
    return {
        "word_perplexity": (answer, n_words),
        "byte_perplexity": (answer, n_bytes),
        "bits_per_byte": (answer, n_bytes),
    }


def generate_results(doc: Doc, answer: str) -> dict[str, float]:
    return {"exact_match": float(answer == doc["answer"])}


def parity_tasks() -> list[Task]:
    common = dict(family="parity", description="lm-eval parity fixture")
    return [
        Task(
            name="parity_mc",
            load=loader(question=str, choices=list, label=int),
            output_type="multiple_choice",
            data=(TaskFile("parity-mc", "parity/mc.jsonl"),),
            doc_to_text=lambda d: d["question"],
            doc_to_choice=lambda d: d["choices"],
            doc_to_target=lambda d: d["label"],
            process_results=mc_results,
            metrics={"acc": "mean", "acc_norm": "mean"},
            higher_is_better={"acc": True, "acc_norm": True},
            **common,
        ),
        Task(
            name="parity_lambada",
            load=loader(text=str),
            output_type="loglikelihood",
            data=(TaskFile("parity-lambada", "parity/lambada.jsonl"),),
            doc_to_text=lambda d: " ".join(d["text"].split(" ")[:-1]),
            doc_to_target=lambda d: d["text"].split(" ")[-1],
            target_delimiter=" ",
            process_results=lambada_results,
            metrics={"acc": "mean", "perplexity": "perplexity"},
            higher_is_better={"acc": True, "perplexity": False},
            **common,
        ),
        Task(
            name="parity_rolling",
            load=loader(page=str),
            output_type="loglikelihood_rolling",
            data=(TaskFile("parity-rolling", "parity/rolling.jsonl"),),
            doc_to_text=lambda d: "",
            doc_to_target=lambda d: d["page"],
            doc_to_rolling_text=lambda d: d["page"],
            process_results=rolling_results,
            metrics={
                "word_perplexity": "word_perplexity",
                "byte_perplexity": "byte_perplexity",
                "bits_per_byte": "bits_per_byte",
            },
            higher_is_better={"word_perplexity": False, "byte_perplexity": False, "bits_per_byte": False},
            **common,
        ),
        Task(
            name="parity_generate",
            load=loader(question=str, answer=str),
            output_type="generate_until",
            data=(TaskFile("parity-generate", "parity/generate.jsonl"),),
            doc_to_text=lambda d: d["question"],
            doc_to_target=lambda d: d["answer"],
            until=("\n",),
            max_gen_tokens=16,
            process_results=generate_results,
            metrics={"exact_match": "mean"},
            higher_is_better={"exact_match": True},
            **common,
        ),
    ]


# --- the model, the data, and both harnesses' answers ------------------------------------------


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    """A random HF GPT-2 with random LayerNorms (a swapped weight/bias would show) and its tokenizer."""
    from gptlab.tokenizers import BPETokenizer
    from gptlab.tokenizers.interop import save_hf_gpt2_tokenizer

    bpe = BPETokenizer.train(SHAKESPEARE.read_text("utf-8"), vocab_size=VOCAB, special_tokens=[EOT])
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, vocab_size=VOCAB, n_positions=CONTEXT,
        bos_token_id=bpe.eot_id, eos_token_id=bpe.eot_id,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    out = tmp_path_factory.mktemp("hf")
    model.save_pretrained(out)
    save_hf_gpt2_tokenizer(bpe, out)
    return out


def greedy_lambada_rows(model, tok, n: int = 2) -> list[dict]:
    """Lines of Shakespeare cut where the model's argmax next token is a whole word (a space and
    letters) that the tokenizer keeps as one token after the cut: their targets are greedy."""
    rows = []
    for line in SHAKESPEARE.read_text("utf-8").splitlines():
        words = line.split()
        if len(words) < 4 or len(rows) == n:
            continue
        context = " ".join(words[:-1])
        ids = tok(context)["input_ids"]
        with torch.no_grad():
            best = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        word = tok.decode([best])
        whole_word = word[:1] == " " and word[1:].isalpha()
        if whole_word and len(ids) < CONTEXT and tok(context + word)["input_ids"] == ids + [best]:
            rows.append({"text": context + word})
    return rows


def greedy_generate_rows(model, tok) -> list[dict]:
    """Questions whose answer is the model's own greedy text up to the first newline."""
    rows = []
    for question in ("Q: Who is the king?\nA:", "MENENIUS:"):
        ids = torch.tensor([tok(question)["input_ids"]])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tok.eos_token_id)
        rows.append({"question": question, "answer": tok.decode(out[0, ids.shape[1] :]).split("\n")[0]})
    return rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, hf_dir) -> Path:
    """``DIR/parity/*.jsonl``: the fixtures plus the items derived from the model, and the YAML
    configs with their data paths pointing there."""
    model = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    root = tmp_path_factory.mktemp("data")
    folder = root / "parity"
    folder.mkdir()
    extra = {"lambada": greedy_lambada_rows(model, tok), "generate": greedy_generate_rows(model, tok)}
    for name in ("mc", "lambada", "rolling", "generate"):
        rows = (FIXTURES / f"{name}.jsonl").read_text("utf-8")
        rows += "".join(json.dumps(row) + "\n" for row in extra.get(name, []))
        (folder / f"{name}.jsonl").write_text(rows, "utf-8")
    for config in FIXTURES.glob("*.yaml"):
        text = config.read_text("utf-8").replace("@PARITY_DIR@", str(folder))
        (folder / config.name).write_text(text, "utf-8")
    return root


@pytest.fixture(scope="module")
def harness(hf_dir, data_dir, tmp_path_factory) -> dict:
    """lm-eval's results and logged samples, run offline (its dataset cache in a temporary folder)."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("hf_home")
    for key, value in {
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"), "TOKENIZERS_PARALLELISM": "false",
    }.items():  # fmt: skip
        mp.setenv(key, value)
    try:
        from lm_eval.tasks import TaskManager

        return lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={hf_dir},dtype=float32",
            tasks=list(TASK_NAMES),
            task_manager=TaskManager(include_path=str(data_dir / "parity")),
            log_samples=True,
            bootstrap_iters=0,
            device="cpu",
        )
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def ours(hf_dir, data_dir, tmp_path_factory):
    run_dir, _ = convert_from_hf(str(hf_dir), tmp_path_factory.mktemp("run") / "run")
    options = runner.TaskOptions(data_dir=data_dir, progress=False)
    return runner.evaluate_run(run_dir, parity_tasks(), options)


def harness_samples(harness: dict, task: str) -> list[dict]:
    """The per-doc samples lm-eval logged (its requests, answers and metrics), in doc order."""
    return sorted(harness["samples"][task], key=lambda s: s["doc_id"])


def harness_answers(harness: dict, task: str) -> list:
    return [s["filtered_resps"] for s in harness_samples(harness, task)]


def assert_same_items(harness: dict, ours, task: str) -> None:
    """Per item: the same prompt (the context of each request) and the same metric values."""
    theirs, items = harness_samples(harness, task), ours.items[task]
    assert len(items) == len(theirs)
    for their, item in zip(theirs, items):
        if task != "parity_rolling":  # a rolling request has no context, only its text
            assert {args[0] for args in their["arguments"]} == {item["context"]}
        for metric, value in item["metrics"].items():
            assert value == pytest.approx(their[metric], abs=LOGLIK_ATOL), (task, item["index"], metric)


def harness_metric(harness: dict, task: str, metric: str) -> float:
    return harness["results"][task][f"{metric},none"]


# --- the comparisons ------------------------------------------------------------------------------


def assert_logliks_agree(theirs: list, ours: list) -> float:
    """Each [logprob, is_greedy] pair agrees (logprob within LOGLIK_ATOL, is_greedy equal); returns
    the largest difference."""
    assert len(theirs) == len(ours)
    worst = 0.0
    for (their_ll, their_greedy), (our_ll, our_greedy) in zip(theirs, ours):
        worst = max(worst, abs(float(their_ll) - our_ll))
        assert bool(their_greedy) == bool(our_greedy)
    assert worst < LOGLIK_ATOL
    return worst


def test_multiple_choice_logliks_acc_and_acc_norm_equal_the_harness(harness, ours):
    assert_same_items(harness, ours, "parity_mc")
    theirs, items = harness_answers(harness, "parity_mc"), ours.items["parity_mc"]
    assert len(items) == len(theirs) == 7
    assert ours.truncated["parity_mc"] == 1  # the long item, cut from the left on both sides
    for their_choices, item in zip(theirs, items):
        assert_logliks_agree(their_choices, item["answer"])
    for metric in ("acc", "acc_norm"):
        assert ours.to_json()["results"]["parity_mc"][metric] == harness_metric(harness, "parity_mc", metric)


def test_lambada_logliks_greedy_flags_acc_and_perplexity_equal_the_harness(harness, ours):
    assert_same_items(harness, ours, "parity_lambada")
    theirs, items = harness_answers(harness, "parity_lambada"), ours.items["parity_lambada"]
    assert len(items) == len(theirs) >= 6  # the fixture's 5 and at least one derived greedy item
    assert ours.truncated["parity_lambada"] == 1
    assert_logliks_agree([answer[0] for answer in theirs], [item["answer"] for item in items])
    assert any(item["answer"][1] for item in items)  # the derived items are greedy on both sides
    results = ours.to_json()["results"]["parity_lambada"]
    assert results["acc"] == harness_metric(harness, "parity_lambada", "acc") > 0
    assert results["perplexity"] == pytest.approx(
        harness_metric(harness, "parity_lambada", "perplexity"), rel=1e-4
    )


def test_rolling_logliks_and_perplexities_equal_the_harness(harness, ours):
    assert_same_items(harness, ours, "parity_rolling")
    theirs, items = harness_answers(harness, "parity_rolling"), ours.items["parity_rolling"]
    assert len(items) == len(theirs) == 3
    for their, item in zip(theirs, items):
        assert abs(float(their[0]) - item["answer"]) < LOGLIK_ATOL
    results = ours.to_json()["results"]["parity_rolling"]
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert results[metric] == pytest.approx(harness_metric(harness, "parity_rolling", metric), rel=1e-5)


def test_generated_text_and_exact_match_equal_the_harness(harness, ours):
    assert_same_items(harness, ours, "parity_generate")
    theirs, items = harness_answers(harness, "parity_generate"), ours.items["parity_generate"]
    assert len(items) == len(theirs) == 7
    assert ours.truncated["parity_generate"] == 1
    assert [item["answer"] for item in items] == [their[0] for their in theirs]
    exact = ours.to_json()["results"]["parity_generate"]["exact_match"]
    assert exact == harness_metric(harness, "parity_generate", "exact_match") >= 2 / 7  # the derived items
