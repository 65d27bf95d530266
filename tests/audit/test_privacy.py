"""Privacy audits on tiny char models trained in fixtures: canary exposure (a canary repeated many
times is exposed, an unseen one is not), greedy reproduction, k-extractability, membership
inference (chance on a model that never saw the texts, far above chance on an over-fitted model,
clearly above a regularised one), the honesty of the out-of-fold attack classifier, and the CLIs."""

from __future__ import annotations

import argparse
import json
import math
import random

import numpy as np
import pytest
import torch

from gptlab.audit import memorization as M
from gptlab.audit.common import roc_auc
from gptlab.audit.membership import attack_classifier_scores, audit_membership, text_losses
from gptlab.data.shards import sample_windows
from gptlab.errors import GptlabError
from gptlab.eval.scoring import continuation_scores
from gptlab.model import GPT, GPTConfig
from gptlab.run import Run
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

NAMES = ["ann", "bob", "cy", "dee", "eve", "flo", "gus", "hal", "ivy", "jo", "kim", "lu"]
ITEMS = ["pears", "plums", "nuts", "figs", "eggs", "buns"]
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .\n-"


def random_lines(n: int, seed: int) -> list[str]:
    """Distinct short lines with random names, numbers and items: a member's specific content
    cannot be guessed from the distribution, only remembered."""
    rng = random.Random(seed)
    lines: dict[str, None] = {}  # distinct, in the order drawn (a set's order changes with PYTHONHASHSEED)
    while len(lines) < n:
        a, b = rng.sample(NAMES, 2)
        lines[f"{a} owes {b} {rng.randint(10, 99)} {rng.choice(ITEMS)}."] = None
    order = list(lines)
    rng.shuffle(order)
    return order


def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train(ALPHABET, special_tokens=[EOT])


