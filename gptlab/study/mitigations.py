"""The mitigation experiments of the study's ``defences`` stage besides DP-SGD (gptlab.study.dp_curve):
each trains the unmitigated and the mitigated model the same way and measures the attack the
mitigation targets on both. They are thin compositions of gptlab.audit's experiments; every
function returns a JSON-ready dict.

- `adversarial`: a classifier fine-tuned from the study's model on clean vs typo-augmented data
  (gptlab.audit.robustness.adversarial_training): accuracy under random typos and under HotFlip.
- `cda`: the study's model against the same recipe trained on the counterfactually augmented corpus
  (gptlab.audit.bias.cda_experiment): the bias gap on the built-in probe pairs.
- `injection`: the steps of examples/injection-lab.sh (the probe-tasks instruction suite, a BPE
  tokenizer with the chat tokens, a small GPT pretrained on the suite's text, instruction
  fine-tuning), then the injection audit with the input guard and the injection-aware fine-tune.
- `poisoning`: a classifier fine-tuned on backdoor-poisoned data, the spectral-signature detector
  run on its representations, the flagged rows removed and the classifier trained again.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.errors import GptlabError
from gptlab.study.findings import mean_interval, newcombe_interval


def rate(k: int, n: int) -> dict[str, Any]:
    from gptlab.audit.common import wilson_interval

    iv = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": list(iv) if iv else None}


def labelled_subset(
    path: str, text_column: str, label_column: str, max_texts: int, out: Path, seed: int, model: str
) -> tuple[Path, list[str], int]:
    """At most ``max_texts`` rows of a labelled file (a seeded random subset of the rows the model's
    tokenizer can encode: a char tokenizer knows only its corpus's characters), as OUT as JSONL with
    ``text`` and ``label``; returns the file, the label names and the rows left out as unencodable."""
    from gptlab.audit.robustness import tokenizer_alphabet
    from gptlab.data.tasks import load_classification
    from gptlab.io import atomic_write_text
    from gptlab.run import Run

    def column(c: str) -> str | int:
        return int(c) if c.isdigit() else c

    data = load_classification(path, column(text_column), column(label_column))
    alphabet = tokenizer_alphabet(Run.open(model).tokenizer)
    usable = [i for i, t in enumerate(data.texts) if alphabet is None or set(t) <= alphabet]
    if len(usable) < 10:
        raise GptlabError(
            f"{path}: only {len(usable)} of {len(data.texts)} texts can be encoded by the tokenizer of {model}"
        )
    order = list(usable)
    random.Random(seed).shuffle(order)
    keep = sorted(order[:max_texts])
    lines = [
        json.dumps({"text": data.texts[i], "label": data.label_names[data.labels[i]]}, ensure_ascii=False)
        for i in keep
    ]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out, list(data.label_names), len(data.texts) - len(usable)


def _classify_options(model: str, data: Path, out: Path, labels: list[str], settings: dict):
    from gptlab.finetune.classify import ClassifyOptions

    return ClassifyOptions(
        model=model, data=str(data), out=str(out), text_column="text", label_column="label", labels=labels,
        prompting_shots=(), progress=False, **settings,
    )  # fmt: skip


def adversarial(
    model: str, data: Path, labels: list[str], out: Path, settings: dict, adv_rate: float, hotflip_budget: int
) -> dict[str, Any]:
    """Clean vs adversarially trained classifier: accuracy under random typos (all kinds, rate
    ``adv_rate``) and under HotFlip, with Wilson intervals, and the differences."""
    from gptlab.audit.robustness import adversarial_training

    options = _classify_options(model, data, out, labels, settings)
    r = adversarial_training(options, rate=adv_rate, attack_rates=(adv_rate,), hotflip_budget=hotflip_budget)
    n_noise = r["test_texts"] * len(r["kinds"])  # every test text once per perturbation kind
    rows = {}
    for name in ("clean", "adversarial"):
        e = r[name]
        k = round(e["mean_noise_accuracy"] * n_noise)
        rows[name] = {
            "clean_accuracy": rate(round(e["clean_accuracy"] * r["test_texts"]), r["test_texts"]),
            "typo_accuracy": rate(k, n_noise),
        }
        if "hotflip" in e:
            h = e["hotflip"]
            rows[name]["hotflip_accuracy"] = rate(h["correct_after"], h["texts"])
    result: dict[str, Any] = {"test_texts": r["test_texts"], "kinds": r["kinds"], "rate": adv_rate,
                              "hotflip_budget": hotflip_budget, "models": rows}  # fmt: skip
    gain = r["noise_accuracy_gained_interval"]
    result["typo_accuracy_gain"] = {
        "value": r["noise_accuracy_gained"],
        "ci95": list(gain) if gain else None,
        "method": "paired bootstrap over the same perturbed test texts",
    }
    if hotflip_budget:
        before, after = rows["clean"]["hotflip_accuracy"], rows["adversarial"]["hotflip_accuracy"]
        d, iv = newcombe_interval(after["k"], after["n"], before["k"], before["n"])  # after - before
        result["hotflip_accuracy_gain"] = {
            "value": d,
            "ci95": list(iv),
            "method": "Newcombe (Wilson) difference",
        }
    return result


def cda(
    run: str, out: Path, pairs: str, seed: int, n_boot: int, min_pairs: int, progress: bool
) -> dict[str, Any]:
    """The study's model (before) against the same recipe on the CDA-augmented corpus (after): the
    mean bias gap (log p(stereotyped) - log p(anti-stereotyped)) per pair, and its paired change."""
    from gptlab.audit.bias import builtin_pairs, cda_experiment
    from gptlab.run import Run

    config = Run.open(run).train_config
    config = replace(config, train=replace(config.train, progress=progress))
    r = cda_experiment(
        config,
        out,
        builtin_pairs(pairs),
        baseline=run,
        seed=seed,
        n_boot=n_boot,
        n_perm=2000,
        min_pairs=min_pairs,
    )
    before, after = r.details["before"], r.details["after"]
    gb = np.array([p["gap"] for p in before["pairs"]])
    ga = np.array([p["gap"] for p in after["pairs"]])
    change, change_iv = mean_interval(list(ga - gb))
    abs_change, abs_iv = mean_interval(list(np.abs(ga) - np.abs(gb)))
    return {
        "pairs": pairs,
        "n_pairs": len(gb),
        "corpus_lines": {"before": r.details["cda"]["lines_before"], "after": r.details["cda"]["lines_after"]},
        "before": {"mean_gap": before["mean_gap"], "ci95": before["interval"], "mean_abs_gap": float(np.abs(gb).mean()),
                   "p_value": before["p_value"]},
        "after": {"mean_gap": after["mean_gap"], "ci95": after["interval"], "mean_abs_gap": float(np.abs(ga).mean()),
                  "p_value": after["p_value"]},
        "gap_change": {"value": change, "ci95": list(change_iv) if change_iv else None},
        "abs_gap_change": {"value": abs_change, "ci95": list(abs_iv) if abs_iv else None},
        "preconditions": [p.to_dict() for p in r.preconditions],
    }  # fmt: skip


def injection(out: Path, s, seed: int, device: str, progress: bool) -> dict[str, Any]:
    """examples/injection-lab.sh's steps into OUT, then the injection audit with the guard and the
    training-time defence; ``s`` is the stage section (its injection_* settings)."""
    from gptlab.audit import injection as audit
    from gptlab.config import check_values, load_config
    from gptlab.data.pairs import field_texts
    from gptlab.data.probe_tasks import instruction_suite
    from gptlab.finetune.instruct import InstructOptions, finetune_instruct
    from gptlab.io import atomic_write_json, atomic_write_text
    from gptlab.run import Run
    from gptlab.tokenizers import BPETokenizer
    from gptlab.train import train

    out.mkdir(parents=True, exist_ok=True)
    suite = out / "probe-tasks.json"
    atomic_write_json(suite, instruction_suite("probe-tasks", s.injection_suite, seed))
    text = out / "text.txt"
    atomic_write_text(text, "\n".join(field_texts(suite, ["instruction", "input", "output"])) + "\n")
    tokenizer = BPETokenizer.train(
        [text.read_text(encoding="utf-8")],
        vocab_size=s.injection_vocab,
        special_tokens=["<|endoftext|>", "<|user|>", "<|assistant|>"],
        verbose=False,
    )
    tokenizer.save(out / "tokenizer.json")
    overrides = [f"data.input={json.dumps([str(text)])}", f"data.tokenizer={json.dumps(str(out / 'tokenizer.json'))}",
                 "data.val_fraction=0.02", "optim.lr=2e-3", "optim.min_lr=2e-4", "train.sample_tokens=0",
                 "train.max_minutes=0", *s.injection_set]  # fmt: skip
    config = load_config("tiny-cpu", overrides)
    config.train.out_dir, config.train.progress = str(out / "base"), progress
    check_values(config)
    trained = train(config)
    if trained.stop_reason in ("interrupted", "terminated"):
        raise KeyboardInterrupt
    tuned = finetune_instruct(
        InstructOptions(
            model=str(out / "base"), data=str(suite), out=str(out / "plain"), template="chat", mask_prompt=True,
            lr=2e-3, epochs=s.injection_epochs, batch_size=16, max_new_tokens=24, max_test_examples=20,
            compare_base=False, val_fraction=0.05, test_fraction=0.02, seed=seed, progress=False, device=device,
        )
    )  # fmt: skip
    options = audit.InjectionOptions(
        examples=s.injection_probe_examples, max_new_tokens=32, guard=True, defence=str(out / "defence"),
        defence_examples=s.injection_defence_examples, epochs=2, lr=1e-3, seed=seed, device=device,
    )  # fmt: skip
    result = audit.run(Run.open(out / "plain"), options).to_dict()
    d = result["details"]
    conditions = {
        cond: {
            "clean_accuracy": c["clean_accuracy"],
            "twin_accuracy": c["twin_accuracy"],
            "injection_overall": c["injection_overall"],
            "success_given_clean_correct": {
                f: v["success_given_clean_correct"] for f, v in c["families"].items() if f not in ("clean", "clean_secret")
            },
            "skipped": c["skipped"],
        }
        for cond, c in d["conditions"].items()
    }  # fmt: skip
    return {
        "suite_examples": s.injection_suite,
        "pretrain_steps": trained.step,
        "instruct": {"epochs": s.injection_epochs, "test_scores": _jsonable(tuned.scores)},
        "probes": d["n_probes"],
        "conditions": conditions,
        "comparisons": d["comparisons"],
        "guard_holdout": d["guard_holdout"],
        "preconditions": result["preconditions"],
        "findings": [{k: f.get(k) for k in ("metric", "value", "interval", "threshold", "verdict", "reason")}
                     for f in result["findings"]],
        "counts": result["counts"],
    }  # fmt: skip


def _jsonable(value: Any) -> Any:
    from gptlab.audit.common import to_jsonable

    return json.loads(json.dumps(value, default=to_jsonable)) if value is not None else None


def poisoning(
    model: str,
    data: Path,
    labels: list[str],
    out: Path,
    settings: dict,
    poison_rate: float,
    trigger: str,
    multiplier: float,
    seed: int,
) -> dict[str, Any]:
    """Backdoor success (the trigger sends non-target test texts to the target label) of a
    classifier trained on poisoned data, before and after removing the rows the spectral-signature
    detector flags; with Wilson intervals and the paired change over the same attack texts."""
    from gptlab.audit.poisoning import classifier_features, detect_poison, insert_trigger, poison_dataset
    from gptlab.data.tasks import load_classification, stratified_split
    from gptlab.finetune.classifier_run import load_classifier
    from gptlab.finetune.classify import finetune_classifier
    from gptlab.io import atomic_write_text

    labelled = load_classification(data, "text", "label", labels)
    target_id, target = 0, labels[0]
    train_part, _, test = stratified_split(labelled, 0.0, 0.2, seed)
    rows = [(t, labels[y]) for t, y in zip(train_part.texts, train_part.labels)]
    poisoned_rows, poisoned = poison_dataset(rows, trigger, target, poison_rate, seed)
    rng = random.Random(seed + 1)
    attack = [insert_trigger(t, trigger, rng) for t, y in zip(test.texts, test.labels) if y != target_id]
    test_y = np.asarray(test.labels)

    def fit(name: str, train_rows: list[tuple[str, str]]):
        path = out / f"{name}.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in train_rows))
        finetune_classifier(_classify_options(model, path, out / name, labels, settings))
        clf = load_classifier(out / name, device=settings.get("device", "cpu"))
        clean = clf.predict_proba(test.texts).argmax(-1).numpy() == test_y
        hit = clf.predict_proba(attack).argmax(-1).numpy() == target_id
        return clf, clean, hit

    clf, clean_before, hit_before = fit("poisoned", poisoned_rows)
    label_ids = [labels.index(y) for _, y in poisoned_rows]
    features = classifier_features(clf, [t for t, _ in poisoned_rows])
    det = detect_poison(features, label_ids, poisoned, target_id, multiplier=multiplier)
    flagged = set(int(i) for i in det.flagged)
    kept = [r for i, r in enumerate(poisoned_rows) if i not in flagged]
    _, clean_after, hit_after = fit("filtered", kept)
    change, change_iv = mean_interval(list(hit_after.astype(float) - hit_before.astype(float)))
    return {
        "trigger": trigger,
        "target_label": target,
        "poison_rate": poison_rate,
        "train_rows": len(rows),
        "poisoned_rows": len(poisoned),
        "attack_texts": len(attack),
        "detector": {"flagged": len(flagged), "removed_poison": len(flagged & set(poisoned)),
                     "recall": det.recall, "precision": det.precision, "multiplier": multiplier,
                     "eps": det.eps},  # fmt: skip
        "before": {"asr": rate(int(hit_before.sum()), len(attack)),
                   "clean_accuracy": rate(int(clean_before.sum()), len(test_y))},
        "after": {"asr": rate(int(hit_after.sum()), len(attack)),
                  "clean_accuracy": rate(int(clean_after.sum()), len(test_y)), "train_rows": len(kept)},
        "asr_change": {"value": change, "ci95": list(change_iv) if change_iv else None,
                       "method": "paired over the same attack texts, normal interval"},
    }  # fmt: skip
