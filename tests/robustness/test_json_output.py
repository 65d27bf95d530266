"""``--json`` is pure JSON: every verb that has the flag prints exactly one JSON document on stdout,
and its progress bars, logs and warnings go to stderr.

Each row runs in its own process (``python -m gptlab ...``), so a stray ``print`` anywhere (a
training loop's ``step N: train_loss ...`` line, a library's warning) lands in the stdout checked
here. ``test_every_json_flag_has_a_row`` walks the parsers, so a verb that gains ``--json`` needs a
row here (or a reason in ``NOT_HERE``)."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# --insert trains a model: a tiny one, two steps
INSERT_TRAIN = ["data.tokenizer=char", "model.block_size=32", "model.n_layer=1", "model.n_head=2",
                "model.n_embd=32", "train.max_steps=2", "train.eval_every=2", "train.eval_batches=1",
                "train.sample_tokens=0", "train.device=cpu"]  # fmt: skip
DATA = Path(__file__).parents[1] / "data"
HYP_REF = ["--hyp", "{tmp}/hyp.txt", "--ref", "{tmp}/ref.txt"]
RESPONSES = [{"instruction": "say hi", "input": "", "reference": "hi there", "generated": "hi"}]


def _train(fx) -> list[str]:
    return ["train", *fx.train_args(fx.root / "corpus.txt", steps=3), "--out", "{tmp}/new", "--json"]


def _study_compare(fx, gptlab, workdir) -> list[str]:
    """compare needs a finished study: the fixture run measured (pretrain) and reported, compared with itself."""
    study = ["study", "--config", "study-tiny", "--model", "{run}", "--out", "{tmp}/cmp-study",
             'study.stages=["pretrain", "report"]', "--json"]  # fmt: skip
    outcome = gptlab.spawn(gptlab.materialize(study, fx, workdir), workdir, timeout=240)
    assert outcome.code == 0, outcome.describe()
    return ["study", "compare", "{tmp}/cmp-study", "{tmp}/cmp-study", "--out", "{tmp}/cmp", "--json"]


# (verb path, argv): the verb path is the parser's, e.g. ("audit", "memorization")
ROWS: list[tuple[tuple[str, ...], list[str]]] = [
    (("quickstart",), ["quickstart", "--out", "{tmp}/qs", "--max-steps", "1", "--json"]),
    (("tokenizer", "train"), ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "280",
                              "--out", "{tmp}/tok.json", "--json"]),
    (("tokenizer", "encode"), ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--text", "the cat",
                               "--json"]),
    (("tokenizer", "decode"), ["tokenizer", "decode", "--tokenizer", "{run}/tokenizer.json", "--ids", "40,41",
                               "--json"]),
    (("tokenizer", "stats"), ["tokenizer", "stats", "--tokenizer", "{run}/tokenizer.json", "--input", "{text}",
                              "--json"]),
    (("tokenizer", "compare"), ["tokenizer", "compare", "--input", "{text}", "--kinds", "bpe", "char",
                                "--vocab-sizes", "280", "--train-input", "{corpus}", "--json"]),
    (("data", "list"), ["data", "list", "--dir", "{tmp}/cache", "--json"]),
    (("data", "prepare"), ["data", "prepare", "--input", "{corpus}", "--tokenizer", "char", "--out", "{tmp}/data",
                           "--json"]),
    (("data", "instructions"), ["data", "instructions", "--kind", "probe-tasks", "--n", "20", "--out",
                                "{tmp}/probe.json", "--json"]),
    (("train",), ["<train>"]),
    (("distill",), ["distill", "--teacher", "{run}", "--out", "{tmp}/student", "model.block_size=8", "model.n_layer=1",
                    "model.n_head=2", "model.n_embd=16", "train.batch_size=2", "train.max_steps=2",
                    "train.eval_every=2", "train.eval_batches=1", "train.sample_tokens=0", "--json"]),
    (("sweep",), ["sweep", "scaling", "--data", "{corpus}", "--n-params", "2k", "--tokens", "32,64", "--bootstrap", "0",
                  "--set", "model.block_size=16", "--set", "train.batch_size=2", "--set", "train.eval_batches=1",
                  "--set", "train.sample_tokens=0", "--out", "{tmp}/ladder", "--json"]),
    (("generate",), ["generate", "--model", "{run}", "--prompt", "the", "--max-new-tokens", "4", "--seed", "0",
                     "--json"]),
    (("finetune", "classify"), ["finetune", "classify", "--model", "{run}", "--data", "{tsv}", "--out", "{tmp}/clf",
                                "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--prompting-shots", "0",
                                "--json"]),
    (("finetune", "instruct"), ["finetune", "instruct", "--model", "{run}", "--data", "{instructions}",
                                "--out", "{tmp}/it", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                                "--max-new-tokens", "2", "--max-test-examples", "2", "--json"]),
    (("finetune", "seq2seq"), ["finetune", "seq2seq", "--data", str(DATA / "translations.jsonl"), "--input-field", "en",
                               "--output-field", "de", "--tokenizer", "{run}", "--out", "{tmp}/s2s", "--epochs", "1",
                               "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--max-test", "2", "--json"]),
    (("finetune", "dpo"), ["finetune", "dpo", "--model", "{it}", "--data", str(DATA / "prefs.jsonl"), "--out",
                           "{tmp}/dpo", "--epochs", "1", "--device", "cpu", "--json"]),
    (("finetune", "reward"), ["finetune", "reward", "--model", "{it}", "--data", str(DATA / "prefs.jsonl"), "--out",
                              "{tmp}/rm", "--epochs", "1", "--device", "cpu", "--json"]),
    (("data", "prefs"), ["data", "prefs", "--from", "{instructions}", "--model", "{it}", "--out", "{tmp}/p.jsonl",
                         "--limit", "2", "--max-new-tokens", "3", "--device", "cpu", "--json"]),
    (("classify",), ["classify", "--model", "{clf}", "the dog", "a cat", "--json"]),
    (("fill",), ["fill", "--model", "{enc}", "the [MASK] sat", "--top-k", "3", "--json"]),
    (("eval", "perplexity"), ["eval", "perplexity", "--model", "{run}", "--input", "{text}", "--device", "cpu",
                              "--json"]),
    (("eval", "bleu"), ["eval", "bleu", *HYP_REF, "--json"]),
    (("eval", "rouge"), ["eval", "rouge", *HYP_REF, "--bootstrap", "20", "--json"]),
    (("eval", "judge"), ["eval", "judge", "--responses", "{tmp}/responses.json", "--judge-url", "<judge>",
                         "--judge-model", "fake", "--json"]),
    (("eval", "tasks"), ["eval", "tasks", "--model", "{run}", "--tasks", "lambada,sst2", "--data-dir",
                         str(DATA / "tasks"), "--limit", "2", "--json"]),
    (("eval", "generation"), ["eval", "generation", "--model", "{run}", "--data", str(DATA / "translations.jsonl"),
                              "--input-field", "en", "--target-field", "de", "--template", "Translate: {input}\n",
                              "--max-new-tokens", "3", "--limit", "2", "--json"]),
    (("eval", "baseline", "summary"), ["eval", "baseline", "summary", "--data", str(DATA / "tasks/scitldr/val.jsonl"),
                                       "--json"]),
    (("eval", "baseline", "bow"), ["eval", "baseline", "bow", "--train", "{tsv}", "--data", "{tsv}", "--json"]),
    (("eval", "forgetting"), ["eval", "forgetting", "--runs", "base={run}", "--tasks", "lm:{text}", "--limit", "3",
                              "--resamples", "10", "--out", "{tmp}/forget", "--json"]),
    (("schedule", "plot"), ["schedule", "plot", "--config", "tiny-cpu", "--steps", "20", "--json"]),
    (("eval", "classify"), ["eval", "classify", "--model", "{clf}", "--data", "{tsv}", "--device", "cpu", "--json"]),
    (("convert",), ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/conv", "--json"]),
    (("export",), ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/hf-out", "--json"]),
    (("quantize",), ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q", "--eval-file", "{text}",
                     "--eval-max-chars", "300", "--json"]),
    (("analyze", "attention"), ["analyze", "attention", "--model", "{run}", "--text", "the cat", "--json"]),
    (("analyze", "lens"), ["analyze", "lens", "--model", "{run}", "--text", "the cat", "--json"]),
    (("analyze", "saliency"), ["analyze", "saliency", "--model", "{run}", "--text", "the cat", "--steps", "4",
                               "--json"]),
    (("analyze", "embeddings"), ["analyze", "embeddings", "--model", "{run}", "--no-minilm", "--token", "a",
                                 "--tokens", "a,b,c,d,e,f", "--pairs", "a|b;c|d", "--json"]),
    (("analyze", "sampling"), ["analyze", "sampling", "--model", "{run}", "--prompt", "the", "--samples", "2",
                               "--max-new-tokens", "4", "--json"]),
    (("audit", "memorization"), ["audit", "memorization", "--model", "{run}", "--windows", "4", "--prefix-len", "4",
                                 "--suffix-len", "4", "--bootstrap", "10", "--json"]),
    (("audit", "memorization", "--insert"),  # trains a model: its log lines must not reach stdout
     ["audit", "memorization", "--insert", "{tmp}/ins", "--corpus", "{corpus}", "--repeats", "0,1",
      "--per-repeat", "1", "--windows", "4", "--prefix-len", "4", "--suffix-len", "4", "--bootstrap", "10",
      "--json", *INSERT_TRAIN]),
    (("audit", "membership"), ["audit", "membership", "--model", "{run}", "--windows", "20", "--window-tokens", "16",
                               "--no-classifier", "--bootstrap", "10", "--json"]),
    (("audit", "injection"), ["audit", "injection", "--model", "{it}", "--examples", "1", "--max-new-tokens", "4",
                              "--json"]),
    (("audit", "robustness"), ["audit", "robustness", "--model", "{clf}", "--max-texts", "8", "--rates", "0.1",
                               "--kinds", "swap", "--greedy-edits", "1", "--greedy-texts", "2",
                               "--hotflip-budget", "1", "--hotflip-texts", "2", "--json"]),
    (("audit", "bias"), ["audit", "bias", "--model", "{run}", "--builtin", "occupations", "--n-perm", "50",
                         "--n-boot", "20", "--json"]),
    (("audit", "bias", "--verdict"), ["audit", "bias", "--model", "{run}", "--builtin", "occupations", "--n-perm",
                                      "50", "--n-boot", "20", "--verdict", "point", "--fail-on", "fail",
                                      "--gap-threshold", "1000", "--alpha", "0.000001", "--json"]),
    (("audit", "all"), ["audit", "all", "--model", "{run}", "--out", "{tmp}/audit-all", "--quick",
                        "--verdict", "point", "--json"]),
    (("study",), ["study", "--config", "study-tiny", "--model", "{run}", "--out", "{tmp}/study", "--only", "pretrain",
                  "--json"]),
    (("study", "compare"), ["<study-compare>"]),
    (("rag", "index"), ["rag", "index", "--docs", str(DATA / "rag" / "docs.jsonl"), "--embedder", "{run}",
                        "--chunk-tokens", "16", "--overlap", "4", "--out", "{tmp}/idx", "--json"]),
    # the fixture index's embedder is MiniLM; --mode bm25 needs none (no MiniLM load here)
    (("rag", "ask"), ["rag", "ask", "--index", str(DATA / "rag" / "index"), "--model", "{run}", "--mode", "bm25",
                      "Sawynmir?", "--k", "1", "--max-new-tokens", "2", "--json"]),
    (("eval", "rag"), ["eval", "rag", "--index", str(DATA / "rag" / "index"), "--model", "{run}", "--mode", "bm25",
                       "--data", str(DATA / "rag" / "qa.jsonl"), "--k", "1", "--max-new-tokens", "2", "--json"]),
    (("audit", "poisoning"), ["audit", "poisoning", "--model", "{run}", "--data", "{tsv}", "--rates", "0,0.1",
                              "--epochs", "1", "--batch-size", "8", "--json"]),
]  # fmt: skip

# verbs with --json that this suite does not run, and why
NOT_HERE = {
    ("data", "get"): "downloads: every registry entry pins a hash only the real file has",
}


class _FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions that always answers "85"."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "85"}, "finish_reason": "stop"}],
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("verb, template", ROWS, ids=[" ".join(verb) for verb, _ in ROWS])
def test_json_is_one_document_on_stdout(verb, template, fx, gptlab, workdir, judge_url):
    (workdir / "hyp.txt").write_text("the cat sat\na dog ran\n")
    (workdir / "ref.txt").write_text("the cat sat down\na dog ran\n")
    (workdir / "responses.json").write_text(json.dumps(RESPONSES))
    if template == ["<train>"]:
        template = _train(fx)
    if template == ["<study-compare>"]:
        template = _study_compare(fx, gptlab, workdir)
    argv = [judge_url if arg == "<judge>" else arg for arg in gptlab.materialize(template, fx, workdir)]
    outcome = gptlab.spawn(argv, workdir, timeout=240)

    assert outcome.code == 0 and "Traceback" not in outcome.err, outcome.describe()
    try:
        json.loads(outcome.out)  # one document; "Extra data" when anything follows it
    except json.JSONDecodeError as e:
        lines = outcome.lines("out")
        pytest.fail(
            f"stdout is not one JSON document ({e.msg} at line {e.lineno}); first line {lines[0][:160]!r}; "
            f"line {e.lineno}: {lines[e.lineno - 1][:160] if e.lineno <= len(lines) else ''!r}"
        )


def _json_verbs() -> set[tuple[str, ...]]:
    """Every (verb, sub-verb ...) whose parser has a --json flag."""
    from gptlab.cli import VERBS, build_parser

    found = set()

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if "--json" in action.option_strings:
                found.add(path)
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))

    for verb in VERBS:
        if verb == "bench":  # its --json flags belong to the scripts in bench/, not to gptlab
            continue
        parser = build_parser(verb)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        walk(sub.choices[verb], (verb,))
    return found


def test_every_json_flag_has_a_row():
    covered = {verb for verb, _ in ROWS} | set(NOT_HERE)
    missing = sorted(_json_verbs() - covered)
    assert not missing, f"verbs with --json and no row in ROWS (nor a reason in NOT_HERE): {missing}"
