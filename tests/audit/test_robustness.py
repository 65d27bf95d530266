"""Robustness audit: the character perturbations do what they claim (seeded, property-tested),
HotFlip flips a tiny classifier that looks for one letter with about one token swap, noise and the
greedy attack hurt it, the LM scorer agrees with gptlab.eval.perplexity and a trained LM loses
bits per character under typos, augmentation keeps labels, adversarial training runs end to end,
and the CLI prints / saves the result."""

from __future__ import annotations

import argparse
import json
import random
import string
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_task import synthetic_rows as shared_rows

from gptlab.audit import perturb as P
from gptlab.audit import robustness as R
from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.rundir import save_model
from gptlab.tokenizers.base import EOT
from gptlab.tokenizers.char import CharTokenizer

texts_st = st.text(alphabet=string.ascii_letters + string.digits + " .,", min_size=0, max_size=60)
rng_st = st.integers(0, 2**32 - 1).map(random.Random)


# --- perturbations ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(texts_st, st.integers(0, 10), st.integers(0, 1000))
def test_swap_keeps_the_multiset_and_moves_only_adjacent_pairs(text, n, seed):
    out = P.swap(text, n, random.Random(seed))
    assert Counter(out) == Counter(text) and len(out) == len(text)
    diff = [i for i in range(len(text)) if out[i] != text[i]]
    assert len(diff) % 2 == 0 and len(diff) <= 2 * n
    for a, b in zip(diff[::2], diff[1::2]):  # disjoint adjacent transpositions
        assert b == a + 1 and (out[a], out[b]) == (text[b], text[a])


@settings(max_examples=60, deadline=None)
@given(texts_st.filter(bool), st.integers(0, 10), st.integers(0, 1000))
def test_delete_shortens_by_the_count_and_keeps_order(text, n, seed):
    out = P.delete(text, n, random.Random(seed))
    assert len(out) == len(text) - min(n, len(text) - 1) and out
    it = iter(text)
    assert all(ch in it for ch in out)  # out is a subsequence of text


@settings(max_examples=60, deadline=None)
@given(texts_st, st.integers(0, 10), st.integers(0, 1000))
def test_insert_lengthens_by_the_count_with_letters(text, n, seed):
    out = P.insert(text, n, random.Random(seed))
    assert len(out) == len(text) + n
    extra = Counter(out) - Counter(text)
    assert sum(extra.values()) == n and set(extra) <= set(P.INSERT_CHARS)
    it = iter(out)
    assert all(ch in it for ch in text)  # the original is a subsequence of out


@settings(max_examples=60, deadline=None)
@given(texts_st, st.integers(0, 10), st.integers(0, 1000))
def test_keyboard_replaces_with_qwerty_neighbours_of_the_same_case(text, n, seed):
    out = P.keyboard(text, n, random.Random(seed))
    assert len(out) == len(text)
    diff = [i for i in range(len(text)) if out[i] != text[i]]
    eligible = sum(ch.lower() in P.QWERTY_NEIGHBOURS for ch in text)
    assert len(diff) == min(n, eligible)  # neighbours are never the key itself
    for i in diff:
        assert out[i].lower() in P.QWERTY_NEIGHBOURS[text[i].lower()]
        assert out[i].isupper() == text[i].isupper()


@settings(max_examples=60, deadline=None)
@given(texts_st, st.integers(0, 10), st.integers(0, 1000))
def test_homoglyph_maps_to_the_listed_look_alikes(text, n, seed):
    out = P.homoglyph(text, n, random.Random(seed))
    diff = [i for i in range(len(text)) if out[i] != text[i]]
    assert len(out) == len(text) and len(diff) == min(n, sum(ch in P.HOMOGLYPHS for ch in text))
    assert all(out[i] in P.HOMOGLYPHS[text[i]] for i in diff)


def test_qwerty_table_is_symmetric_and_matches_the_keyboard():
    for key, near in P.QWERTY_NEIGHBOURS.items():
        assert key not in near
        assert all(key in P.QWERTY_NEIGHBOURS[k] for k in near), key
    assert P.QWERTY_NEIGHBOURS["a"] == set("qwsz")
    assert P.QWERTY_NEIGHBOURS["g"] == set("tyfhvb")
    assert P.QWERTY_NEIGHBOURS["p"] == set("0ol")
    assert P.QWERTY_NEIGHBOURS["m"] == set("njk")


@settings(max_examples=40, deadline=None)
@given(texts_st, st.sampled_from(P.KINDS), st.integers(0, 100))
def test_rate_zero_is_identity_and_a_seed_fixes_the_result(text, kind, seed):
    assert P.perturb(text, kind, 0.0, seed) == text
    assert P.perturb(text, kind, 0.3, seed) == P.perturb(text, kind, 0.3, seed)


