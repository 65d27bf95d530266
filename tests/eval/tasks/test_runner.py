"""The task runner: requests and few-shot contexts as lm-evaluation-harness builds them, its pair
encoding and rolling windows (checked against the harness's own functions), left truncation,
one shared context per multiple-choice item, batch-size invariance, and bad input."""

from __future__ import annotations

import json
import random
import shutil
import types
from pathlib import Path

import pytest
import torch
from benchmark_tasks import small_gpt

from gptlab.errors import GptlabError
from gptlab.eval.scoring import score_choices, score_pairs
from gptlab.eval.tasks import get_task
from gptlab.eval.tasks.base import Doc, Task, TaskFile
from gptlab.eval.tasks.readers import jsonl_docs
from gptlab.eval.tasks.runner import TaskOptions, encode_pair, evaluate, rolling_windows

# tiny models: one thread each is faster than two fighting over a shared machine
pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "\nQuestion: Is this sentence positive or negative?\nAnswer:"


def opts(tasks_data, **kw) -> TaskOptions:
    return TaskOptions(data_dir=str(tasks_data), progress=False, **kw)


def test_fewshot_contexts_are_drawn_from_the_train_file_with_the_seed(bpe, bpe_model, tasks_data):
    result = evaluate(bpe_model, bpe, ["sst2"], opts(tasks_data, shots=2, seed=7, limit=3))
    train = [json.loads(line) for line in (tasks_data / "sst2/train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (tasks_data / "sst2/validation.jsonl").read_text().splitlines()]
    rnd = random.Random(7)  # the harness's sampler: one draw per scored item, in file order
    for item, doc in zip(result.items["sst2"], val):
        shots = rnd.sample(train, 2)
        expected = (
            "".join(f"{ex['sentence']}{QUESTION} {('negative', 'positive')[ex['label']]}\n\n" for ex in shots)
            + f"{doc['sentence']}{QUESTION}"
        )
        assert item["context"] == expected
        assert doc["sentence"] not in item["context"][: -len(doc["sentence"] + QUESTION)]


def test_zero_shot_requests_are_the_prompt_and_each_choice(bpe, bpe_model, tasks_data):
    result = evaluate(bpe_model, bpe, ["sst2"], opts(tasks_data, limit=1, show_prompts=1))
    assert result.prompts["sst2"] == [
        {
            "context": f"a warm , funny and deeply moving film .{QUESTION}",
            "continuations": [" negative", " positive"],
        }
    ]


class _Harness:
    """Just what lm-evaluation-harness's TemplateLM._encode_pair reads from its model."""

    backend = "causal"

    def __init__(self, tokenizer):
        self.tok_encode = lambda text: tokenizer.encode(text)


@pytest.mark.parametrize(
    "context, continuation",
    [
        ("the cat sat on", " the mat"),
        ("the cat sat on ", "the mat"),
        ("Answer:\n\n", " positive"),
        ("a", "b"),
    ],
)
def test_pairs_are_encoded_as_the_harness_encodes_them(bpe, context, continuation):
    from lm_eval.api.model import TemplateLM

    expected = TemplateLM._encode_pair(_Harness(bpe), context, continuation)
    assert encode_pair(bpe, context, continuation) == tuple(expected)
    ctx, cont = encode_pair(bpe, context, continuation)
    assert bpe.decode(cont).startswith(context[len(context.rstrip()) :])  # trailing spaces moved over


def test_an_empty_context_is_end_of_text(bpe):
    assert encode_pair(bpe, "", " the mat") == ([bpe.eot_id], bpe.encode(" the mat"))


@pytest.mark.parametrize("n, max_len", [(1, 4), (4, 4), (5, 4), (9, 4), (23, 7), (64, 64), (65, 64)])
def test_rolling_windows_are_the_harness_windows(n, max_len):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    tokens = list(range(100, 100 + n))
    expected = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 0, max_len, 1)]
    windows = rolling_windows(tokens, 0, max_len)
    assert windows == [(list(a), list(b)) for a, b in expected]
    assert [t for _, pred in windows for t in pred] == tokens  # every token scored once
    assert all(len(ctx) + len(pred) <= max_len + 1 for ctx, pred in windows)


