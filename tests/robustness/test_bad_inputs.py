"""Hostile inputs, verb by verb: the table below IS the specification of how gptlab fails.

Every row runs one command on a copy of the tiny fixtures (conftest.py) with one thing wrong, and
asserts what a user must see for any mistake of theirs:

* exit code 2, the last non-empty stderr line starts with ``error:`` and no other line does,
  and no ``Traceback`` anywhere;
* no file that existed before changed or vanished (every file under the case's folder is hashed
  before and after: the run copy, the bad file, an existing ``--out``);
* ``fast`` rows (an ``--out`` that is a file, or under a file, or read-only): refused within
  ``FAST_S`` seconds, before any work, and nothing was created;
* ``ok`` rows are inputs that look odd but must WORK (exit 0), e.g. a torn last line in
  metrics.jsonl on ``train --resume``.

The ``control-*`` rows run each family's command unspoilt: it must work, so a row's error comes
from its one hostile input. A row also fails when its error is about something it does not test
(an unknown flag, or a parser refusal of a flag whose name is not in the row's id).

Placeholders: ``{run}`` a pretraining run (``gptlab train``), ``{clf}`` a classifier run,
``{it}`` an instruction run, ``{hf}`` a Hugging Face GPT-2 folder, ``{corpus}``/``{text}`` UTF-8
text, ``{tsv}`` labelled rows, ``{instructions}`` Alpaca JSON, ``{tmp}`` the case's folder (hostile
files are written there by the row's ``make``).

The output rule the rows assert: a verb that writes a run or a dataset folder refuses an existing
non-empty folder (an existing file for ``tokenizer train --out``) unless ``--overwrite``; a verb
that writes named files into a folder (analyze/audit/eval ``--out``) refuses when one of its
files exists; no verb writes into its source run, even with ``--overwrite``.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

FAST_S = 5.0  # an unusable --out is refused in this many seconds, before any work
CASE_TIMEOUT_S = 180  # pytest-timeout per row: a verb that hangs fails instead of blocking the suite

# ------------------------------------------------------------------------------------ hostile bytes

EMPTY = b""
BINARY = bytes(random.Random(0).randrange(256) for _ in range(4096))  # NULs, no structure
INVALID_UTF8 = b"the cat sat on the mat\n" + b"caf\xe9 \xff\xfe \xc3\x28 \xed\xa0\x80\n" * 20
DEEP_JSON = "[" * 100_000  # json's recursion limit, not the parser's error, unless it is caught
DEEP_TOML = "a = " + "[" * 100_000
HUGE = 10**9
TORN_METRICS_LINE = '{"kind": "train", "step": 21, "loss": 2.7'  # a crash mid-write: no newline


# ------------------------------------------------------------------------------------ makers
# Each maker takes the case's folder and spoils one thing in it (after the fixtures were copied).
# A path with a wildcard spoils every copy: "run/**/model.safetensors" is the top-level weights
# and each checkpoint's and best/'s, so whichever one a loader picks is the spoilt one.

Maker = Callable[[Path], None]


def _targets(tmp: Path, rel: str) -> list[Path]:
    if not any(c in rel for c in "*?["):
        return [tmp / rel]
    matches = sorted(p for p in tmp.glob(rel) if p.is_file())
    assert matches, f"no file matches {rel}: has the run layout changed?"
    return matches


def write(rel: str, data: bytes | str) -> Maker:
    def make(tmp: Path) -> None:
        for path in _targets(tmp, rel):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode() if isinstance(data, str) else data)

    return make


def append(rel: str, data: str) -> Maker:
    def make(tmp: Path) -> None:
        for path in _targets(tmp, rel):
            with open(path, "a") as f:
                f.write(data)

    return make


def truncate(rel: str, keep: float = 0.5) -> Maker:
    def make(tmp: Path) -> None:
        for path in _targets(tmp, rel):
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * keep)])

    return make


def edit_json(rel: str, change: Callable[[dict], None]) -> Maker:
    def make(tmp: Path) -> None:
        for path in _targets(tmp, rel):
            data = json.loads(path.read_text())
            change(data)
            path.write_text(json.dumps(data))

    return make


def folder_with(rel: str, name: str = "notes.txt") -> Maker:
    """A folder the user made, holding one file of theirs."""
    return write(f"{rel}/{name}", "my notes, do not delete\n")


def chmod(rel: str, mode: int) -> Maker:
    def make(tmp: Path) -> None:
        path = tmp / rel
        if not path.exists():
            path.mkdir(parents=True)
        path.chmod(mode)

    return make


def nan_weights(rel: str) -> Maker:
    def make(tmp: Path) -> None:
        from safetensors.torch import load_file, save_file

        for path in _targets(tmp, rel):
            tensors = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                       for k, v in load_file(str(path)).items()}  # fmt: skip
            save_file(tensors, str(path), metadata={"format": "pt"})

    return make


def model_config(rel: str, **changes) -> Maker:
    """Edit the ``config`` of a model.json: a value of ``None`` removes the key."""

    def change(d: dict) -> None:
        for key, value in changes.items():
            if value is None:
                d["config"].pop(key, None)
            else:
                d["config"][key] = value

    return edit_json(rel, change)


def set_key(rel: str, key: str, value) -> Maker:
    def change(d: dict) -> None:
        d[key] = value

    return edit_json(rel, change)


def drop_key(rel: str, key: str) -> Maker:
    def change(d: dict) -> None:
        del d[key]

    return edit_json(rel, change)


def huge_special_id(rel: str) -> Maker:
    def change(d: dict) -> None:
        d["special_tokens"] = {name: 2**32 for name in d.get("special_tokens") or {"<|endoftext|>": 0}}

    return edit_json(rel, change)


def mkdir(rel: str) -> Maker:
    def make(tmp: Path) -> None:
        (tmp / rel).mkdir(parents=True, exist_ok=True)

    return make


def remove(rel: str) -> Maker:
    def make(tmp: Path) -> None:
        for path in _targets(tmp, rel):
            path.unlink()

    return make


def copy(src: str, dst: str) -> Maker:
    def make(tmp: Path) -> None:
        shutil.copytree(tmp / src, tmp / dst)

    return make


def both(*makers: Maker) -> Maker:
    def make(tmp: Path) -> None:
        for m in makers:
            m(tmp)

    return make


# ------------------------------------------------------------------------------------ the table


@dataclass
class Case:
    id: str
    argv: list[str]
    make: Maker | None = None
    ok: bool = False  # the input is odd but legitimate: the verb must succeed (exit 0)
    match: str | None = None  # a regex the error line must contain, where the reason is the point
    fast: bool = False  # an unusable --out: refused within FAST_S, before any work, nothing created
    isolate: bool = False  # own process, time and memory limits: unfixed, it would hang or eat memory
    stdin: str | None = None
    unreadable: str | None = None  # these files (a path in {tmp}, wildcards allowed) cannot be opened
    needs_non_root: bool = False  # relies on file permissions, which root ignores
    check: Callable[[Path], None] | None = None  # further checks of an ok case
    keep: tuple[str, ...] = ()  # ok rows change their run; these files of the user's must not change
    timeout: float = 60  # seconds an isolated row may run


# every copy of a run's files (top level, checkpoints/, best/): see _targets
WEIGHTS, MODEL_JSON, TOKENIZER = "run/**/model.safetensors", "run/**/model.json", "run/**/tokenizer.json"
STATE, OPTIMIZER = "run/**/trainer_state.json", "run/**/optimizer.pt"
CLF_JSON, CLF_HEAD, CLF_WEIGHTS = (
    "clf/**/classifier.json",
    "clf/**/head.safetensors",
    "clf/**/model.safetensors",
)

# a row whose error is one of these tests nothing: its command line is wrong (a flag renamed?)
PARSER_SLIPS = r"unrecognized arguments|the following arguments are required|invalid choice: '(?!bogus)"
OUT_UNUSABLE = r"cannot create|cannot write|not a folder|is a folder|not a directory|read-only"  # fast rows
OUT_TAKEN = r"overwrite|already|exists|not empty"  # what an existing-output refusal talks about
OWN_INPUT = r"own input|source|itself|same"

# tiny LM settings for `train` rows (the corpus path is filled in by the test)
TRAIN = ["train", "data.input=[\"{corpus}\"]", "data.tokenizer=char", "model.block_size=32",
         "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "train.batch_size=4",
         "train.eval_every=10", "train.eval_batches=1", "train.sample_tokens=0", "train.progress=false",
         "train.device=cpu", "train.max_steps=3"]  # fmt: skip
# the same, but long: a verb that trained before checking --out would blow FAST_S
TRAIN_LONG = [*TRAIN[:-1], "train.max_steps=5000"]
GEN = ["generate", "--max-new-tokens", "4", "--seed", "0"]
TINY_FT = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress"]
LONG_FT = ["--epochs", "500", "--batch-size", "8", "--device", "cpu", "--no-progress"]
CLF_FT = ["finetune", "classify", "--model", "{run}", "--data", "{tsv}", "--prompting-shots"]
IT_FT = ["finetune", "instruct", "--model", "{run}", "--data", "{instructions}", "--max-new-tokens", "2",
         "--max-test-examples", "1", "--no-base-comparison"]  # fmt: skip
PPL = ["eval", "perplexity", "--model", "{run}", "--device", "cpu"]
ATTN = ["analyze", "attention", "--text", "the cat"]
ENCODE_BAD_TOK = ["tokenizer", "encode", "--tokenizer", "{tmp}/tok.json", "--text", "hi"]
# words that are one token of the tiny BPE (its defaults, ' the', 'king', ... are not)
EMBED = [
    "analyze",
    "embeddings",
    "--no-minilm",
    "--token",
    "a",
    "--tokens",
    "a,b,c,d,e,f",
    "--pairs",
    "a|b;c|d",
]
BLEU_OK = ["--hyp", "{tmp}/hyp.txt", "--ref", "{tmp}/ref.txt"]
# input -> output pairs: eval generation and fine-tuning with a prompt template ({input} is the verb's)
PAIRS = write("pairs.jsonl", '{"en": "the cat", "de": "a cat"}\n{"en": "the dog", "de": "a dog"}\n')
EVAL_GEN = [
    "eval",
    "generation",
    "--model",
    "{run}",
    "--data",
    "{tmp}/pairs.jsonl",
    "--input-field",
    "en",
    "--target-field",
    "de",
    "--template",
    "the {input}\\n",
    "--max-new-tokens",
    "2",
    "--device",
    "cpu",
]
PAIRS_FT = ["finetune", "instruct", "--model", "{run}", "--data", "{tmp}/pairs.jsonl", "--input-field", "en",
            "--output-field", "de", "--max-new-tokens", "2", "--test-fraction", "0.5", "--val-fraction", "0.2",
            "--no-base-comparison"]  # fmt: skip
HYP_REF = both(write("hyp.txt", "the cat sat\na dog ran\n"), write("ref.txt", "the cat sat\na dog ran\n"))
RESPONSES = json.dumps([{"instruction": "say hi", "reference": "hi", "generated": "hi"}])
SERVE = ["serve", "--port", "0", "--device", "cpu"]
SERVE_S = 30  # a serve row that is not refused starts serving: killed after this, and it fails
# --insert trains a model: a tiny one (char tokenizer, 1 layer), a few steps
INSERT_TRAIN = ["data.tokenizer=char", "model.block_size=32", "model.n_layer=1", "model.n_head=2",
                "model.n_embd=32", "train.eval_every=2", "train.eval_batches=1", "train.sample_tokens=0",
                "train.device=cpu", "train.progress=false"]  # fmt: skip
MEMO = ["audit", "memorization", "--windows", "4", "--prefix-len", "4", "--suffix-len", "4",
        "--bootstrap", "10", "--samples", "20"]  # fmt: skip
MEMBERS = ["audit", "membership", "--windows", "20", "--window-tokens", "16", "--no-classifier",
           "--bootstrap", "10"]  # fmt: skip
BIAS = ["audit", "bias", "--n-perm", "50", "--n-boot", "20", "--builtin", "occupations"]
ROBUST = ["audit", "robustness", "--max-texts", "8", "--rates", "0.1", "--kinds", "swap",
          "--greedy-edits", "1", "--greedy-texts", "2", "--hotflip-budget", "1", "--hotflip-texts", "2"]  # fmt: skip
INJECT = ["audit", "injection", "--examples", "1", "--max-new-tokens", "4"]
POISON = ["audit", "poisoning", "--rates", "0,0.1", "--epochs", "1", "--batch-size", "8"]
SEED_2_63 = str(2**63)


def _metrics_reach_step(step: int) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        records = []
        for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        assert any(r.get("step") == step for r in records), (
            "the resumed run logged no record of its last step"
        )

    return check


def _config_has(rel: str, *needles: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        text = (tmp / rel).read_text()
        for needle in needles:
            assert needle in text, f"{rel} lacks {needle!r}: an override was dropped"

    return check


def _file_written(rel: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert (tmp / rel).is_file(), f"{rel} was not written"

    return check


# The commands the rows below spoil, as they are: each must WORK, so that a row's error comes from
# its one hostile input (and a renamed flag shows up here, not as a row that passes for nothing).
CONTROLS: list[Case] = [
    Case("control-tokenizer-train", ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "300",
                                     "--out", "{tmp}/tok.json"], ok=True, check=_file_written("tok.json")),
    Case("control-tokenizer-encode", ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json",
                                      "--text", "hi"], ok=True),
    Case("control-tokenizer-compare", ["tokenizer", "compare", "--text", "hi", "--kinds", "char",
                                       "--train-input", "{corpus}"], ok=True),
    Case("control-data-prepare", ["data", "prepare", "--input", "{corpus}", "--tokenizer", "char",
                                  "--out", "{tmp}/data"], ok=True, check=_file_written("data/meta.json")),
    Case("control-train", [*TRAIN, "--out", "{tmp}/new"], ok=True, check=_file_written("new/config.toml")),
    Case("control-train-resume", ["train", "--resume", "{run}", "train.max_steps=22"], ok=True,
         check=_metrics_reach_step(22)),
    Case("control-generate", [*GEN, "--model", "{run}"], ok=True),
    Case("control-chat", ["chat", "--model", "{run}", "--max-new-tokens", "2", "--seed", "0"], ok=True,
         stdin="hi\n"),
    Case("control-finetune-classify", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out"], ok=True,
         check=_file_written("out/classifier.json")),
    Case("control-finetune-instruct", [*IT_FT, *TINY_FT, "--out", "{tmp}/out"], ok=True,
         check=_file_written("out/responses.json")),
    Case("control-classify", ["classify", "--model", "{clf}", "the dog"], ok=True),
    Case("control-eval-perplexity", [*PPL, "--input", "{text}"], ok=True),
    Case("control-eval-bleu", ["eval", "bleu", *BLEU_OK], HYP_REF, ok=True),
    Case("control-eval-rouge", ["eval", "rouge", *BLEU_OK, "--bootstrap", "10"], HYP_REF, ok=True),
    Case("control-eval-classify", ["eval", "classify", "--model", "{clf}", "--data", "{tsv}"], ok=True),
    Case("control-eval-generation", [*EVAL_GEN, "--beams", "2", "--out", "{tmp}/gen"], PAIRS, ok=True,
         check=_file_written("gen/outputs.jsonl")),
    Case("control-convert", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"], ok=True),
    Case("control-export", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/out"], ok=True),
    Case("control-quantize", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q",
                              "--eval-file", "{text}", "--eval-max-chars", "200"], ok=True),
    Case("control-analyze-lens", ["analyze", "lens", "--model", "{run}", "--text", "the cat"], ok=True),
    Case("control-analyze-saliency", ["analyze", "saliency", "--model", "{clf}", "--text", "the dog"], ok=True),
    Case("control-analyze-embeddings", [*EMBED, "--model", "{run}"], ok=True),
    Case("control-analyze-sampling", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                      "--samples", "2", "--max-new-tokens", "2"], ok=True),
    Case("control-analyze-all", ["analyze", "all", "--model", "{run}", "--text", "the cat", "--out", "{tmp}/views",
                                 "--samples", "2", "--max-new-tokens", "2"], ok=True),
    Case("control-audit-all", ["audit", "all", "--model", "{run}", "--out", "{tmp}/audit", "--quick"], ok=True),
    Case("control-audit-memorization", [*MEMO, "--model", "{run}"], ok=True),
    Case("control-audit-memorization-insert", [*MEMO, "--insert", "{tmp}/ins", "--corpus", "{corpus}",
                                               *INSERT_TRAIN, "train.max_steps=2"], ok=True),
    Case("control-audit-membership", [*MEMBERS, "--model", "{run}"], ok=True),
    Case("control-audit-membership-classifier", ["audit", "membership", "--model", "{run}", "--windows", "20",
                                                 "--window-tokens", "16", "--bootstrap", "10"], ok=True),
    Case("control-audit-injection", [*INJECT, "--model", "{it}"], ok=True),
    Case("control-audit-robustness", [*ROBUST, "--model", "{clf}"], ok=True),
    Case("control-audit-bias", [*BIAS, "--model", "{run}"], ok=True),
    Case("control-audit-poisoning", [*POISON, "--model", "{run}", "--data", "{tsv}"], ok=True),
]  # fmt: skip

CASES: list[Case] = [
    *CONTROLS,
    # ---------------------------------------------------------------- quickstart
    Case("quickstart-out-is-a-file", ["quickstart", "--out", "{tmp}/file", "--max-steps", "1"],
         write("file", "not a folder\n"), fast=True),
    Case("quickstart-out-under-a-file", ["quickstart", "--out", "{tmp}/file/run", "--max-steps", "1"],
         write("file", "not a folder\n"), fast=True),
    Case("quickstart-fresh-deletes-no-foreign-folder",  # has a config.toml, but is not a gptlab run
         ["quickstart", "--out", "{tmp}/project", "--fresh", "--max-steps", "1", "--max-minutes", "0.05"],
         both(write("project/config.toml", "[tool.black]\nline-length = 100\n"), folder_with("project")),
         match=OUT_TAKEN),
    Case("quickstart-max-minutes-nan", ["quickstart", "--out", "{tmp}/qs", "--max-minutes", "nan",
                                        "--max-steps", "1"]),
    Case("quickstart-max-steps-negative", ["quickstart", "--out", "{tmp}/qs", "--max-steps", "-1",
                                           "--max-minutes", "0.05"]),
    # ---------------------------------------------------------------- tokenizer
    Case("tokenizer-train-input-empty",
         ["tokenizer", "train", "--input", "{tmp}/bad.txt", "--vocab-size", "300", "--out", "{tmp}/tok.json"],
         write("bad.txt", EMPTY)),
    Case("tokenizer-train-input-binary",
         ["tokenizer", "train", "--input", "{tmp}/bad.txt", "--vocab-size", "300", "--out", "{tmp}/tok.json"],
         write("bad.txt", BINARY)),
    Case("tokenizer-train-input-invalid-utf8",
         ["tokenizer", "train", "--input", "{tmp}/bad.txt", "--vocab-size", "300", "--out", "{tmp}/tok.json"],
         write("bad.txt", INVALID_UTF8)),
    Case("tokenizer-train-input-missing",
         ["tokenizer", "train", "--input", "{tmp}/nope.txt", "--vocab-size", "300", "--out", "{tmp}/tok.json"]),
    Case("tokenizer-train-vocab-below-256",
         ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "100", "--out", "{tmp}/tok.json"]),
    Case("tokenizer-train-out-exists",
         ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "300", "--out", "{tmp}/tok.json"],
         write("tok.json", '{"mine": true}\n'), match=OUT_TAKEN),
    Case("tokenizer-train-out-is-a-folder",
         ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "300", "--out", "{tmp}/dir"],
         folder_with("dir"), fast=True),
    Case("tokenizer-train-out-under-a-file",
         ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "300", "--out", "{tmp}/file/tok.json"],
         write("file", "x\n"), fast=True),
    Case("tokenizer-train-out-read-only",
         ["tokenizer", "train", "--input", "{corpus}", "--vocab-size", "300", "--out", "{tmp}/ro/tok.json"],
         chmod("ro", 0o555), fast=True, needs_non_root=True),
    Case("tokenizer-encode-tokenizer-empty", ENCODE_BAD_TOK,
         write("tok.json", EMPTY)),
    Case("tokenizer-encode-tokenizer-binary", ENCODE_BAD_TOK,
         write("tok.json", BINARY)),
    Case("tokenizer-encode-tokenizer-invalid-utf8",
         ENCODE_BAD_TOK, write("tok.json", INVALID_UTF8)),
    Case("tokenizer-encode-tokenizer-deeply-nested",
         ENCODE_BAD_TOK, write("tok.json", DEEP_JSON)),
    Case("tokenizer-encode-tokenizer-truncated",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--text", "hi"],
         truncate(TOKENIZER)),
    Case("tokenizer-encode-special-id-2pow32",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--text", "hi"],
         huge_special_id(TOKENIZER)),
    Case("tokenizer-encode-tokenizer-wrong-shape",  # valid JSON, not a tokenizer
         ENCODE_BAD_TOK, write("tok.json", "[1, 2, 3]")),
    Case("tokenizer-encode-input-invalid-utf8",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--input", "{tmp}/bad.txt"],
         write("bad.txt", INVALID_UTF8)),
    Case("tokenizer-encode-input-binary",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--input", "{tmp}/bad.txt"],
         write("bad.txt", BINARY)),
    Case("tokenizer-encode-tokenizer-unreadable",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--text", "hi"],
         unreadable="run/tokenizer.json"),
    Case("tokenizer-encode-tokenizer-chmod-000",
         ["tokenizer", "encode", "--tokenizer", "{run}/tokenizer.json", "--text", "hi"],
         chmod(TOKENIZER, 0o000), needs_non_root=True),
    Case("tokenizer-decode-id-past-vocab", ["tokenizer", "decode", "--tokenizer", "{run}/tokenizer.json",
                                            "--ids", str(2**40)]),
    Case("tokenizer-decode-id-negative", ["tokenizer", "decode", "--tokenizer", "{run}/tokenizer.json",
                                          "--ids", "5,-1"]),
    Case("tokenizer-decode-id-not-a-number", ["tokenizer", "decode", "--tokenizer", "{run}/tokenizer.json",
                                              "--ids", "5,x"]),
    Case("tokenizer-decode-special-id-2pow32", ["tokenizer", "decode", "--tokenizer", "{run}/tokenizer.json",
                                               "--ids", "5"], huge_special_id(TOKENIZER)),
    Case("tokenizer-stats-tokenizer-deeply-nested",
         ["tokenizer", "stats", "--tokenizer", "{tmp}/tok.json", "--text", "hi"], write("tok.json", DEEP_JSON)),
    Case("tokenizer-stats-input-invalid-utf8",
         ["tokenizer", "stats", "--tokenizer", "{run}/tokenizer.json", "--input", "{tmp}/bad.txt"],
         write("bad.txt", INVALID_UTF8)),
    Case("tokenizer-compare-input-invalid-utf8",
         ["tokenizer", "compare", "--input", "{tmp}/bad.txt", "--kinds", "char", "--train-input", "{corpus}"],
         write("bad.txt", INVALID_UTF8)),
    Case("tokenizer-compare-tokenizer-deeply-nested",
         ["tokenizer", "compare", "--text", "hi", "--kinds", "char", "--train-input", "{corpus}",
          "--tokenizer", "{tmp}/tok.json"], write("tok.json", DEEP_JSON)),
    Case("tokenizer-compare-train-input-binary",
         ["tokenizer", "compare", "--text", "hi", "--kinds", "char", "--train-input", "{tmp}/bad.txt"],
         write("bad.txt", BINARY)),
    Case("tokenizer-compare-vocab-size-0",
         ["tokenizer", "compare", "--text", "hi", "--kinds", "bpe", "--train-input", "{corpus}",
          "--vocab-sizes", "0"]),
    # ---------------------------------------------------------------- data
    Case("data-get-unknown-name", ["data", "get", "no-such-dataset", "--dir", "{tmp}/cache"]),
    Case("data-get-hash-mismatch-leaves-no-file",  # a file:// source with the wrong bytes
         ["data", "get", "the-verdict", "--dir", "{tmp}/cache", "--url", "file://{tmp}/fake.txt",
          "--allow-insecure-url"], write("fake.txt", "not the verdict\n")),
    Case("data-prepare-input-empty", ["data", "prepare", "--input", "{tmp}/bad.txt", "--tokenizer", "char",
                                      "--out", "{tmp}/data"], write("bad.txt", EMPTY)),
    Case("data-prepare-input-binary", ["data", "prepare", "--input", "{tmp}/bad.txt", "--tokenizer", "char",
                                       "--out", "{tmp}/data"], write("bad.txt", BINARY)),
    Case("data-prepare-input-invalid-utf8", ["data", "prepare", "--input", "{tmp}/bad.txt", "--tokenizer",
                                             "char", "--out", "{tmp}/data"], write("bad.txt", INVALID_UTF8)),
    Case("data-prepare-tokenizer-deeply-nested", ["data", "prepare", "--input", "{corpus}", "--tokenizer",
                                                  "{tmp}/tok.json", "--out", "{tmp}/data"],
         write("tok.json", DEEP_JSON)),
    Case("data-prepare-tokenizer-special-id-2pow32", ["data", "prepare", "--input", "{corpus}", "--tokenizer",
                                                     "{run}/tokenizer.json", "--out", "{tmp}/data"],
         huge_special_id(TOKENIZER)),
    Case("data-prepare-val-fraction-1.5", ["data", "prepare", "--input", "{corpus}", "--tokenizer", "char",
                                           "--out", "{tmp}/data", "--val-fraction", "1.5"]),
    Case("data-prepare-val-fraction-nan", ["data", "prepare", "--input", "{corpus}", "--tokenizer", "char",
                                           "--out", "{tmp}/data", "--val-fraction", "nan"]),
    Case("data-prepare-out-exists", ["data", "prepare", "--input", "{corpus}", "--tokenizer", "char",
                                     "--out", "{tmp}/data"], folder_with("data"), match=OUT_TAKEN),
    Case("data-prepare-out-is-a-file", ["data", "prepare", "--input", "{corpus}", "--vocab-size", "2000",
                                        "--out", "{tmp}/file"], write("file", "x\n"), fast=True),
    Case("data-prepare-out-under-a-file", ["data", "prepare", "--input", "{corpus}", "--vocab-size", "2000",
                                           "--out", "{tmp}/file/data"], write("file", "x\n"), fast=True),
    Case("data-prepare-out-read-only", ["data", "prepare", "--input", "{corpus}", "--vocab-size", "2000",
                                        "--out", "{tmp}/ro/data"], chmod("ro", 0o555), fast=True,
         needs_non_root=True),
    Case("data-prepare-out-is-its-input", ["data", "prepare", "--input", "{tmp}/in", "--tokenizer", "char",
                                           "--out", "{tmp}/in", "--overwrite"], write("in/a.txt", "hello\n"),
         match=OWN_INPUT),
    # ---------------------------------------------------------------- train
    Case("train-mixed-order-overrides-and-flags",  # KEY=VALUE after --out must still apply
         [*TRAIN, "--out", "{tmp}/new", "train.seed=1"], ok=True,
         check=_config_has("new/config.toml", "seed = 1", "max_steps = 3")),
    Case("train-resume-torn-metrics-line",  # a crash mid-write of metrics.jsonl: resume must go on
         ["train", "--resume", "{run}", "train.max_steps=22"], append("run/metrics.jsonl", TORN_METRICS_LINE),
         ok=True, check=_metrics_reach_step(22)),
    Case("train-config-empty-file-no-data", ["train", "--config", "{tmp}/c.toml", "--out", "{tmp}/new"],
         write("c.toml", EMPTY)),
    Case("train-config-binary", ["train", "--config", "{tmp}/c.toml", "--out", "{tmp}/new"], write("c.toml", BINARY)),
    Case("train-config-invalid-utf8", ["train", "--config", "{tmp}/c.toml", "--out", "{tmp}/new"],
         write("c.toml", INVALID_UTF8)),
    Case("train-config-deeply-nested", ["train", "--config", "{tmp}/c.toml", "--out", "{tmp}/new"],
         write("c.toml", DEEP_TOML)),
    Case("train-config-missing", ["train", "--config", "{tmp}/nope.toml", "--out", "{tmp}/new"]),
    Case("train-optim-lr-nan", [*TRAIN, "optim.lr=nan", "--out", "{tmp}/new"]),
    Case("train-optim-lr-inf", [*TRAIN, "optim.lr=inf", "--out", "{tmp}/new"]),
    Case("train-optim-beta1-2", [*TRAIN, "optim.beta1=2", "--out", "{tmp}/new"]),
    Case("train-optim-eps-negative", [*TRAIN, "optim.eps=-1", "--out", "{tmp}/new"]),
    Case("train-seed-2pow63", [*TRAIN, f"train.seed={SEED_2_63}", "--out", "{tmp}/new"]),
    Case("train-max-steps-negative", [*TRAIN, "train.max_steps=-5", "--out", "{tmp}/new"]),
    Case("train-batch-size-0", [*TRAIN, "train.batch_size=0", "--out", "{tmp}/new"]),
    Case("train-dp-epsilon-nan", [*TRAIN, "--dp-epsilon", "nan", "--out", "{tmp}/new"]),
    Case("train-n-layer-1e9", [*TRAIN, f"model.n_layer={HUGE}", "--out", "{tmp}/new"], isolate=True),
    Case("train-block-size-1e9", [*TRAIN, f"model.block_size={HUGE}", "--out", "{tmp}/new"], isolate=True),
    Case("train-input-empty", [*TRAIN, "data.input=[\"{tmp}/bad.txt\"]", "--out", "{tmp}/new"],
         write("bad.txt", EMPTY)),
    Case("train-input-binary", [*TRAIN, "data.input=[\"{tmp}/bad.txt\"]", "--out", "{tmp}/new"],
         write("bad.txt", BINARY)),
    Case("train-input-invalid-utf8", [*TRAIN, "data.input=[\"{tmp}/bad.txt\"]", "--out", "{tmp}/new"],
         write("bad.txt", INVALID_UTF8)),
    Case("train-tokenizer-file-deeply-nested", [*TRAIN, "data.tokenizer={tmp}/tok.json", "--out", "{tmp}/new"],
         write("tok.json", DEEP_JSON)),
    Case("train-out-exists", [*TRAIN, "--out", "{tmp}/mine"], folder_with("mine"), match=OUT_TAKEN),
    Case("train-out-is-an-existing-run", [*TRAIN, "--out", "{run}"], match=OUT_TAKEN),
    Case("train-out-is-a-file", [*TRAIN_LONG, "--out", "{tmp}/file"], write("file", "x\n"), fast=True),
    Case("train-out-under-a-file", [*TRAIN_LONG, "--out", "{tmp}/file/run"], write("file", "x\n"), fast=True),
    Case("train-out-read-only", [*TRAIN_LONG, "--out", "{tmp}/ro/run"], chmod("ro", 0o555), fast=True,
         needs_non_root=True),
    Case("train-resume-missing-run", ["train", "--resume", "{tmp}/nope"]),
    Case("train-resume-state-missing-step", ["train", "--resume", "{run}", "train.max_steps=22"],
         drop_key(STATE, "step")),
    Case("train-resume-state-missing-sampler", ["train", "--resume", "{run}", "train.max_steps=22"],
         drop_key(STATE, "sampler")),
    Case("train-resume-state-deeply-nested", ["train", "--resume", "{run}", "train.max_steps=22"],
         write(STATE, DEEP_JSON)),
    Case("train-resume-state-empty", ["train", "--resume", "{run}", "train.max_steps=22"],
         write(STATE, EMPTY)),
    Case("train-resume-truncated-safetensors", ["train", "--resume", "{run}", "train.max_steps=22"],
         truncate(WEIGHTS)),
    Case("train-resume-truncated-optimizer", ["train", "--resume", "{run}", "train.max_steps=22"],
         truncate(OPTIMIZER)),
    Case("train-resume-config-binary", ["train", "--resume", "{run}", "train.max_steps=22"],
         write("run/config.toml", BINARY)),
    Case("train-resume-lr-nan", ["train", "--resume", "{run}", "train.max_steps=22", "optim.lr=nan"]),
    # ---------------------------------------------------------------- generate (every way a run breaks)
    Case("generate-model-missing", [*GEN, "--model", "{tmp}/nope"]),
    Case("generate-model-empty-folder", [*GEN, "--model", "{tmp}/empty"], mkdir("empty")),
    Case("generate-model-is-a-file", [*GEN, "--model", "{corpus}"]),
    Case("generate-safetensors-truncated", [*GEN, "--model", "{run}"], truncate(WEIGHTS)),
    Case("generate-safetensors-empty", [*GEN, "--model", "{run}"], write(WEIGHTS, EMPTY)),
    Case("generate-safetensors-binary", [*GEN, "--model", "{run}"], write(WEIGHTS, BINARY)),
    Case("generate-safetensors-unreadable", [*GEN, "--model", "{run}"], unreadable=WEIGHTS),
    Case("generate-model-json-wrong-shapes", [*GEN, "--model", "{run}"], model_config(MODEL_JSON, n_embd=64)),
    Case("generate-model-json-wrong-vocab", [*GEN, "--model", "{run}"],
         model_config(MODEL_JSON, vocab_size=10)),
    Case("generate-model-json-missing-n-layer", [*GEN, "--model", "{run}"],
         model_config(MODEL_JSON, n_layer=None)),
    Case("generate-model-json-n-layer-1e9", [*GEN, "--model", "{run}"], model_config(MODEL_JSON, n_layer=HUGE),
         isolate=True),
    Case("generate-model-json-n-embd-1e9", [*GEN, "--model", "{run}"],
         model_config(MODEL_JSON, n_embd=HUGE, n_head=1), isolate=True),
    Case("generate-model-json-deeply-nested", [*GEN, "--model", "{run}"], write(MODEL_JSON, DEEP_JSON)),
    Case("generate-model-json-invalid-utf8", [*GEN, "--model", "{run}"], write(MODEL_JSON, INVALID_UTF8)),
    Case("generate-model-json-empty", [*GEN, "--model", "{run}"], write(MODEL_JSON, EMPTY)),
    Case("generate-nan-weights", [*GEN, "--model", "{run}"], nan_weights(WEIGHTS)),
    Case("generate-tokenizer-deeply-nested", [*GEN, "--model", "{run}"], write(TOKENIZER, DEEP_JSON)),
    Case("generate-tokenizer-special-id-2pow32", [*GEN, "--model", "{run}"], huge_special_id(TOKENIZER)),
    Case("generate-tokenizer-missing", [*GEN, "--model", "{run}"], remove(TOKENIZER)),
    Case("generate-seed-2pow63", ["generate", "--model", "{run}", "--max-new-tokens", "4", "--seed", SEED_2_63]),
    Case("generate-temperature-nan", [*GEN, "--model", "{run}", "--temperature", "nan"]),
    Case("generate-top-p-2", [*GEN, "--model", "{run}", "--top-p", "2"]),
    Case("generate-top-k-negative", [*GEN, "--model", "{run}", "--top-k", "-3"]),
    Case("generate-max-new-tokens-negative", ["generate", "--model", "{run}", "--max-new-tokens", "-1"]),
    Case("generate-num-samples-0", [*GEN, "--model", "{run}", "--num-samples", "0"]),
    Case("generate-dtype-unknown", [*GEN, "--model", "{run}", "--dtype", "float8"]),
    # ---------------------------------------------------------------- chat
    Case("chat-safetensors-truncated", ["chat", "--model", "{run}", "--max-new-tokens", "2"],
         truncate(WEIGHTS), stdin="hi\n"),
    Case("chat-tokenizer-deeply-nested", ["chat", "--model", "{run}", "--max-new-tokens", "2"],
         write(TOKENIZER, DEEP_JSON), stdin="hi\n"),
    Case("chat-seed-2pow63", ["chat", "--model", "{run}", "--max-new-tokens", "2", "--seed", SEED_2_63],
         stdin="hi\n"),
    Case("chat-temperature-nan", ["chat", "--model", "{run}", "--max-new-tokens", "2", "--temperature", "nan"],
         stdin="hi\n"),
    Case("chat-nan-weights", ["chat", "--model", "{run}", "--max-new-tokens", "2", "--seed", "0"],
         nan_weights(WEIGHTS), stdin="hi\n"),
    # ---------------------------------------------------------------- finetune classify
    Case("finetune-classify-data-empty", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", EMPTY)),
    Case("finetune-classify-data-binary", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", BINARY)),
    Case("finetune-classify-data-invalid-utf8",
         [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.tsv"], write("bad.tsv", INVALID_UTF8)),
    Case("finetune-classify-data-deeply-nested",
         [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"], write("bad.json", DEEP_JSON)),
    Case("finetune-classify-one-label", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/one.tsv"],
         write("one.tsv", "label\ttext\n" + "calm\tthe cat\n" * 20)),
    Case("finetune-classify-lr-nan", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--lr", "nan"]),
    Case("finetune-classify-max-length-negative", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--max-length", "-1"]),
    Case("finetune-classify-epochs-0", [*CLF_FT, "--out", "{tmp}/out", "--epochs", "0", "--no-progress"]),
    Case("finetune-classify-fractions-over-1", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--val-fraction", "0.6",
                                                "--test-fraction", "0.6"]),
    Case("finetune-classify-seed-2pow63", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out", "--seed", SEED_2_63]),
    Case("finetune-classify-model-truncated", [*CLF_FT, *TINY_FT, "--out", "{tmp}/out"],
         truncate(WEIGHTS)),
    Case("finetune-classify-out-exists", [*CLF_FT, *TINY_FT, "--out", "{tmp}/mine"], folder_with("mine"),
         match=OUT_TAKEN),
    Case("finetune-classify-out-is-a-file", [*CLF_FT, *LONG_FT, "--out", "{tmp}/file"], write("file", "x\n"),
         fast=True),
    Case("finetune-classify-out-under-a-file", [*CLF_FT, *LONG_FT, "--out", "{tmp}/file/clf"],
         write("file", "x\n"), fast=True),
    Case("finetune-classify-out-read-only", [*CLF_FT, *LONG_FT, "--out", "{tmp}/ro/clf"], chmod("ro", 0o555),
         fast=True, needs_non_root=True),
    Case("finetune-classify-out-is-its-base-run", [*CLF_FT, *TINY_FT, "--out", "{run}", "--overwrite"],
         match=OWN_INPUT),
    # ---------------------------------------------------------------- finetune instruct
    Case("finetune-instruct-data-empty", [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"],
         write("bad.json", EMPTY)),
    Case("finetune-instruct-data-binary", [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"],
         write("bad.json", BINARY)),
    Case("finetune-instruct-data-invalid-utf8",
         [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"], write("bad.json", INVALID_UTF8)),
    Case("finetune-instruct-data-deeply-nested",
         [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"], write("bad.json", DEEP_JSON)),
    Case("finetune-instruct-data-wrong-shape",  # valid JSON, not a list of examples
         [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--data", "{tmp}/bad.json"], write("bad.json", '{"a": 1}')),
    Case("finetune-instruct-lr-nan", [*IT_FT, *TINY_FT, "--out", "{tmp}/out", "--lr", "nan"]),
    Case("finetune-instruct-out-exists", [*IT_FT, *TINY_FT, "--out", "{tmp}/mine"], folder_with("mine"),
         match=OUT_TAKEN),
    Case("finetune-instruct-out-is-a-file", [*IT_FT, *LONG_FT, "--out", "{tmp}/file"], write("file", "x\n"),
         fast=True),
    Case("finetune-instruct-out-under-a-file", [*IT_FT, *LONG_FT, "--out", "{tmp}/file/it"],
         write("file", "x\n"), fast=True),
    Case("finetune-instruct-out-is-its-base-run", [*IT_FT, *TINY_FT, "--out", "{run}", "--overwrite"],
         match=OWN_INPUT),
    # ---------------------------------------------------------------- classify
    Case("classify-max-length-negative", ["classify", "--model", "{clf}", "the dog"],
         set_key(CLF_JSON, "max_length", -1)),
    Case("classify-classifier-json-deeply-nested", ["classify", "--model", "{clf}", "the dog"],
         write(CLF_JSON, DEEP_JSON)),
    Case("classify-classifier-json-binary", ["classify", "--model", "{clf}", "the dog"],
         write(CLF_JSON, BINARY)),
    Case("classify-classifier-json-no-labels", ["classify", "--model", "{clf}", "the dog"],
         drop_key(CLF_JSON, "label_names")),
    Case("classify-head-truncated", ["classify", "--model", "{clf}", "the dog"], truncate(CLF_HEAD)),
    Case("classify-model-truncated", ["classify", "--model", "{clf}", "the dog"], truncate(CLF_WEIGHTS)),
    Case("classify-not-a-classifier-run", ["classify", "--model", "{run}", "the dog"]),
    # ---------------------------------------------------------------- eval
    Case("eval-perplexity-input-empty", [*PPL, "--input", "{tmp}/bad.txt"], write("bad.txt", EMPTY)),
    Case("eval-perplexity-input-binary", [*PPL, "--input", "{tmp}/bad.txt"], write("bad.txt", BINARY)),
    Case("eval-perplexity-input-invalid-utf8", [*PPL, "--input", "{tmp}/bad.txt"], write("bad.txt", INVALID_UTF8)),
    Case("eval-perplexity-input-missing", [*PPL, "--input", "{tmp}/nope.txt"]),
    Case("eval-perplexity-input-unreadable", [*PPL, "--input", "{text}"], unreadable="heldout.txt"),
    Case("eval-perplexity-input-chmod-000", [*PPL, "--input", "{text}"], chmod("heldout.txt", 0o000),
         needs_non_root=True),
    Case("eval-perplexity-stride-0", [*PPL, "--input", "{text}", "--stride", "0"]),
    Case("eval-perplexity-block-size-1e9", [*PPL, "--input", "{text}", "--block-size", str(HUGE)]),
    Case("eval-perplexity-batch-size-0", [*PPL, "--input", "{text}", "--batch-size", "0"]),
    Case("eval-perplexity-model-truncated", [*PPL, "--input", "{text}"], truncate(WEIGHTS)),
    Case("eval-perplexity-model-json-wrong-shapes", [*PPL, "--input", "{text}"],
         model_config(MODEL_JSON, n_embd=64)),
    Case("eval-perplexity-nan-weights", [*PPL, "--input", "{text}"], nan_weights(WEIGHTS)),
    Case("eval-perplexity-tokenizer-deeply-nested", [*PPL, "--input", "{text}"],
         write(TOKENIZER, DEEP_JSON)),
    Case("eval-bleu-smooth-value-negative-add-k",
         ["eval", "bleu", *BLEU_OK, "--smooth", "add-k", "--smooth-value", "-1"],
         HYP_REF),
    Case("eval-bleu-smooth-value-nan", ["eval", "bleu", *BLEU_OK, "--smooth", "floor", "--smooth-value", "nan"],
         HYP_REF),
    Case("eval-bleu-hyp-empty", ["eval", "bleu", *BLEU_OK], both(HYP_REF, write("hyp.txt", EMPTY))),
    Case("eval-bleu-line-count-mismatch", ["eval", "bleu", *BLEU_OK], both(HYP_REF, write("hyp.txt", "one line\n"))),
    Case("eval-bleu-hyp-invalid-utf8", ["eval", "bleu", *BLEU_OK], both(HYP_REF, write("hyp.txt", INVALID_UTF8))),
    Case("eval-bleu-hyp-binary", ["eval", "bleu", *BLEU_OK], both(HYP_REF, write("hyp.txt", BINARY))),
    Case("eval-bleu-responses-deeply-nested", ["eval", "bleu", "--responses", "{tmp}/r.json"],
         write("r.json", DEEP_JSON)),
    Case("eval-bleu-responses-wrong-shape", ["eval", "bleu", "--responses", "{tmp}/r.json"],
         write("r.json", '[{"generated": 5}]')),
    Case("eval-bleu-responses-empty-list", ["eval", "bleu", "--responses", "{tmp}/r.json"], write("r.json", "[]")),
    Case("eval-rouge-responses-deeply-nested", ["eval", "rouge", "--responses", "{tmp}/r.json"],
         write("r.json", DEEP_JSON)),
    Case("eval-rouge-responses-truncated", ["eval", "rouge", "--responses", "{tmp}/r.json"],
         write("r.json", RESPONSES[:-7])),
    Case("eval-rouge-bootstrap-negative", ["eval", "rouge", *BLEU_OK, "--bootstrap", "-1"], HYP_REF),
    Case("eval-rouge-confidence-1.5", ["eval", "rouge", *BLEU_OK, "--bootstrap", "10", "--confidence", "1.5"],
         HYP_REF),
    Case("eval-rouge-unknown-type", ["eval", "rouge", *BLEU_OK, "--types", "rouge0"], HYP_REF),
    Case("eval-rouge-ref-invalid-utf8", ["eval", "rouge", *BLEU_OK], both(HYP_REF, write("ref.txt", INVALID_UTF8))),
    Case("eval-judge-responses-deeply-nested",
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m"], write("r.json", DEEP_JSON)),
    Case("eval-judge-responses-binary",
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m"], write("r.json", BINARY)),
    Case("eval-judge-unreachable-url",  # port 9 (discard): connection refused at once, no network
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m", "--timeout", "5"], write("r.json", RESPONSES)),
    Case("eval-judge-url-not-a-url",
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "not a url", "--judge-model", "m"],
         write("r.json", RESPONSES)),
    Case("eval-judge-timeout-negative",
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m", "--timeout", "-1"], write("r.json", RESPONSES)),
    Case("eval-judge-out-exists",  # refused before any request is sent
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m", "--out", "{tmp}/scores.json"],
         both(write("r.json", RESPONSES), write("scores.json", "{}")), match=OUT_TAKEN),
    Case("eval-judge-out-under-a-file",
         ["eval", "judge", "--responses", "{tmp}/r.json", "--judge-url", "http://127.0.0.1:9/v1",
          "--judge-model", "m", "--out", "{tmp}/file/scores.json"],
         both(write("r.json", RESPONSES), write("file", "x\n")), fast=True),
    Case("eval-generation-data-line-not-an-object", EVAL_GEN, write("pairs.jsonl", '{"en": "a", "de": "b"}\n[1]\n'),
         match="line 2"),
    Case("eval-generation-data-empty-target", EVAL_GEN, write("pairs.jsonl", '{"en": "a", "de": " "}\n'),
         match="line 1.*empty"),
    Case("eval-generation-data-invalid-utf8", EVAL_GEN, write("pairs.jsonl", INVALID_UTF8)),
    Case("eval-generation-template-without-input", [*EVAL_GEN, "--template", "the cat"], PAIRS, match="input"),
    Case("eval-generation-run-without-template", EVAL_GEN[:-6] + ["--device", "cpu"], PAIRS, match="template"),
    Case("eval-generation-out-exists", [*EVAL_GEN, "--out", "{tmp}/gen"],
         both(PAIRS, write("gen/outputs.jsonl", "mine\n")), match=OUT_TAKEN),
    Case("eval-generation-out-is-a-file", [*EVAL_GEN, "--out", "{tmp}/file"], both(PAIRS, write("file", "x\n")),
         fast=True),
    Case("finetune-instruct-pairs-template-without-input", [*PAIRS_FT, "--template", "the cat", "--out", "{tmp}/o"],
         PAIRS, match="input"),
    Case("finetune-instruct-pairs-empty-output", [*PAIRS_FT, "--template", "the {input}", "--out", "{tmp}/o"],
         write("pairs.jsonl", '{"en": "the cat", "de": "a cat"}\n{"en": "the dog", "de": ""}\n'), match="line 2"),
    Case("finetune-instruct-pairs-line-not-an-object", [*PAIRS_FT, "--template", "the {input}", "--out", "{tmp}/o"],
         write("pairs.jsonl", '"the cat"\n'), match="line 1"),
    Case("eval-classify-data-empty", ["eval", "classify", "--model", "{clf}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", EMPTY)),
    Case("eval-classify-data-binary", ["eval", "classify", "--model", "{clf}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", BINARY)),
    Case("eval-classify-data-invalid-utf8", ["eval", "classify", "--model", "{clf}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", INVALID_UTF8)),
    Case("eval-classify-data-deeply-nested", ["eval", "classify", "--model", "{clf}", "--data", "{tmp}/bad.json"],
         write("bad.json", DEEP_JSON)),
    Case("eval-classify-unknown-labels", ["eval", "classify", "--model", "{clf}", "--data", "{tmp}/d.tsv"],
         write("d.tsv", "label\ttext\nspam\tthe dog\nham\tthe cat\n")),
    Case("eval-classify-max-length-negative", ["eval", "classify", "--model", "{clf}", "--data", "{tsv}"],
         set_key(CLF_JSON, "max_length", -1)),
    Case("eval-classify-not-a-classifier-run", ["eval", "classify", "--model", "{run}", "--data", "{tsv}"]),
    # ---------------------------------------------------------------- convert
    Case("convert-config-deeply-nested", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         write("hf/config.json", DEEP_JSON)),
    Case("convert-config-empty", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         write("hf/config.json", EMPTY)),
    Case("convert-config-n-layer-1e9", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         set_key("hf/config.json", "n_layer", HUGE), isolate=True),
    Case("convert-config-missing-n-layer", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         drop_key("hf/config.json", "n_layer")),
    Case("convert-weights-truncated", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         truncate("hf/**/model.safetensors")),
    Case("convert-weights-binary", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         write("hf/**/model.safetensors", BINARY)),
    Case("convert-tokenizer-deeply-nested", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/out"],
         write("hf/tokenizer.json", DEEP_JSON)),
    Case("convert-source-missing", ["convert", "--from", "hf", "{tmp}/nope", "--out", "{tmp}/out"]),
    Case("convert-out-exists", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/mine"], folder_with("mine"),
         match=OUT_TAKEN),
    Case("convert-out-is-a-file", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/file"], write("file", "x\n"),
         fast=True),
    Case("convert-out-under-a-file", ["convert", "--from", "hf", "{hf}", "--out", "{tmp}/file/run"],
         write("file", "x\n"), fast=True),
    Case("convert-out-is-its-source", ["convert", "--from", "hf", "{hf}", "--out", "{hf}", "--overwrite"],
         match=OWN_INPUT),
    # ---------------------------------------------------------------- export
    Case("export-out-is-its-source-run", ["export", "--model", "{run}", "--format", "hf", "--out", "{run}"],
         match=OWN_INPUT),
    Case("export-out-is-its-source-run-overwrite",
         ["export", "--model", "{run}", "--format", "hf", "--out", "{run}", "--overwrite"], match=OWN_INPUT),
    Case("export-out-inside-its-source-run",
         ["export", "--model", "{run}", "--format", "hf", "--out", "{run}/hf", "--overwrite"], match=OWN_INPUT),
    Case("export-out-exists", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/mine"],
         folder_with("mine"), match=OUT_TAKEN),
    Case("export-out-is-a-file", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/file"],
         write("file", "x\n"), fast=True),
    Case("export-out-under-a-file", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/file/hf"],
         write("file", "x\n"), fast=True),
    Case("export-out-read-only", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/ro/hf"],
         chmod("ro", 0o555), fast=True, needs_non_root=True),
    Case("export-model-truncated", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/out"],
         truncate(WEIGHTS)),
    Case("export-nan-weights", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/out"],
         nan_weights(WEIGHTS)),
    Case("export-model-json-wrong-shapes", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/out"],
         model_config(MODEL_JSON, n_embd=64)),
    Case("export-rope-model", ["export", "--model", "{run}", "--format", "hf", "--out", "{tmp}/out"],
         model_config(MODEL_JSON, pos_encoding="rope")),
    # ---------------------------------------------------------------- quantize
    Case("quantize-eval-max-chars-negative", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q",
                                              "--eval-file", "{text}", "--eval-max-chars", "-5"]),
    Case("quantize-eval-file-invalid-utf8", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q",
                                             "--eval-file", "{tmp}/bad.txt"], write("bad.txt", INVALID_UTF8)),
    Case("quantize-eval-file-empty", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q",
                                      "--eval-file", "{tmp}/bad.txt"], write("bad.txt", EMPTY)),
    Case("quantize-group-size-7", ["quantize", "--model", "{run}", "--bits", "4", "--group-size", "7",
                                   "--out", "{tmp}/q"]),
    Case("quantize-model-truncated", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q"],
         truncate(WEIGHTS)),
    Case("quantize-nan-weights", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/q"],
         nan_weights(WEIGHTS)),
    Case("quantize-out-exists", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/mine"],
         folder_with("mine"), match=OUT_TAKEN),
    Case("quantize-out-is-a-file", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/file"],
         write("file", "x\n"), fast=True),
    Case("quantize-out-under-a-file", ["quantize", "--model", "{run}", "--bits", "8", "--out", "{tmp}/file/q"],
         write("file", "x\n"), fast=True),
    Case("quantize-out-is-its-source-run",
         ["quantize", "--model", "{run}", "--bits", "8", "--out", "{run}", "--overwrite"], match=OWN_INPUT),
    # ---------------------------------------------------------------- analyze
    Case("analyze-views-share-a-folder",  # named files: a folder with other files is fine
         [*ATTN, "--model", "{run}", "--out", "{tmp}/views"], folder_with("views"), ok=True,
         check=_file_written("views/attention.html"), keep=("views/notes.txt",)),
    Case("analyze-attention-view-exists", [*ATTN, "--model", "{run}", "--out", "{tmp}/views"],
         write("views/attention.html", "<p>mine</p>"), match=OUT_TAKEN),
    Case("analyze-attention-out-is-a-file", [*ATTN, "--model", "{run}", "--out", "{tmp}/file"],
         write("file", "x\n"), fast=True),
    Case("analyze-attention-out-under-a-file", [*ATTN, "--model", "{run}", "--out", "{tmp}/file/views"],
         write("file", "x\n"), fast=True),
    Case("analyze-attention-out-read-only", [*ATTN, "--model", "{run}", "--out", "{tmp}/ro"],
         chmod("ro", 0o555), fast=True, needs_non_root=True),
    Case("analyze-attention-out-in-its-run", [*ATTN, "--model", "{run}", "--out", "{run}"], match=OWN_INPUT),
    Case("analyze-attention-model-truncated", [*ATTN, "--model", "{run}"], truncate(WEIGHTS)),
    Case("analyze-attention-tokenizer-deeply-nested", [*ATTN, "--model", "{run}"],
         write(TOKENIZER, DEEP_JSON)),
    Case("analyze-attention-empty-text", ["analyze", "attention", "--model", "{run}", "--text", ""]),
    Case("analyze-attention-sigmas-nan", [*ATTN, "--model", "{run}", "--sigmas", "nan"]),
    Case("analyze-lens-top-k-0", ["analyze", "lens", "--model", "{run}", "--text", "the cat", "--top-k", "0"]),
    Case("analyze-lens-model-json-wrong-shapes", ["analyze", "lens", "--model", "{run}", "--text", "the cat"],
         model_config(MODEL_JSON, n_embd=64)),
    Case("analyze-saliency-steps-0", ["analyze", "saliency", "--model", "{run}", "--text", "the cat",
                                      "--steps", "0"]),
    Case("analyze-saliency-unknown-label", ["analyze", "saliency", "--model", "{clf}", "--text", "the dog",
                                            "--target", "no-such-label"]),
    Case("analyze-saliency-max-length-negative", ["analyze", "saliency", "--model", "{clf}", "--text", "the dog"],
         set_key(CLF_JSON, "max_length", -1)),
    Case("analyze-embeddings-k-0", [*EMBED, "--model", "{run}", "--k", "0"]),
    Case("analyze-embeddings-eps-negative", [*EMBED, "--model", "{run}",
                                             "--eps", "-1"]),
    Case("analyze-embeddings-layer-99", [*EMBED, "--model", "{run}",
                                         "--layer", "99"]),
    Case("analyze-embeddings-view-exists", [*EMBED, "--model", "{run}",
                                            "--out", "{tmp}/views"], write("views/embeddings.html", "mine"),
         match=OUT_TAKEN),
    Case("analyze-sampling-temperature-nan", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                              "--temperatures", "nan", "--samples", "2"]),
    Case("analyze-sampling-top-p-2", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                      "--top-p", "2", "--samples", "2"]),
    Case("analyze-sampling-samples-0", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                        "--samples", "0"]),
    Case("analyze-sampling-seed-2pow63", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                         "--samples", "2", "--seed", SEED_2_63]),
    Case("analyze-sampling-view-exists", ["analyze", "sampling", "--model", "{run}", "--prompt", "the",
                                          "--samples", "2", "--max-new-tokens", "2", "--out", "{tmp}/views"],
         write("views/sampling.png", "mine"), match=OUT_TAKEN),
    Case("analyze-all-index-exists", ["analyze", "all", "--model", "{run}", "--text", "the cat",
                                      "--out", "{tmp}/views"], write("views/index.html", "mine"), match=OUT_TAKEN),
    Case("analyze-all-out-is-a-file", ["analyze", "all", "--model", "{run}", "--text", "the cat",
                                       "--out", "{tmp}/file"], write("file", "x\n"), fast=True),
    Case("analyze-all-model-truncated", ["analyze", "all", "--model", "{run}", "--text", "the cat",
                                         "--out", "{tmp}/views"], truncate(WEIGHTS)),
    # ---------------------------------------------------------------- audit
    Case("audit-all-model-cannot-load",  # must fail with the load error, not report nothing and exit 0
         ["audit", "all", "--model", "{run}", "--out", "{tmp}/audit", "--quick"], truncate(WEIGHTS)),
    Case("audit-all-model-json-deeply-nested",
         ["audit", "all", "--model", "{run}", "--out", "{tmp}/audit", "--quick"], write(MODEL_JSON, DEEP_JSON)),
    Case("audit-all-model-missing", ["audit", "all", "--model", "{tmp}/nope", "--out", "{tmp}/audit", "--quick"]),
    Case("audit-all-report-exists", ["audit", "all", "--model", "{run}", "--out", "{tmp}/audit", "--quick"],
         write("audit/audit.json", "{}"), match=OUT_TAKEN),
    Case("audit-all-out-is-a-file", ["audit", "all", "--model", "{run}", "--out", "{tmp}/file"],
         write("file", "x\n"), fast=True),
    Case("audit-all-out-under-a-file", ["audit", "all", "--model", "{run}", "--out", "{tmp}/file/audit"],
         write("file", "x\n"), fast=True),
    Case("audit-all-out-in-its-run", ["audit", "all", "--model", "{run}", "--out", "{run}/audit", "--quick"],
         match=OWN_INPUT),
    Case("audit-memorization-canaries-deeply-nested", [*MEMO, "--model", "{run}", "--canaries", "{tmp}/c.json"],
         write("c.json", DEEP_JSON)),
    Case("audit-memorization-canaries-binary", [*MEMO, "--model", "{run}", "--canaries", "{tmp}/c.json"],
         write("c.json", BINARY)),
    Case("audit-memorization-canaries-missing", [*MEMO, "--model", "{run}", "--canaries", "{tmp}/nope.json"]),
    Case("audit-memorization-model-truncated", [*MEMO, "--model", "{run}"], truncate(WEIGHTS)),
    Case("audit-memorization-bootstrap-negative", [*MEMO, "--model", "{run}", "--bootstrap", "-1"]),
    Case("audit-memorization-insert-corpus-invalid-utf8",
         [*MEMO, "--insert", "{tmp}/ins", "--corpus", "{tmp}/bad.txt", *INSERT_TRAIN, "train.max_steps=2"],
         write("bad.txt", INVALID_UTF8)),
    Case("audit-memorization-insert-folder-taken",
         [*MEMO, "--insert", "{tmp}/ins", "--corpus", "{corpus}", *INSERT_TRAIN, "train.max_steps=2"],
         write("ins/corpus.txt", "my own corpus\n"), match=OUT_TAKEN),
    Case("audit-memorization-insert-under-a-file",
         [*MEMO, "--insert", "{tmp}/file/ins", "--corpus", "{corpus}", *INSERT_TRAIN, "train.max_steps=2000"],
         write("file", "x\n"), fast=True),
    Case("audit-memorization-report-exists", [*MEMO, "--model", "{run}", "--out", "{tmp}/a"],
         write("a/memorization.json", "{}"), match=OUT_TAKEN),
    Case("audit-membership-window-tokens-0", [*MEMBERS, "--window-tokens", "0", "--model", "{run}"]),
    Case("audit-membership-members-empty", [*MEMBERS, "--model", "{run}", "--members", "{tmp}/m.txt",
                                            "--nonmembers", "{text}"], write("m.txt", EMPTY)),
    Case("audit-membership-members-binary", [*MEMBERS, "--model", "{run}", "--members", "{tmp}/m.txt",
                                             "--nonmembers", "{text}"], write("m.txt", BINARY)),
    Case("audit-membership-members-invalid-utf8", [*MEMBERS, "--model", "{run}", "--members", "{tmp}/m.txt",
                                                   "--nonmembers", "{text}"], write("m.txt", INVALID_UTF8)),
    Case("audit-membership-folds-1", ["audit", "membership", "--model", "{run}", "--windows", "20",
                                      "--window-tokens", "16", "--folds", "1", "--bootstrap", "10"]),
    Case("audit-membership-reference-truncated", [*MEMBERS, "--model", "{run}", "--reference", "{tmp}/ref"],
         both(copy("run", "ref"), truncate("ref/**/model.safetensors"))),
    Case("audit-membership-auc-threshold-nan", [*MEMBERS, "--model", "{run}", "--auc-threshold", "nan"]),
    Case("audit-membership-out-under-a-file", [*MEMBERS, "--model", "{run}", "--out", "{tmp}/file/a"],
         write("file", "x\n"), fast=True),
    Case("audit-injection-probes-deeply-nested", [*INJECT, "--model", "{it}", "--probes", "{tmp}/p.json"],
         write("p.json", DEEP_JSON)),
    Case("audit-injection-probes-wrong-shape", [*INJECT, "--model", "{it}", "--probes", "{tmp}/p.json",
                                                "--only-file-probes"], write("p.json", '[{"family": 3}]')),
    Case("audit-injection-guard-config-binary", [*INJECT, "--model", "{it}", "--guard-config", "{tmp}/g.json"],
         write("g.json", BINARY)),
    Case("audit-injection-max-success-rate-2", [*INJECT, "--model", "{it}", "--max-success-rate", "2"]),
    Case("audit-injection-examples-0", ["audit", "injection", "--model", "{it}", "--examples", "0"]),
    Case("audit-injection-model-truncated", [*INJECT, "--model", "{it}"], truncate("it/**/model.safetensors")),
    Case("audit-injection-defence-under-a-file", [*INJECT, "--model", "{it}", "--defence", "{tmp}/file/d"],
         write("file", "x\n"), fast=True),
    Case("audit-robustness-not-a-classifier-run", [*ROBUST, "--model", "{run}"]),
    Case("audit-robustness-rates-nan", [*ROBUST, "--rates", "nan", "--model", "{clf}"]),
    Case("audit-robustness-unknown-kind", [*ROBUST, "--kinds", "bogus", "--model", "{clf}"]),
    Case("audit-robustness-data-invalid-utf8", [*ROBUST, "--model", "{clf}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", INVALID_UTF8)),
    Case("audit-robustness-data-deeply-nested", [*ROBUST, "--model", "{clf}", "--data", "{tmp}/bad.json"],
         write("bad.json", DEEP_JSON)),
    Case("audit-robustness-max-length-negative", [*ROBUST, "--model", "{clf}"],
         set_key(CLF_JSON, "max_length", -1)),
    Case("audit-robustness-adversarial-training-under-a-file",
         [*ROBUST, "--model", "{clf}", "--adversarial-training", "{tmp}/file/adv"], write("file", "x\n"),
         fast=True),
    Case("audit-bias-alpha-5", [*BIAS, "--model", "{run}", "--alpha", "5"]),
    Case("audit-bias-n-perm-0-n-boot-0", ["audit", "bias", "--model", "{run}", "--n-perm", "0",
                                                     "--n-boot", "0", "--builtin", "occupations"]),
    Case("audit-bias-gap-threshold-nan", [*BIAS, "--model", "{run}", "--gap-threshold", "nan"]),
    Case("audit-bias-probes-deeply-nested", [*BIAS, "--model", "{run}", "--probes", "{tmp}/p.json"],
         write("p.json", DEEP_JSON)),
    Case("audit-bias-probes-empty", [*BIAS, "--model", "{run}", "--probes", "{tmp}/p.json"],
         write("p.json", EMPTY)),
    Case("audit-bias-probes-empty-list", [*BIAS, "--model", "{run}", "--probes", "{tmp}/p.json",
                                          "--builtin", "none"], write("p.json", "[]")),
    Case("audit-bias-seed-2pow63", [*BIAS, "--model", "{run}", "--seed", SEED_2_63]),
    Case("audit-bias-cda-without-out", [*BIAS, "--model", "{run}", "--cda"]),
    Case("audit-bias-report-exists", [*BIAS, "--model", "{run}", "--out", "{tmp}/a"], write("a/bias.json", "{}"),
         match=OUT_TAKEN),
    Case("audit-poisoning-data-invalid-utf8", [*POISON, "--model", "{run}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", INVALID_UTF8)),
    Case("audit-poisoning-data-empty", [*POISON, "--model", "{run}", "--data", "{tmp}/bad.tsv"],
         write("bad.tsv", EMPTY)),
    Case("audit-poisoning-rate-2", [*POISON, "--rates", "0,2", "--model", "{run}", "--data", "{tsv}"]),
    Case("audit-poisoning-rate-nan", [*POISON, "--rates", "nan", "--model", "{run}", "--data", "{tsv}"]),
    Case("audit-poisoning-unknown-target", [*POISON, "--model", "{run}", "--data", "{tsv}", "--target", "nope"]),
    Case("audit-poisoning-runs-under-a-file", [*POISON, "--model", "{run}", "--data", "{tsv}",
                                               "--runs", "{tmp}/file/runs"], write("file", "x\n"), fast=True),
    # ---------------------------------------------------------------- serve (own process: unrefused, it serves)
    Case("serve-max-concurrent-0", [*SERVE, "--model", "{run}", "--max-concurrent", "0"],
         isolate=True, timeout=SERVE_S),
    Case("serve-timeout-negative", [*SERVE, "--model", "{run}", "--timeout", "-1"],
         isolate=True, timeout=SERVE_S),
    Case("serve-max-tokens-0", [*SERVE, "--model", "{run}", "--max-tokens", "0"],
         isolate=True, timeout=SERVE_S),
    Case("serve-max-body-bytes-negative", [*SERVE, "--model", "{run}", "--max-body-bytes", "-1"],
         isolate=True, timeout=SERVE_S),
    Case("serve-model-truncated", [*SERVE, "--model", "{run}"], truncate(WEIGHTS),
         isolate=True, timeout=SERVE_S),
    Case("serve-tokenizer-deeply-nested", [*SERVE, "--model", "{run}"], write(TOKENIZER, DEEP_JSON),
         isolate=True, timeout=SERVE_S),
    Case("serve-max-length-negative", [*SERVE, "--model", "{clf}"], set_key(CLF_JSON, "max_length", -1),
         isolate=True, timeout=SERVE_S),
    # ---------------------------------------------------------------- bench
    Case("bench-unknown-benchmark", ["bench", "bogus-bench"]),
    Case("bench-tokenizer-data-invalid-utf8",
         ["bench", "tokenizer", "--data", "{tmp}/bad.txt", "--vocab-size", "300", "--repeats", "1"],
         write("bad.txt", INVALID_UTF8)),
]  # fmt: skip


def _ids_unique() -> None:
    seen = set()
    for case in CASES:
        assert case.id not in seen, f"duplicate case id {case.id}"
        seen.add(case.id)


_ids_unique()


# ------------------------------------------------------------------------------------ running a row


def _refuse_open(monkeypatch, paths: list[Path]) -> None:
    """Make ``paths`` unreadable for this process, as chmod 000 would for a non-root user (the
    suite runs as root here, and root reads anything)."""
    targets = {os.path.realpath(p) for p in paths}
    real_open, real_os_open = io.open, os.open

    def is_target(file) -> bool:
        return isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) in targets

    def guarded_open(file, *args, **kwargs):
        if is_target(file):
            raise PermissionError(13, "Permission denied", os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    def guarded_os_open(file, *args, **kwargs):
        if is_target(file):
            raise PermissionError(13, "Permission denied", os.fsdecode(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)


@pytest.mark.slow
@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fx, gptlab, workdir):
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root ignores file permissions (the monkeypatched 'unreadable' rows cover this)")
    argv = gptlab.materialize(case.argv, fx, workdir)
    if case.make:
        case.make(workdir)
    before = gptlab.snapshot(workdir)
    if case.isolate:
        outcome = gptlab.spawn(argv, workdir, timeout=case.timeout, stdin=case.stdin, memory_gb=6)
    else:
        with pytest.MonkeyPatch.context() as patch:
            if case.unreadable:
                _refuse_open(patch, _targets(workdir, case.unreadable))
            outcome = gptlab.run(argv, stdin=case.stdin)
    after = gptlab.snapshot(workdir)

    problems = gptlab.success_problems(outcome) if case.ok else gptlab.user_error_problems(outcome)
    if not case.ok and not problems:
        error_line = outcome.lines("err")[-1]
        flag = re.search(r"argument (--[\w-]+)", error_line)
        match = case.match or (OUT_UNUSABLE if case.fast else None)
        if re.search(PARSER_SLIPS, error_line):  # the row itself is wrong, not the verb
            problems.append("the row's command line does not parse: fix the row")
        elif flag and flag.group(1)[2:] not in case.id:
            problems.append(f"refused {flag.group(1)}, which this row does not test: fix the row")
        elif match and not re.search(match, error_line, re.I):
            problems.append(f"the error does not say why (expected /{match}/)")
    changed = gptlab.changed_files(before, after)
    if case.ok:
        changed = [path for path in changed if path in case.keep]
    if changed:
        problems.append(f"existing files changed or removed: {changed[:5]}")
    if case.fast:
        created = gptlab.created_paths(before, after)
        if created:
            problems.append(f"created {created[:5]}")
        if outcome.seconds > FAST_S:
            problems.append(f"took {outcome.seconds:.1f} s (an unusable --out is refused before any work)")
    assert not problems, f"{'; '.join(problems)} | {outcome.describe()}"
    if case.ok and case.check:
        case.check(workdir)