def test_rate_is_edits_per_character_in_expectation_and_seeds_differ():
    text = "the quick brown fox jumps over the lazy dog " * 3
    outs = {P.perturb(text, "keyboard", 0.1, seed) for seed in range(20)}
    assert len(outs) > 15  # different seeds, different typos
    changed = [sum(a != b for a, b in zip(text, P.perturb(text, "keyboard", 0.1, s))) for s in range(200)]
    assert np.mean(changed) == pytest.approx(0.1 * len(text), rel=0.05)
    assert sum(P.n_edits(7, 0.1, random.Random(s)) for s in range(2000)) / 2000 == pytest.approx(
        0.7, abs=0.05
    )
    with pytest.raises(GptlabError, match="rate"):
        P.perturb(text, "swap", 1.5)
    with pytest.raises(GptlabError, match="choose from"):
        P.perturb(text, "typo", 0.1)


def test_alphabet_restricts_what_edits_introduce():
    alphabet = set("abcdo0")
    for seed in range(20):
        out = P.homoglyph("foo bar", 3, random.Random(seed), alphabet)
        assert set(out) - set("foo bar") <= {"0"}  # the Cyrillic/Greek o are not in the alphabet
        assert set(P.insert("ab", 4, random.Random(seed), alphabet)) <= alphabet
        assert set(P.keyboard("sss", 3, random.Random(seed), alphabet)) <= {"a", "d"}  # neighbours of s


# --- a tiny classifier that looks for a 'z' -----------------------------------------------------


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    return shared_rows(n, seed, min_len=4)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    tok = CharTokenizer.train(string.ascii_lowercase + " ", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=tok.vocab_size + 3, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    )
    return save_model(tmp_path_factory.mktemp("base") / "run", gpt, tok)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "task.tsv"
    path.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(240)))
    return path


def _options(base_run, data_file, out, epochs=10):
    from gptlab.finetune.classify import ClassifyOptions

    return ClassifyOptions(
        model=str(base_run),
        data=str(data_file),
        out=str(out),
        epochs=epochs,
        batch_size=16,
        lr=3e-3,
        device="cpu",
        prompting_shots=(),
        progress=False,
    )


@pytest.fixture(scope="module")
def clf_run(base_run, data_file, tmp_path_factory):
    from gptlab.finetune.classify import finetune_classifier

    result = finetune_classifier(_options(base_run, data_file, tmp_path_factory.mktemp("clf") / "run"))
    assert result.test.accuracy >= 0.95  # the attacks below need a classifier that works
    return result.out_dir


@pytest.fixture(scope="module")
def clf(clf_run):
    from gptlab.finetune.classifier_run import load_classifier

    return load_classifier(clf_run)


@pytest.mark.slow
def test_hotflip_flips_the_keyword_with_about_one_swap(clf):
    rows = synthetic_rows(40, seed=7)
    texts = [t for _, t in rows]
    labels = [clf.label_names.index(y) for y, _ in rows]
    outcomes = R.hotflip_attack(clf, texts, labels, budget=3, candidates=1)  # pure first-order HotFlip
    s = R.attack_summary(outcomes)
    assert s["correct_before"] >= 36 and s["success_rate"] >= 0.6 and s["mean_edits"] <= 1.5
    # a "calm" text turns "alarm" by writing one z: the gradient finds it every time, where a random
    # single flip would pick z 1 time in 26
    calm = [o for (y, _), o in zip(rows, outcomes) if y == "calm" and o.correct_before]
    assert all(o.success and o.edits == 1 and "z" in o.adversarial for o in calm)
    pred, _ = R.predict(clf, [o.adversarial for o in outcomes if o.success])
    gold = [y for y, o in zip(labels, outcomes) if o.success]
    assert (pred != np.array(gold)).all()  # the adversarial texts really are misclassified
    for text, o in zip(texts, outcomes):
        if o.success:  # flips = positions changed; only real characters (no <|endoftext|>, no padding ids)
            assert len(o.adversarial) == len(text)
            assert sum(a != b for a, b in zip(text, o.adversarial)) == o.edits
            assert set(o.adversarial) <= set(string.ascii_lowercase + " ")
    n_success = sum(o.success for o in outcomes)
    assert s["accuracy_under_attack"] == pytest.approx((s["correct_before"] - n_success) / len(texts))
    # evaluating more first-order candidates exactly can only help the greedy choice here
    wider = R.attack_summary(R.hotflip_attack(clf, texts, labels, budget=3, candidates=30))
    assert wider["success_rate"] >= s["success_rate"]