def test_choices_scored_after_one_shared_context_equal_each_pair_scored_alone():
    model = small_gpt(65, block_size=32)
    rng = random.Random(0)
    groups = []
    for _ in range(12):
        ctx = [rng.randrange(65) for _ in range(rng.randint(1, 31))]
        conts = [[rng.randrange(65) for _ in range(rng.randint(1, 6))] for _ in range(rng.randint(1, 5))]
        groups.append((ctx, conts))  # some too long for the context together: scored pair by pair
    alone = [score_pairs(model, [ctx] * len(conts), conts) for ctx, conts in groups]
    for max_batch_size in (None, 1, 3):
        for scored, refs in zip(score_choices(model, groups, max_batch_size=max_batch_size), alone):
            for s, ref in zip(scored, refs):
                torch.testing.assert_close(s.logprobs, ref.logprobs, atol=1e-5, rtol=0)
                assert s.is_greedy == ref.is_greedy


def test_is_greedy_means_every_continuation_token_is_the_argmax():
    model = small_gpt(65, block_size=32)
    ctx = [1, 2, 3, 4]
    row = list(ctx)
    for _ in range(3):  # the model's own greedy continuation
        row.append(int(model(torch.tensor([row]))[0][0, -1].argmax()))
    greedy = row[len(ctx) :]
    other = greedy[:2] + [(greedy[2] + 1) % 65]
    scores = score_pairs(model, [ctx, ctx], [greedy, other])
    assert scores[0].is_greedy and not scores[1].is_greedy


def test_batch_size_does_not_change_any_score(bpe, bpe_model, tasks_data):
    results = [
        evaluate(bpe_model, bpe, ["sst2", "lambada"], opts(tasks_data, batch_size=b, shots=1, limit=4))
        for b in (1, None)
    ]
    for task in ("sst2", "lambada"):
        for other in results[1:]:
            for a, b in zip(results[0].items[task], other.items[task]):
                flat_a = torch.tensor(a["answer"], dtype=torch.float64).flatten()
                flat_b = torch.tensor(b["answer"], dtype=torch.float64).flatten()
                torch.testing.assert_close(flat_a, flat_b, atol=1e-5, rtol=0)


def test_prompts_longer_than_the_context_lose_their_start_and_are_counted(bpe, tasks_data):
    model = small_gpt(bpe.vocab_size, block_size=16)
    docs = [
        json.loads(line) for line in (tasks_data / "lambada/lambada_openai.jsonl").read_text().splitlines()
    ]
    result = evaluate(model, bpe, ["lambada"], opts(tasks_data))
    pairs = [encode_pair(bpe, d["context"], " " + d["continuation"]) for d in docs]
    assert result.truncated["lambada"] == sum(len(c) + len(t) > 17 for c, t in pairs) > 0
    for item, (ctx, cont) in zip(result.items["lambada"], pairs):
        expected = score_pairs(model, [ctx[-(17 - len(cont)) :]], [cont])[
            0
        ]  # the harness's [-(max_length+1):]
        assert item["answer"][0] == pytest.approx(float(expected.logprobs.sum()), abs=1e-5)


def _text_task(tmp_path, output_type: str, **kw) -> Task:
    """A one-file task over tmp_path/texts/texts.jsonl ({"text": ...} rows)."""
    kw.setdefault("doc_to_target", lambda doc: doc.fields.get("target", ""))
    return Task(
        name=f"texts_{output_type}", family="test", description="texts", output_type=output_type,
        data=(TaskFile("none", "texts/texts.jsonl"),),
        load=lambda paths: jsonl_docs(paths[0], {"text": str}), doc_to_text=lambda doc: doc["text"], **kw,
    )  # fmt: skip


