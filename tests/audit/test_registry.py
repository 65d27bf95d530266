"""The audit registry (gptlab.audit.AUDITS): each audit's CLI flags come from its options dataclass
with the same defaults, ``quick()`` lowers only the sample counts, ``applies_to`` picks the audits
``audit all`` runs per kind of run, and a newly registered audit shows up in the CLI and in
``audit all`` with no other change."""

from __future__ import annotations

import argparse
import dataclasses
import json
import string

import pytest
import torch

from gptlab.audit import AUDITS, Audit
from gptlab.audit.common import AuditResult, Finding
from gptlab.cli import main
from gptlab.commands import audit as audit_cli
from gptlab.commands.options import dataclass_from_args
from gptlab.io import atomic_write_json, read_json
from gptlab.model import GPT, GPTConfig
from gptlab.options import option, positive_int, seed_type
from gptlab.run import Run
from gptlab.rundir import save_model
from gptlab.tokenizers import CharTokenizer
from gptlab.tokenizers.base import EOT

CLI_AUDITS = [name for name, audit in AUDITS.items() if audit.cli]

# what quick() may change, per audit: sample and resample counts only
QUICK_CHANGES = {
    "memorization": {"samples": 500, "windows": 50, "bootstrap": 200},
    "membership": {"windows": 100, "bootstrap": 200},
    "bias": {"n_perm": 2000, "n_boot": 200},
    "injection": {},
    "typos": {"texts": 50},
    "robustness": {"max_texts": 100, "greedy_texts": 20, "hotflip_texts": 20},
    "poisoning": {},
}


@pytest.mark.parametrize("name", CLI_AUDITS)
def test_cli_flags_default_to_the_options_dataclass(name):
    parser = argparse.ArgumentParser()
    audit_cli.add_arguments(parser, name)
    args = parser.parse_args(["--model", "RUN"])
    defaults = AUDITS[name].options()
    for field in dataclasses.fields(defaults):
        if field.metadata.get("cli", True):
            assert getattr(args, field.name) == getattr(defaults, field.name), field.name
    # and back: the parsed flags give exactly the default options
    assert dataclass_from_args(AUDITS[name].options, args) == defaults


@pytest.mark.parametrize("name", list(AUDITS))
def test_quick_lowers_only_the_sample_counts(name):
    options = AUDITS[name].options
    default, quick = dataclasses.asdict(options()), dataclasses.asdict(options.quick())
    changed = {k: quick[k] for k in default if quick[k] != default[k]}
    assert changed == QUICK_CHANGES[name]
    assert all(quick[k] < default[k] for k in changed)
    assert options.quick(seed=7).seed == 7 and options(seed=7).seed == 7


def _tokenizer() -> CharTokenizer:
    return CharTokenizer.train([string.ascii_letters + string.digits + " .,\n"], special_tokens=[EOT])


def _gpt(tok) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig.preset(
        "tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=32
    )
    return GPT(config).eval()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One real tiny run of each kind (what `gptlab train`, `finetune instruct`, `convert`,
    `quantize` and `finetune classify` leave behind, as far as Run.open reads it)."""
    from gptlab.finetune.classifier_run import CLASSIFIER_FORMAT, CLASSIFIER_JSON, CLASSIFIER_VERSION

    root, tok = tmp_path_factory.mktemp("kinds"), _tokenizer()
    gpt = _gpt(tok)
    made = {
        "lm": save_model(root / "lm", gpt, tok),
        "instruct": save_model(root / "instruct", gpt, tok, {"finetune": "instruct", "template": "chat"}),
        "hf-import": save_model(root / "converted", gpt, tok, {"converted_from": "gpt2"}),
        "quantized": save_model(root / "quantized", gpt, tok),
        "classifier": save_model(root / "clf", gpt, tok),
    }
    meta = read_json(made["quantized"] / "model.json", "model.json")
    atomic_write_json(made["quantized"] / "model.json", meta | {"quantization": {"bits": 8}})
    clf_meta = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "label_names": ["a", "b"]}
    atomic_write_json(made["classifier"] / CLASSIFIER_JSON, clf_meta | {"pooling": "last", "max_length": 32})
    return {kind: Run.open(path) for kind, path in made.items()}


def test_applies_to_picks_the_audits_of_each_kind_of_run(runs):
    from gptlab.audit.all import applicable

    assert {kind: run.kind for kind, run in runs.items()} == {kind: kind for kind in runs}
    language_model = ["memorization", "membership", "bias", "typos"]
    assert applicable(runs["lm"]) == language_model
    assert applicable(runs["hf-import"]) == language_model
    assert applicable(runs["quantized"]) == language_model
    assert applicable(runs["instruct"]) == ["memorization", "membership", "bias", "injection", "typos"]
    assert applicable(runs["classifier"]) == ["robustness"]
    assert not any(AUDITS["poisoning"].applies_to(run) for run in runs.values())  # an experiment


@dataclasses.dataclass
class CountOptions:
    tokens: int = option(5, "tokens to count", type=positive_int)
    seed: int = option(0, "unused", type=seed_type)

    @classmethod
    def quick(cls, **changes):
        return cls(**{"tokens": 2} | changes)


def count_parameters(run: Run, options: CountOptions) -> AuditResult:
    model, _ = run.load()
    return AuditResult(
        "count", [Finding("size", "parameters", float(model.num_params()))], {"tokens": options.tokens}
    )


def test_a_registered_audit_is_a_cli_verb_and_runs_in_audit_all(runs, monkeypatch, tmp_path, capsys):
    fake = Audit(CountOptions, count_parameters, lambda run: run.kind == "lm", "count the parameters")
    monkeypatch.setitem(AUDITS, "count", fake)
    assert main(["audit", "count", "--model", str(runs["lm"].path), "--tokens", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["details"] == {"tokens": 3}
    out = tmp_path / "report"
    assert main(["audit", "all", "--model", str(runs["lm"].path), "--out", str(out), "--quick"]) == 1
    combined = json.loads((out / "audit.json").read_text())
    count = next(a for a in combined["audits"] if a["audit"] == "count")
    assert count["details"] == {"tokens": 2}  # its quick() options
    assert (out / "count.json").is_file()
    # a run with no data splits: the audits that need them say why they did not run
    assert {"membership", "typos"} <= set(combined["skipped"])