def train_lm(tok, texts, steps, dropout=0.0, weight_decay=0.0, lr=1e-2, seed=0, block=32) -> GPT:
    """A tiny GPT trained on random windows of <eot> text <eot> text ... (what `prepare` writes)."""
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=tok.vocab_size, block_size=block, n_layer=2, n_head=4, n_embd=32, dropout=dropout
    )
    model = GPT(cfg)
    stream = []
    for t in texts:
        stream += [tok.eot_id] + tok.encode(t)
    data = torch.tensor(stream)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - block - 1, (16,), generator=gen)
        x = torch.stack([data[s : s + block] for s in starts])
        y = torch.stack([data[s + 1 : s + block + 1] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


pytestmark = pytest.mark.usefixtures("one_thread")


# --- canaries -----------------------------------------------------------------------------------

FORMAT = "the pin of ann is NNNN"  # 10^4 candidates: the exact rank is cheap


def test_fill_secret_and_secret_index_are_inverse_and_cover_the_space():
    fmt = "NN-N"
    secrets = [M.fill_secret(fmt, i) for i in range(1000)]
    assert len(set(secrets)) == 1000 and secrets[0] == "00-0" and secrets[123] == "12-3"
    assert all(M.secret_index(s, fmt) == i for i, s in enumerate(secrets))
    with pytest.raises(GptlabError, match="does not match"):
        M.secret_index("12+3", fmt)


def test_make_canaries_splits_prefix_and_secret():
    canaries = M.make_canaries(5, FORMAT, seed=3)
    assert len({c.secret for c in canaries}) == 5
    for c in canaries:
        assert c.prefix == "the pin of ann is " and c.canary == c.prefix + c.secret
        assert len(c.secret) == 4 and c.secret.isdigit() and c.space_size == 10**4
    assert M.make_canaries(5, FORMAT, seed=3) == canaries  # seeded
    with pytest.raises(GptlabError, match="no placeholder"):
        M.make_canaries(1, "no slots here")


def test_insert_canaries_at_line_starts_and_the_record_round_trips(tmp_path):
    text = "".join(f"line {i}\n" for i in range(100))
    canaries = M.make_canaries(3, FORMAT, seed=0)
    new, records = M.insert_canaries(text, canaries, [0, 2, 5], seed=1, span=0.5)
    lines = new.splitlines()
    assert [r.repeats for r in records] == [0, 2, 5]
    assert [lines.count(c.canary) for c in canaries] == [0, 2, 5]  # whole lines, exact copies
    assert [x for x in lines if not x.startswith("the pin")] == text.splitlines()  # original kept in order
    last = max(i for i, x in enumerate(lines) if x.startswith("the pin"))
    assert last - 7 < 50  # only in the first half of the original lines (span=0.5)
    path = M.write_canaries(tmp_path / "canaries.json", records)
    assert M.read_canaries(path) == records


@pytest.fixture(scope="module")
def canary_setup():
    """A corpus of 150 random lines with one canary 24 times and one once; a tiny model trained
    on it; the second canary of the three is a control never inserted."""
    tok = char_tokenizer()
    lines = random_lines(210, seed=5)
    corpus = "".join(x + "\n" for x in lines[:150])
    canaries = M.make_canaries(3, FORMAT, seed=11)
    text, records = M.insert_canaries(corpus, canaries, [24, 0, 1], seed=2)
    model = train_lm(tok, [text], steps=300)
    heldout = "".join(x + "\n" for x in lines[150:])
    return model, tok, records, text, heldout


@pytest.mark.slow
def test_continuation_scores_match_the_model_loss_row_by_row(canary_setup):
    """The batched, padded teacher-forced scores equal each row's own loss (model(x, y))."""
    model, tok, *_ = canary_setup
    rows = [tok.encode(t) for t in ["ann owes bob 12 figs.", "cy", "eve owes lu 99 nuts.\nflo owes"]]
    starts = [1, 1, 4]
    got = continuation_scores(
        model, [r[:s] for r, s in zip(rows, starts)], [r[s:] for r, s in zip(rows, starts)]
    )
    for row, start, value in zip(rows, [1, 1, 4], got):
        x, y = torch.tensor([row[:-1]]), torch.tensor([[-100] * (start - 1) + row[start:]])
        _, loss = model(x, y)
        assert value == pytest.approx(-loss.item() * (len(row) - start), rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_repeated_canary_is_exposed_and_the_unseen_one_is_not(canary_setup):
    model, tok, records, *_ = canary_setup
    rows = M.canary_exposures(model, tok, records)
    seen, unseen = rows[0], rows[1]
    assert seen["method"] == unseen["method"] == "exact"
    assert seen["max_exposure"] == pytest.approx(math.log2(10**4))
    assert seen["exposure"] > 10 and seen["rank"] <= 10  # near the top of 10^4 candidates
    assert unseen["exposure"] < 5  # chance level (a random candidate's exposure > 5 with p = 1/32)
    assert M.greedy_reproduces(model, tok, records)[:2] == [True, False]


@pytest.mark.slow
def test_sampled_exposure_agrees_with_the_exact_rank(canary_setup):
    model, tok, records, *_ = canary_setup
    exact = M.canary_exposures(model, tok, records[:2])
    sampled = M.canary_exposures(model, tok, records[:2], exact_max=100, samples=400, seed=0)
    assert all(r["method"].startswith("sampled") for r in sampled)
    # the exposed canary is beyond every sample: at least log2(K + 1) bits, extrapolated by the fit
    assert sampled[0]["method"] == "sampled+fit" and sampled[0]["exposure"] >= math.log2(401) - 1e-9
    # the unseen one sits inside the sampled range: the empirical rank is close to the exact one
    assert sampled[1]["exposure"] == pytest.approx(exact[1]["exposure"], abs=1.0)


def eot_stream(tok, texts) -> list[int]:
    return [i for t in texts for i in [tok.eot_id] + tok.encode(t)]


@pytest.mark.slow
def test_training_text_is_more_extractable_than_held_out_text(mia_setup):
    tok, members, nonmembers, overfit, _, _ = mia_setup
    train_seqs = sample_windows(eot_stream(tok, members), 60, 24, seed=0)
    held_seqs = sample_windows(eot_stream(tok, nonmembers), 60, 24, seed=0)
    train_hits = M.extractable(overfit, train_seqs, 16, 8)
    held_hits = M.extractable(overfit, held_seqs, 16, 8)
    assert train_hits.mean() > held_hits.mean() + 0.15
    # a hit is exactly what greedy decoding writes: the suffixes it cannot produce are never hits
    out = M.extractable(overfit, [s[:16] + [(t + 1) % 26 for t in s[16:]] for s in train_seqs], 16, 8)
    assert out.sum() == 0


@pytest.mark.slow
def test_audit_memorization_findings_and_plot(canary_setup, tmp_path):
    model, tok, records, text, heldout = canary_setup
    result = M.audit_memorization(
        model,
        tok,
        records,
        train_sequences=sample_windows(tok.encode(text), 40, 20, seed=0),
        heldout_sequences=sample_windows(tok.encode(heldout), 40, 20, seed=0),
        prefix_len=12,
        suffix_len=8,
        n_boot=100,
    )
    f = {x.metric: x for x in result.findings}
    assert f["max canary exposure (bits)"].verdict == "fail"
    assert f["canaries reproduced by greedy decoding"].value > 0
    assert f["mean exposure, unseen canaries (bits)"].value < 5
    train_rate, held_rate = f["8-extractable rate, train"].value, f["8-extractable rate, held-out"].value
    assert f["extractable gap (train - held-out)"].value == pytest.approx(train_rate - held_rate)
    assert result.details["extraction"]["train"]["n"] == 40
    assert set(result.details["exposure_by_repeats"]) == {"0", "1", "24"}
    saved = json.loads(result.save(tmp_path).read_text())
    assert saved["audit"] == "memorization" and (tmp_path / "exposure.png").read_bytes()[:4] == b"\x89PNG"


# --- membership inference -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mia_setup():
    """Members, non-members and a disjoint reference set of the same distribution; an over-fitted
    model (many steps, no dropout or weight decay), a regularised one (early-stopped, dropout,
    weight decay) and a reference model trained only on the disjoint set."""
    tok = char_tokenizer()
    lines = random_lines(160, seed=0)
    members, nonmembers, disjoint = lines[:48], lines[48:96], lines[96:]
    overfit = train_lm(tok, members, steps=400)
    regular = train_lm(tok, members, steps=30, dropout=0.2, weight_decay=0.1)
    reference = train_lm(tok, disjoint, steps=60, seed=1)
    return tok, members, nonmembers, overfit, regular, reference


@pytest.mark.slow
def test_membership_is_chance_on_a_model_that_never_saw_the_texts(mia_setup):
    tok, members, nonmembers, _, _, reference = mia_setup
    result = audit_membership(reference, tok, members, nonmembers, n_boot=200)
    f = {x.metric: x for x in result.findings}
    for name in ("loss", "zlib ratio"):
        lo, hi = f[f"ROC AUC ({name})"].interval
        assert lo < 0.5 < hi and abs(f[f"ROC AUC ({name})"].value - 0.5) < 0.15
    assert f["ROC AUC (attack classifier (OOF))"].value < 0.7
    assert "ROC AUC (reference-calibrated)" not in f  # no reference given


@pytest.mark.slow
def test_overfit_model_leaks_membership_far_more_than_a_regularised_one(mia_setup, tmp_path):
    tok, members, nonmembers, overfit, regular, reference = mia_setup
    kw = dict(reference=(reference, tok), n_boot=200)
    over_result = audit_membership(overfit, tok, members, nonmembers, **kw)
    over = {x.metric: x for x in over_result.findings}
    reg = {x.metric: x for x in audit_membership(regular, tok, members, nonmembers, **kw).findings}
    for name in ("loss", "zlib ratio", "reference-calibrated", "attack classifier (OOF)"):
        key = f"ROC AUC ({name})"
        assert over[key].value > 0.8 and over[key].verdict == "fail"
        assert over[key].value > reg[key].value + 0.15, key
    assert over["loss gap (non-members - members)"].value > reg["loss gap (non-members - members)"].value
    # 48 non-members cannot resolve a 1% FPR (one false positive is 2%): the TPR there is
    # inconclusive, whatever its value, and the precondition says why
    verdicts = {f.metric: j for f, j in zip(over_result.findings, over_result.judgements())}
    assert verdicts["TPR@1%FPR (loss)"].verdict == "inconclusive"
    assert verdicts["TPR@1%FPR (loss)"].reason.startswith(
        "precondition failed: non-members resolve 1% FPR (48 non"
    )
    assert verdicts["ROC AUC (loss)"].verdict == "fail"  # the AUC needs no such resolution


@pytest.mark.slow
def test_text_losses_score_every_token_after_eot(mia_setup):
    tok, members, _, overfit, _, _ = mia_setup
    loss, counts = text_losses(overfit, tok, members[:3])
    for text, value, n in zip(members[:3], loss, counts):
        ids = [tok.eot_id] + tok.encode(text)
        assert n == len(ids) - 1
        _, ref = overfit(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]))
        assert value == pytest.approx(ref.item(), rel=1e-4)


def test_attack_classifier_scores_are_out_of_fold():
    """On pure noise an honest (out-of-fold) attack is near chance, while scoring the rows the
    classifier was fitted on would look like a near-perfect attack."""
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)
    oof = roc_auc(attack_classifier_scores(X, y, folds=5, seed=0), y)
    assert 0.35 < oof < 0.65
    fitted = GradientBoostingClassifier(n_estimators=50, max_depth=2, min_samples_leaf=5, random_state=0)
    assert roc_auc(fitted.fit(X, y).predict_proba(X)[:, 1], y) > 0.9
    # and a real signal is found out of fold
    X[:, 0] += 1.5 * y
    assert roc_auc(attack_classifier_scores(X, y, folds=5, seed=0), y) > 0.75


