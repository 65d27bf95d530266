"""The audit plumbing: ROC/AUC/TPR and bootstrap intervals against scikit-learn, verdicts, the
combined report, and `gptlab audit all` on a tiny LM run and a tiny classifier run."""

from __future__ import annotations

import json
import random
import re
import string

import numpy as np
import pytest
import torch
from audit_checks import assert_rates_have_intervals
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from gptlab.audit.common import (
    AuditResult,
    Finding,
    Precondition,
    bootstrap_interval,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from gptlab.audit.report import render_report
from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.tokenizers import CharTokenizer
from gptlab.tokenizers.base import EOT


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_equal_scikit_learns_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 7, 300) + 0.8 * labels  # many ties, some signal
    fpr, tpr = roc_curve(scores, labels)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # TPR at FPR <= x: the best point of the curve left of x
    assert tpr_at_fpr(scores, labels, 0.1) == pytest.approx(float(sk_tpr[sk_fpr <= 0.1].max()))


def test_roc_rejects_bad_labels():
    with pytest.raises(GptlabError, match="both classes"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(GptlabError, match="same length"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


def test_bootstrap_interval_covers_the_statistic_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 400)
    lo, hi = bootstrap_interval(np.mean, x, n_boot=500, seed=3)
    assert lo < x.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.25)  # the normal-theory width
    assert bootstrap_interval(np.mean, x, n_boot=500, seed=3) == (lo, hi)
    y = np.r_[np.zeros(95), np.ones(5)].astype(int)  # rare positives: stratified keeps both classes
    s = rng.normal(size=100) + y
    lo, hi = bootstrap_interval(roc_auc, s, y, n_boot=200, stratify=y)
    assert 0 <= lo <= roc_auc(s, y) <= hi <= 1


def test_point_verdicts_follow_the_threshold_and_its_direction():
    assert Finding("t", "m", 0.7, threshold=0.6).judge("point").verdict == "fail"
    assert Finding("t", "m", 0.5, threshold=0.6).judge("point").verdict == "pass"
    assert Finding("t", "m", 0.5, threshold=0.6, higher_is_worse=False).judge("point").verdict == "fail"
    assert Finding("t", "m", 0.5).verdict == "info"


def test_report_lists_every_finding_and_is_self_contained():
    results = [
        AuditResult(
            "a",
            [Finding("x", "<b>m1</b>", 0.1, (0.07, 0.2), 0.05), Finding("x", "m2", 1.0),
             Finding("x", "m4", 0.1, (0.0, 0.2), 0.05, requires=("learned",))],
            preconditions=[Precondition("learned", False, "accuracy 0.4 [0.3, 0.5], not above 0.5")],
        ),
        AuditResult("b", [Finding("y", "m3", 0.3, threshold=0.5)], plots={"p.png": b"\x89PNG fake"}),
    ]  # fmt: skip
    page = render_report(results, skipped={"c": "no data"})
    summary = re.search(r'<table id="summary">(.*?)</table>', page, re.S).group(1)
    assert summary.count("<tr>") == 1 + 4
    assert "&lt;b&gt;m1" in page and "<b>m1</b>" not in page
    assert "'fail'>fail" in page and "'pass'>pass" in page and "'inconclusive'>inconclusive" in page
    assert "precondition failed: learned" in summary
    # the failed precondition is said before the summary table, not only in its row
    box = page.index('id="preconditions"')
    assert box < page.index('<table id="summary">') and "learned does not hold" in page[box:]
    assert "1 failed, 1 inconclusive" in page
    assert 'id="skipped"' in page and "no data" in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)


# ------------------------------------------------------------------------------------ audit all


def _tokenizer() -> CharTokenizer:
    return CharTokenizer.train([string.ascii_letters + string.digits + " .,:;'-\n"], special_tokens=[EOT])


