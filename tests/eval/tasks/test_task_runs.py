"""Each task family of this folder run end to end through the runner on its fixture files with a
small random GPT: every item is scored, the per-item metrics are the task's own scores of the
answers the runner recorded, and the task's numbers are their means."""

from __future__ import annotations

import math

import pytest
import torch

from gptlab.data.registry import get_entry
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.base import Loglikelihood
from gptlab.eval.tasks.files import local_paths
from gptlab.eval.tasks.runner import TaskOptions, evaluate

pytestmark = pytest.mark.slow  # every task run once: a few seconds on a busy machine

NAMES = ["hellaswag", "truthfulqa_mc1", "truthfulqa_mc2", "crows_pairs", "winobias", "advbench", "popqa"]


@pytest.fixture(scope="module")
def results(bpe, tasks_data):
    from benchmark_tasks import small_gpt

    model = small_gpt(bpe.vocab_size, block_size=1024)
    return evaluate(model, bpe, NAMES, TaskOptions(data_dir=str(tasks_data), progress=False))


def _answer(task, recorded):
    if task.output_type == "multiple_choice":
        return [Loglikelihood(lp, greedy) for lp, greedy in recorded]
    return recorded


@pytest.mark.parametrize("name", NAMES)
def test_every_item_is_scored_by_the_task_itself(results, tasks_data, name):
    task = get_task(name)
    docs = task.load(local_paths(task.data, tasks_data))
    items = results.items[name]
    assert [it["index"] for it in items] == [d.index for d in docs]
    assert results.truncated[name] == 0
    for doc, item in zip(docs, items, strict=True):
        assert item["metrics"] == task.process_results(doc, _answer(task, item["answer"]))
        if task.output_type == "multiple_choice":
            assert len(item["answer"]) == len(task.doc_to_choice(doc))
            assert all(math.isfinite(lp) and lp < 0 for lp, _ in item["answer"])
        else:
            assert isinstance(item["answer"], str)
    summary = results.results[name]
    assert summary["n"] == len(docs)
    for metric in task.metrics:
        values = [it["metrics"][metric] for it in items]
        assert summary[metric] == pytest.approx(sum(values) / len(values))
        assert f"{metric}_stderr" in summary and len(summary[f"{metric}_ci95"]) == 2
    if task.category:
        assert set(results.categories[name]) == {task.category(d) for d in docs}


def test_an_empty_context_scores_each_sentence_from_endoftext(results, bpe, tasks_data):
    """CrowS-Pairs and WinoBias have no prompt: each choice's log-likelihood is that of the whole
    sentence after <|endoftext|>, computed here with one plain forward pass."""
    from benchmark_tasks import small_gpt

    model = small_gpt(bpe.vocab_size, block_size=1024)  # the same seed: the same weights
    item = results.items["crows_pairs"][0]
    for sentence, (logprob, _) in zip(item["choices"], item["answer"], strict=True):
        ids = torch.tensor([[bpe.eot_id, *bpe.encode(sentence)]])
        with torch.no_grad():
            logits, _ = model(ids[:, :-1])
        expected = torch.log_softmax(logits.float(), -1)[0].gather(1, ids[0, 1:, None]).sum().item()
        assert logprob == pytest.approx(expected, abs=1e-4)


def test_the_real_task_files_run_through_the_registry(dataset, bpe, monkeypatch, tmp_path):
    """Without --data-dir the runner takes each file by name from the data mirror (checked against
    its pin); the first 12 items of every mirrored task score."""
    from benchmark_tasks import small_gpt

    monkeypatch.setenv("GPTLAB_CACHE", str(tmp_path))  # the cache the registry downloads into
    mirrored = [name for name in NAMES if name not in ("hellaswag", "popqa")]  # no mirror copy of those
    model = small_gpt(bpe.vocab_size, block_size=1024)
    result = evaluate(model, bpe, mirrored, TaskOptions(limit=12, progress=False))
    for name in mirrored:
        assert result.results[name]["n"] == 12
        assert all(math.isfinite(result.results[name][m]) for m in get_task(name).metrics)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == sorted(
        {f"{get_entry(f.dataset).filename}" for n in mirrored for f in get_task(n).data}
    )