@pytest.mark.slow
def test_allowed_mask_excludes_special_and_padding_ids(clf):
    rows = clf.model.gpt.transformer.wte.weight.shape[0]
    mask = R.allowed_token_mask(clf.tokenizer, rows)
    assert rows == clf.tokenizer.vocab_size + 3
    assert mask[: len(clf.tokenizer.chars)].all() and not mask[len(clf.tokenizer.chars) :].any()


@pytest.mark.slow
def test_noise_and_greedy_attack_hurt_the_keyword_classifier(clf):
    rows = synthetic_rows(40, seed=3)
    texts = [t for _, t in rows]
    labels = [clf.label_names.index(y) for y, _ in rows]
    noise = R.noise_accuracy(clf, texts, labels, ["delete", "swap"], [0.5])
    clean = noise["delete"][0.0]
    assert clean.mean() >= 0.9
    assert noise["delete"][0.5].mean() < clean.mean()  # deleting half the letters loses many z's
    assert noise["swap"][0.5].mean() >= 0.9  # swaps keep the z: a keyword detector does not care
    outcomes = R.greedy_char_attack(clf, texts, labels, ["delete", "insert"], max_edits=3, candidates=8)
    s = R.attack_summary(outcomes)
    assert s["success_rate"] > 0.3 and 1 <= s["mean_edits"] <= 3
    again = R.greedy_char_attack(clf, texts, labels, ["delete", "insert"], max_edits=3, candidates=8)
    assert [o.adversarial for o in again] == [o.adversarial for o in outcomes]  # seeded
    for o, y in zip(outcomes, labels):
        if o.success:
            assert R.predict(clf, [o.adversarial])[0][0] != y


@pytest.mark.slow
def test_audit_result_findings_plots_and_verdicts(clf, clf_run, tmp_path):
    result = R.audit_robustness(
        clf_run,
        kinds=["delete", "swap"],
        rates=[0.1, 0.5],
        greedy_edits=2,
        greedy_texts=10,
        greedy_candidates=4,
        hotflip_budget=2,
        hotflip_texts=10,
        max_drop=0.05,
    )
    by_metric = {f.metric: f for f in result.findings}
    # the classifier learned its task (clean accuracy clearly above chance), so the verdicts stand
    assert [(p.name, p.holds) for p in result.preconditions] == [("clean accuracy above chance", True)]
    verdicts = {f.metric: j.verdict for f, j in zip(result.findings, result.judgements())}
    assert verdicts["accuracy drop, delete @ 0.5"] == "fail"
    assert by_metric["accuracy drop, delete @ 0.5"].requires == ("clean accuracy above chance",)
    clean = by_metric["clean accuracy"]
    assert clean.interval_kind == "wilson" and clean.interval[0] > result.details["chance"]
    assert by_metric["accuracy drop, swap @ 0.5"].value <= 0.05
    assert {"HotFlip attack success rate", "greedy char mean edits needed", "clean accuracy"} <= set(
        by_metric
    )
    lo, hi = by_metric["accuracy drop, delete @ 0.5"].interval
    assert lo <= by_metric["accuracy drop, delete @ 0.5"].value <= hi
    assert set(result.details["noise"]["delete"]) == {"0.0", "0.1", "0.5"}
    path = result.save(tmp_path)
    assert json.loads(path.read_text())["audit"] == "robustness"
    assert (tmp_path / "robustness_accuracy_vs_rate.png").read_bytes()[:4] == b"\x89PNG"


# --- the language model under typos -------------------------------------------------------------


def test_text_nll_matches_gptlab_perplexity(base_run):
    from gptlab.eval.perplexity import evaluate_text
    from gptlab.rundir import load_model

    gpt, tok = load_model(base_run)
    texts = ["abc dab", "hello world", "z"]
    got = R.text_nll(gpt, tok, texts, batch_size=2)
    for text, (nll, tokens, chars) in zip(texts, got):
        ref = evaluate_text(gpt, tok, text)
        assert tokens == ref.tokens and chars == len(text)
        assert nll / tokens == pytest.approx(ref.mean_nll, rel=1e-5)


