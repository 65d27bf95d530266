"""The lambada and sst2 tasks: their requests and metrics by hand on the fixtures, and a run on the
real (mirror) files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from gptlab.data.registry import MIRROR_ENV
from gptlab.eval.scoring import score_pairs
from gptlab.eval.tasks.runner import TaskOptions, encode_pair, evaluate

# tiny models: one thread each is faster than two fighting over a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lambada_scores_one_space_and_the_last_word(bpe, bpe_model, tasks_data):
    result = evaluate(bpe_model, bpe, ["lambada"], TaskOptions(data_dir=str(tasks_data), progress=False))
    rows = _rows(tasks_data / "lambada/lambada_openai.jsonl")
    lls = []
    for item, row in zip(result.items["lambada"], rows):
        assert item["context"] == row["context"] and item["gold"] == " " + row["continuation"]
        ctx, cont = encode_pair(bpe, row["context"], " " + row["continuation"])
        (score,) = score_pairs(bpe_model, [ctx], [cont])
        assert item["answer"] == [pytest.approx(float(score.logprobs.sum()), abs=1e-5), score.is_greedy]
        assert item["metrics"] == {"perplexity": item["answer"][0], "acc": float(score.is_greedy)}
        lls.append(float(score.logprobs.sum()))
    res = result.results["lambada"]
    assert res["perplexity"] == pytest.approx(math.exp(-sum(lls) / len(lls)), rel=1e-6)
    assert res["acc"] == sum(it["metrics"]["acc"] for it in result.items["lambada"]) / len(rows)
    assert (
        res["n"] == len(rows) and res["perplexity_ci95"][0] <= res["perplexity"] <= res["perplexity_ci95"][1]
    )


def test_sst2_picks_the_likelier_label_word(bpe, bpe_model, tasks_data):
    result = evaluate(bpe_model, bpe, ["sst2"], TaskOptions(data_dir=str(tasks_data), progress=False))
    rows = _rows(tasks_data / "sst2/validation.jsonl")
    for item, row in zip(result.items["sst2"], rows):
        context = f"{row['sentence']}\nQuestion: Is this sentence positive or negative?\nAnswer:"
        pairs = [encode_pair(bpe, context, " negative"), encode_pair(bpe, context, " positive")]
        lls = [float(s.logprobs.sum()) for s in score_pairs(bpe_model, *zip(*pairs))]
        assert [a[0] for a in item["answer"]] == pytest.approx(lls, abs=1e-5)
        assert item["choice"] == int(lls[1] > lls[0]) and item["gold"] == row["label"]
        assert item["metrics"]["acc"] == float(item["choice"] == row["label"])
    by_label = result.categories["sst2"]
    assert {k: v["n"] for k, v in by_label.items()} == {"negative": 3, "positive": 3}
    assert result.results["sst2"]["acc"] == pytest.approx(
        (by_label["negative"]["acc"] + by_label["positive"]["acc"]) / 2
    )


@pytest.mark.data
def test_lambada_and_sst2_on_the_real_files():
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror or "://" in mirror:
        pytest.skip(f"no local data mirror: set {MIRROR_ENV}")
    from benchmark_tasks import small_gpt

    from gptlab.tokenizers import BPETokenizer
    from gptlab.tokenizers.base import EOT

    data_dir = os.path.join(mirror, "tasks")
    text = Path(data_dir, "sst2/train.jsonl").read_text("utf-8")[:60_000]
    tokenizer = BPETokenizer.train(text, vocab_size=320, special_tokens=[EOT])
    model = small_gpt(tokenizer.vocab_size, block_size=128)
    options = TaskOptions(data_dir=data_dir, limit=20, shots=1, progress=False)
    result = evaluate(model, tokenizer, ["lambada", "sst2"], options)
    assert result.results["lambada"]["n"] == result.results["sst2"]["n"] == 20
    assert result.results["lambada"]["perplexity"] > 1 and 0 <= result.results["sst2"]["acc"] <= 1
    assert result.truncated["lambada"] > 0  # LAMBADA passages are longer than 128 tokens of this tokenizer
    assert set(result.categories["sst2"]) <= {"negative", "positive"}