def _tiny_gpt(tok, seed=0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.preset(
        "tiny", vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, block_size=64
    )
    return GPT(config).eval()


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A run directory with a (random) model and its prepared train/val splits."""
    from gptlab.data.shards import prepare
    from gptlab.rundir import save_model

    tok = _tokenizer()
    rng = random.Random(0)
    words = ["the", "nurse", "said", "that", "she", "he", "was", "late", "pilot", "and", "a", "cat"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(300))
    run = save_model(tmp_path_factory.mktemp("audit") / "lm", _tiny_gpt(tok), tok)
    prepare([text], tok, run / "data", val_fraction=0.3, progress=False)
    return run


@pytest.mark.slow
def test_audit_all_on_an_lm_run(lm_run, tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "all", "--model", str(lm_run), "--out", str(out), "--quick"]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    combined = json.loads((out / "audit.json").read_text())
    names = [a["audit"] for a in combined["audits"]]
    assert names == ["memorization", "membership", "bias", "typos"] and combined["skipped"] == {}
    for audit in combined["audits"]:  # each audit's own file, as `gptlab audit NAME --out` writes it
        assert json.loads((out / f"{audit['audit']}.json").read_text())["findings"] == audit["findings"]
        assert_rates_have_intervals(audit)
        assert combined["counts"][audit["audit"]] == audit["counts"]
        assert sum(audit["counts"].values()) == len(audit["findings"])
    membership = next(a for a in combined["audits"] if a["audit"] == "membership")
    auc = next(f for f in membership["findings"] if f["metric"] == "ROC AUC (loss)")
    assert 0 <= auc["interval"][0] <= auc["value"] <= auc["interval"][1] <= 1
    page = (out / "report.html").read_text()
    n_findings = sum(len(a["findings"]) for a in combined["audits"])
    summary = re.search(r'<table id="summary">(.*?)</table>', page, re.S).group(1)
    assert summary.count("<tr>") == 1 + n_findings
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_audit_all_says_which_audits_could_not_run(tmp_path, capsys):
    """A model with no data splits: membership and the typo audit need held-out text; they are
    listed as not run, with the reason, and the others still report. The exit status (1) says
    that not every audit that applies ran."""
    from gptlab.rundir import save_model

    tok = _tokenizer()
    run = save_model(tmp_path / "bare", _tiny_gpt(tok), tok)
    assert main(["audit", "all", "--model", str(run), "--out", str(tmp_path / "a"), "--quick"]) == 1
    combined = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert "membership" in combined["skipped"] and "bias" in [a["audit"] for a in combined["audits"]]
    assert 'id="skipped"' in (tmp_path / "a" / "report.html").read_text()
    assert "not run: membership:" in capsys.readouterr().err
    # a second run into the same folder would replace the report: refused unless --overwrite
    args = ["audit", "all", "--model", str(run), "--out", str(tmp_path / "a"), "--quick"]
    before = (tmp_path / "a" / "report.html").read_bytes()
    assert main(args) == 2
    assert "already holds" in capsys.readouterr().err
    assert (tmp_path / "a" / "report.html").read_bytes() == before


def test_audit_all_fails_with_the_load_error_when_the_model_cannot_be_loaded(tmp_path, capsys):
    from gptlab.rundir import save_model

    tok = _tokenizer()
    run = save_model(tmp_path / "broken", _tiny_gpt(tok), tok)
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "a"
    assert main(["audit", "all", "--model", str(run), "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model.safetensors" in err[0]
    assert not (out / "report.html").exists() and not (out / "audit.json").exists()


@pytest.mark.slow
def test_audit_all_on_a_classifier_run_runs_robustness(tmp_path, capsys):
    from gptlab.finetune.classifier_run import (
        CLASSIFIER_FORMAT,
        CLASSIFIER_JSON,
        CLASSIFIER_VERSION,
        HEAD_FILE,
    )
    from gptlab.io import atomic_write_json, save_safetensors
    from gptlab.model.heads import GPTClassifier
    from gptlab.rundir import save_model

    tok = _tokenizer()
    gpt = _tiny_gpt(tok)
    clf = GPTClassifier(gpt, 2)
    run = save_model(tmp_path / "clf", gpt, tok)
    save_safetensors({k: v.detach() for k, v in clf.head.state_dict().items()}, run / HEAD_FILE)
    meta = {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "label_names": ["ham", "spam"]}
    atomic_write_json(run / CLASSIFIER_JSON, meta | {"pooling": "last", "max_length": 64})
    rng = random.Random(1)
    rows = [
        {"text": "".join(rng.choice("abcxyz ") for _ in range(30)), "label": ["ham", "spam"][i % 2]}
        for i in range(40)
    ]
    (run / "test_split.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["audit", "all", "--model", str(run), "--out", str(tmp_path / "a"), "--quick"]
    assert main(args + ["--seed", "1"]) == 0
    combined = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert [a["audit"] for a in combined["audits"]] == ["robustness"]
    metrics = {f["metric"] for f in combined["audits"][0]["findings"]}
    assert {"clean accuracy", "HotFlip attack success rate"} <= metrics
    assert_rates_have_intervals(combined["audits"][0])
    # an untrained classifier on random texts is at chance: nothing an attack does to it is measurable
    robustness = combined["audits"][0]
    assert robustness["preconditions"][0]["name"] == "clean accuracy above chance"
    assert robustness["preconditions"][0]["holds"] is False
    asr = next(f for f in robustness["findings"] if f["metric"] == "HotFlip attack success rate")
    assert asr["verdict"] == "inconclusive" and asr["reason"].startswith(
        "precondition failed: clean accuracy"
    )
    assert combined["counts"]["robustness"]["inconclusive"] >= 1 + len(robustness["details"]["kinds"])
    out = tmp_path / "b"
    args = ["audit", "all", "--model", str(run), "--out", str(out), "--quick", "--seed", "1"]
    assert main(args + ["--fail-on", "inconclusive"]) == 3  # the gate: inconclusive is not a pass
    capsys.readouterr()
    code = main(args + ["--fail-on", "fail", "--overwrite", "--verdict", "point", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict_mode"] == "point" and doc["counts"]["robustness"]["inconclusive"] == 0
    assert doc["preconditions_failed"] == {"robustness": ["clean accuracy above chance"]}
    assert code == (3 if doc["counts"]["robustness"]["fail"] else 0)


def test_every_audit_is_a_cli_verb(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = capsys.readouterr().out
    for name in ("memorization", "membership", "injection", "robustness", "bias", "poisoning", "all"):
        assert re.search(rf"^\s+{name}\b", text, re.M), name


def test_poisoning_cli_needs_data_or_an_lm_payload(lm_run, tmp_path, capsys):
    assert main(["audit", "poisoning", "--model", str(lm_run)]) == 2
    assert "give --data FILE" in capsys.readouterr().err
    assert main(["audit", "poisoning", "--model", str(lm_run), "--lm-payload", "x y"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    args = ["audit", "poisoning", "--model", str(lm_run), "--lm-payload", "x y", "--out", str(tmp_path)]
    assert main(args) == 2  # a saved model with no training recipe
    assert "needs a run made by `gptlab train`" in capsys.readouterr().err