def _write_texts(tmp_path, rows) -> None:
    (tmp_path / "texts").mkdir(exist_ok=True)
    (tmp_path / "texts/texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rolling_loglikelihood_scores_every_token_once_in_windows(tmp_path, bpe):
    model = small_gpt(bpe.vocab_size, block_size=8)
    texts = ["the cat sat by the fire all winter and the dog slept", "a gem"]
    _write_texts(tmp_path, [{"text": t} for t in texts])
    task = _text_task(
        tmp_path, "loglikelihood_rolling", doc_to_rolling_text=lambda doc: doc["text"],
        process_results=lambda doc, ll: {"word_perplexity": (ll, len(doc["text"].split()))},
        metrics={"word_perplexity": "word_perplexity"}, higher_is_better={"word_perplexity": False},
    )  # fmt: skip
    result = evaluate(model, bpe, [task], TaskOptions(data_dir=str(tmp_path), progress=False))
    for item, text in zip(result.items[task.name], texts):
        tokens = bpe.encode(text)
        # the same tokens, each scored after up to 8 previous ones (the first after <|endoftext|>)
        windows = rolling_windows(tokens, bpe.eot_id, 8)
        assert len(windows) == -(-len(tokens) // 8)
        expected = sum(float(s.logprobs.sum()) for s in score_pairs(model, *zip(*windows)))
        assert item["answer"] == pytest.approx(expected, abs=1e-5)
    lls = [it["answer"] for it in result.items[task.name]]
    words = sum(len(t.split()) for t in texts)
    assert result.results[task.name]["word_perplexity"] == pytest.approx(
        torch.tensor(-sum(lls) / words).exp().item()
    )


def test_generation_is_greedy_and_stops_at_the_first_stop_string(tmp_path, bpe):
    from gptlab.generate import GREEDY, generate_text

    model = small_gpt(bpe.vocab_size, block_size=64)
    prompts = ["the cat sat", "a gem of a", "nothing here"]
    _write_texts(tmp_path, [{"text": p, "target": "x"} for p in prompts])
    task = _text_task(
        tmp_path, "generate_until", until=(" t", "e"), max_gen_tokens=12,
        process_results=lambda doc, text: {"exact_match": float(text == doc["target"])},
        metrics={"exact_match": "mean"}, higher_is_better={"exact_match": True},
    )  # fmt: skip
    result = evaluate(model, bpe, [task], TaskOptions(data_dir=str(tmp_path), progress=False, batch_size=2))
    for item, prompt in zip(result.items[task.name], prompts):
        expected = generate_text(model, bpe, prompt, 12, GREEDY, stop=(" t", "e"))
        assert item["answer"] == expected and " t" not in expected and "e" not in expected


def test_an_instruction_run_gets_its_template_and_the_answer_after_the_marker(bpe, bpe_model, tasks_data):
    result = evaluate(bpe_model, bpe, ["sst2"], opts(tasks_data, limit=1, show_prompts=1), template="alpaca")
    prompt = result.prompts["sst2"][0]
    assert prompt["context"].startswith("Below is an instruction")
    assert prompt["context"].endswith(
        f"### Instruction:\na warm , funny and deeply moving film .{QUESTION}\n\n### Response:\n"
    )
    assert prompt["continuations"] == ["negative", "positive"]


def test_an_instruction_run_scores_an_empty_context_task_without_its_template(bpe, bpe_model):
    # CrowS-Pairs scores each sentence from <|endoftext|>: there is no instruction to wrap
    fixtures = str(Path(__file__).parents[2] / "data" / "tasks")
    options = TaskOptions(data_dir=fixtures, progress=False, limit=2, show_prompts=2)
    plain = evaluate(bpe_model, bpe, ["crows_pairs"], options)
    instruct = evaluate(bpe_model, bpe, ["crows_pairs"], options, template="alpaca")
    assert [p["context"] for p in instruct.prompts["crows_pairs"]] == ["", ""]
    assert [i["answer"] for i in instruct.items["crows_pairs"]] == [
        i["answer"] for i in plain.items["crows_pairs"]
    ]


# --- bad input ------------------------------------------------------------------------------------


def test_an_unknown_task_is_an_error_naming_the_known_ones(bpe, bpe_model):
    with pytest.raises(GptlabError, match="unknown task 'nope'.*lambada"):
        evaluate(bpe_model, bpe, ["nope"], TaskOptions(progress=False))


def test_a_missing_data_file_is_an_error(bpe, bpe_model, tmp_path):
    with pytest.raises(GptlabError, match="sst2/validation.jsonl does not exist"):
        evaluate(bpe_model, bpe, ["sst2"], TaskOptions(data_dir=str(tmp_path), progress=False))


@pytest.mark.parametrize(
    "line, message",
    [('{"idx": 9, "sentence": "fine"}', "has no 'label'"), ('{"sentence": 3, "label": 1}', "'sentence' should be text"),
     ('{"sentence": "ok", "label": 2}', "label should be 0"), ("not json", "bad JSON")],
)  # fmt: skip
def test_a_malformed_row_is_an_error_with_file_and_line(bpe, bpe_model, tmp_path, tasks_data, line, message):
    (tmp_path / "sst2").mkdir()
    rows = (tasks_data / "sst2/validation.jsonl").read_text().splitlines()
    (tmp_path / "sst2/validation.jsonl").write_text("\n".join([*rows[:2], line, *rows[2:]]) + "\n")
    with pytest.raises(GptlabError, match=rf"validation.jsonl(:| line )3.*{message}"):
        evaluate(bpe_model, bpe, ["sst2"], TaskOptions(data_dir=str(tmp_path), progress=False))


def test_more_shots_than_the_pool_is_an_error_before_any_scoring(bpe, tasks_data, tmp_path, monkeypatch):
    model = small_gpt(bpe.vocab_size)
    calls = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1))
    with pytest.raises(
        GptlabError, match="task sst2: --shots 6 is more than its few-shot pool of 5 examples"
    ):
        evaluate(model, bpe, ["sst2"], opts(tasks_data, shots=6))
    with pytest.raises(
        GptlabError, match="pool of 4 examples.*lower --limit"
    ):  # lambada's: the items not scored
        evaluate(model, bpe, ["lambada"], opts(tasks_data, shots=5, limit=1))
    shutil.copytree(tasks_data, tmp_path / "tasks")
    train = tmp_path / "tasks/sst2/train.jsonl"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:2]))
    with pytest.raises(GptlabError, match="task sst2: --shots 3 is more than its few-shot pool of 2"):
        evaluate(
            model, bpe, ["lambada", "sst2"], opts(tmp_path / "tasks", shots=3, limit=1)
        )  # lambada's fine
    assert calls == []  # nothing scored: every task is read and built first


def test_bad_options_are_errors():
    for kw in ({"shots": -1}, {"limit": 0}, {"batch_size": 0}):
        with pytest.raises(GptlabError):
            TaskOptions(**kw)


def test_a_doc_the_task_cannot_read_names_its_place(tmp_path, bpe, bpe_model):
    _write_texts(tmp_path, [{"text": "fine"}, {"text": "bad"}])
    task = _text_task(
        tmp_path, "loglikelihood", doc_to_target=lambda doc: {"fine": " ok"}[doc["text"]],
        process_results=lambda doc, ll: {"ll": ll.logprob}, metrics={"ll": "mean"}, higher_is_better={"ll": True},
    )  # fmt: skip
    with pytest.raises(GptlabError, match=r"texts.jsonl:2: task texts_loglikelihood cannot read this item"):
        evaluate(bpe_model, bpe, [task], TaskOptions(data_dir=str(tmp_path), progress=False))


def test_doc_fields_read_like_a_mapping():
    doc = Doc(0, {"a": 1}, "f:1")
    assert doc["a"] == 1 and isinstance(types.MappingProxyType(dict(doc.fields)), types.MappingProxyType)
    assert get_task("sst2").name == "sst2"