# --- CLIs ---------------------------------------------------------------------------------------


def _cli(name, argv):
    from gptlab.commands import audit

    p = argparse.ArgumentParser()
    audit.add_arguments(p, name)
    return audit.run(p.parse_args(argv))


@pytest.fixture(scope="module")
def canary_run(canary_setup, tmp_path_factory):
    """A run directory of the canary model with its prepared data (train = the canaried corpus,
    val = held-out lines) and canaries.json beside it."""
    from gptlab.data.shards import prepare
    from gptlab.rundir import save_model

    model, tok, records, text, heldout = canary_setup
    run = save_model(tmp_path_factory.mktemp("mem") / "run", model, tok)
    prepare([text, heldout], tok, run / "data", val_fraction=0.3, progress=False)
    M.write_canaries(run / "canaries.json", records)
    return run


@pytest.mark.slow
def test_memorization_cli_finds_the_runs_canaries_and_data(canary_run, tmp_path, capsys):
    argv = ["--model", str(canary_run), "--windows", "20", "--prefix-len", "12", "--suffix-len", "8"]
    assert _cli("memorization", argv + ["--bootstrap", "50", "--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    metrics = {f["metric"]: f for f in out["findings"]}
    assert metrics["max canary exposure (bits)"]["verdict"] == "fail"
    assert "8-extractable rate, held-out" in metrics
    assert (tmp_path / "memorization.json").is_file() and (tmp_path / "exposure.png").is_file()


@pytest.mark.slow
def test_membership_cli_on_the_runs_splits_and_on_files(canary_run, mia_setup, tmp_path, capsys):
    base = ["--model", str(canary_run), "--bootstrap", "50", "--no-classifier"]
    assert _cli("membership", base + ["--windows", "30", "--window-tokens", "24"]) == 0
    table = capsys.readouterr().out
    assert "ROC AUC (loss)" in table and "classifier" not in table
    _, members, nonmembers, *_ = mia_setup
    (tmp_path / "m.txt").write_text("\n".join(members))
    (tmp_path / "n.txt").write_text("\n".join(nonmembers))
    files = ["--members", str(tmp_path / "m.txt"), "--nonmembers", str(tmp_path / "n.txt")]
    assert _cli("membership", base + files + ["--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["details"]["n_members"] == 48 and (tmp_path / "roc.png").is_file()
    with pytest.raises(GptlabError, match="both --members and --nonmembers"):
        _cli("membership", base + files[:2])


@pytest.mark.slow
def test_memorization_cli_inserts_canaries_trains_and_audits(tmp_path, capsys):
    """--corpus --insert: the canaried corpus and canaries.json are written, the copies stay out of
    the val split, a run is trained through gptlab.train, and a later audit finds the canaries
    from the run's config (data.input) alone."""
    from gptlab.data.shards import TokenDataset
    from gptlab.tokenizers import load_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(x + "\n" for x in random_lines(200, seed=3)))
    out = tmp_path / "canaried"
    tiny = [
        "data.tokenizer=char",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.n_head=2",
        "model.block_size=32",
    ]
    tiny += ["train.max_steps=20", "train.eval_every=20", "train.eval_batches=2", "train.sample_tokens=0"]
    tiny += ["train.progress=false", "train.device=cpu", "train.batch_size=8", "optim.warmup_steps=5"]
    argv = ["--corpus", str(corpus), "--insert", str(out), "--format", FORMAT, "--repeats", "0,8"]
    argv += [
        "--per-repeat",
        "1",
        "--windows",
        "10",
        "--prefix-len",
        "8",
        "--suffix-len",
        "8",
        "--bootstrap",
        "20",
    ]
    assert _cli("memorization", argv + tiny) == 0
    assert "max canary exposure (bits)" in capsys.readouterr().out
    records = M.read_canaries(out / "canaries.json")
    assert [r.repeats for r in records] == [0, 8]
    text = (out / "corpus.txt").read_text()
    assert text.count(records[1].canary) == 8 and records[0].canary not in text
    data = TokenDataset(out / "run" / "data", "val")
    val_text = load_tokenizer(data.tokenizer_path).decode(data.tokens.tolist())
    assert "the pin" not in val_text  # every copy is in the training split
    (out / "run" / "canaries.json").unlink()  # found again next to the corpus the run trained on
    assert M.find_canaries(Run.open(out / "run")) == out / "canaries.json"
    assert _cli("memorization", ["--model", str(out / "run"), "--windows", "0", "--bootstrap", "20"]) == 0


def test_secrets_the_tokenizer_cannot_encode_score_minus_infinity():
    """A char model that never saw '7' can never write it: such candidates rank last, and a
    canary with one is neither exposed nor reproduced."""
    tok = CharTokenizer.train(ALPHABET.replace("7", ""), special_tokens=[EOT])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    lp = M.secret_logprobs(model, tok, "the pin of ann is ", ["1234", "1274", "0000"])
    assert np.isneginf(lp[1]) and np.isfinite(lp[[0, 2]]).all()
    canary = M.Canary("the pin of ann is 77", "the pin of ann is ", "77", "the pin of ann is NN", 3)
    row = M.canary_exposures(model, tok, [canary])[0]
    assert row["rank"] == 82  # behind all 81 encodable candidates (the 19 others hold a 7)
    assert row["exposure"] == pytest.approx(math.log2(100 / 82))
    assert M.greedy_reproduces(model, tok, [canary]) == [False]