@pytest.mark.slow
def test_a_trained_lm_loses_bits_per_char_under_typos():
    text = "the cat sat on the mat. " * 40
    tok = CharTokenizer.train(string.ascii_lowercase + " .", special_tokens=[EOT])
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    )
    data = torch.tensor(tok.encode(text))
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    for _ in range(60):
        starts = torch.randint(0, len(data) - 33, (16,))
        x = torch.stack([data[s : s + 32] for s in starts])
        y = torch.stack([data[s + 1 : s + 33] for s in starts])
        _, loss = gpt(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    probes = [text[i : i + 30] for i in range(0, 240, 24)]
    shift = R.lm_typo_shift(gpt, tok, probes, ["swap", "keyboard"], [0.2])
    assert shift["clean"]["bits_per_char"] < 1.5
    for key in ("swap@0.2", "keyboard@0.2"):
        s = shift["perturbed"][key]
        assert s["bits_per_char_shift"] > 0.5 and s["bits_per_char_shift_interval"][0] > 0
        assert s["bits_per_char"] == pytest.approx(shift["clean"]["bits_per_char"] + s["bits_per_char_shift"])


# --- adversarial training -----------------------------------------------------------------------


def test_augment_keeps_originals_and_labels_and_uses_every_kind():
    from gptlab.data.tasks import ClassificationData

    data = ClassificationData(
        ["hello world", "good morning", "spam offer now", "free cash"], [0, 0, 1, 1], ["ham", "spam"]
    )
    aug = R.augment(data, ["swap", "delete"], rate=0.3, copies=2, seed=1)
    n = len(data)
    assert len(aug) == 3 * n and aug.texts[:n] == data.texts and aug.labels == data.labels * 3
    copies = aug.texts[n:]
    assert all(c != data.texts[i % n] for i, c in enumerate(copies))
    # copy c of text i uses kinds[(i + c) % 2]: swap keeps the length, delete shortens
    for c in range(2):
        for i, t in enumerate(data.texts):
            out = copies[c * n + i]
            assert (len(out) == len(t)) == ((i + c) % 2 == 0)
    assert (
        R.augment(data, ["swap"], rate=0.3, copies=1, seed=1).texts
        == R.augment(data, ["swap"], 0.3, 1, 1).texts
    )


@pytest.mark.slow
def test_adversarial_training_end_to_end(base_run, data_file, tmp_path):
    result = R.adversarial_training(
        _options(base_run, data_file, tmp_path / "adv", epochs=4),
        ["delete", "swap"],
        rate=0.2,
        attack_rates=[0.3],
    )
    assert result["adversarial"]["train_texts"] == 2 * result["clean"]["train_texts"]
    train = [json.loads(x) for x in (tmp_path / "adv" / "train_clean.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (tmp_path / "adv" / "test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == 240 and len(test) == result["test_texts"] == 48  # 20% held out
    rows = synthetic_rows(240)
    assert Counter((r["label"], r["text"]) for r in train + test) == Counter(rows)  # a partition
    for name in ("clean", "adversarial"):
        assert (tmp_path / "adv" / name / "classifier.json").is_file()
        assert 0 <= result[name]["clean_accuracy"] <= 1
        assert set(result[name]["noise_accuracy"]) == {"delete", "swap"}
    assert result["clean_accuracy_lost"] == pytest.approx(
        result["clean"]["clean_accuracy"] - result["adversarial"]["clean_accuracy"]
    )


# --- CLI ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_json_and_saves(clf_run, tmp_path, capsys):
    from gptlab.commands.audit import add_arguments, run

    p = argparse.ArgumentParser()
    add_arguments(p, "robustness")
    args = p.parse_args(
        [
            "--model",
            str(clf_run),
            "--kinds",
            "delete,homoglyph",
            "--rates",
            "0.2",
            "--greedy-edits",
            "0",
            "--hotflip-budget",
            "1",
            "--hotflip-texts",
            "5",
            "--lm",
            str(clf_run),
            "--lm-texts",
            "5",
            "--json",
            "--out",
            str(tmp_path / "out"),
            "--seed",
            "3",
        ]
    )
    assert run(args) == 0
    got = json.loads(capsys.readouterr().out)
    metrics = {f["metric"] for f in got["findings"]}
    assert {
        "accuracy drop, delete @ 0.2",
        "bits/char shift, homoglyph @ 0.2",
        "HotFlip mean flips needed",
    } <= metrics
    assert "greedy char attack success rate" not in metrics
    assert (tmp_path / "out" / "robustness.json").is_file()
    args = p.parse_args(
        [
            "--model",
            str(clf_run),
            "--kinds",
            "swap",
            "--rates",
            "0.1",
            "--greedy-edits",
            "0",
            "--hotflip-budget",
            "0",
        ]
    )
    assert run(args) == 0
    assert "accuracy drop, swap @ 0.1" in capsys.readouterr().out
    with pytest.raises(GptlabError, match="choose from"):
        run(p.parse_args(["--model", str(clf_run), "--kinds", "typo"]))
