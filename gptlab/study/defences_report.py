"""The ``defences`` stage's part of the study report: one function per experiment adding its
tables, figure, notes and findings to the stage's `Section`. Every number comes from the stage's
result.json; every direction is claimed by gptlab.study.findings (only when the interval excludes
zero)."""

from __future__ import annotations

from gptlab.study import findings
from gptlab.study.findings import fmt
from gptlab.study.stage import Section, Table


def cell(entry: dict | None, key: str = "rate") -> str:
    """'value [lo, hi]' of a {rate|value, ci95} entry, formatted as the report formats numbers."""
    if entry is None or entry.get(key) is None:
        return ""
    iv = entry.get("ci95", entry.get("interval"))  # study results say ci95, audit proportions interval
    return f"{fmt(entry[key])} [{fmt(iv[0])}, {fmt(iv[1])}]" if iv else fmt(entry[key])


def dp(r: dict, section: Section) -> None:
    from gptlab.study.dp_curve import group_note

    rows = []
    for row in r["rows"]:
        privacy = row["privacy"] or {}
        rows.append(
            [
                row["label"], privacy.get("noise_multiplier"), row["steps"], row["val_perplexity"],
                cell({"value": row["perplexity_change_pct"], "ci95": row["perplexity_change_pct_ci95"]}, "value"),
                cell({"value": row["membership_auc"], "ci95": row["membership_auc_ci95"]}, "value"),
                cell({"value": row["membership_auc_change"], "ci95": row["membership_auc_change_ci95"]}, "value"),
            ]
        )  # fmt: skip
    section.tables.append(
        Table(
            f"DP-SGD: utility and membership inference (loss attack, {r['membership_texts']['members']} members, "
            f"{r['membership_texts']['nonmembers']} non-members); changes against epsilon=inf, 95% CI",
            ["epsilon", "noise multiplier", "steps", "val perplexity", "perplexity change (%)", "membership AUC",
             "AUC change"],
            rows,
        )
    )  # fmt: skip
    exposure_rows = []
    for row in r["rows"]:
        for e in row["exposure"]:
            exposure_rows.append(
                [
                    row["label"], "controls (0)" if e["repeats"] == 0 else e["repeats"],
                    "" if e["group_epsilon"] is None else e["group_epsilon"], e["canaries"],
                    cell({"value": e["exposure"], "ci95": e["exposure_ci95"]}, "value"), e["exposure_max"],
                    cell({"value": e.get("change"), "ci95": e.get("change_ci95")}, "value"),
                ]
            )  # fmt: skip
    section.tables.append(
        Table(
            f"DP-SGD: canary exposure (bits, of at most {fmt(r['max_exposure'])}) per repetition count, with the "
            "group-privacy bound r*epsilon that DP-SGD gives r copies",
            ["epsilon", "repeats r", "group bound r*epsilon", "canaries", "mean exposure", "max exposure",
             "change vs epsilon=inf"],
            exposure_rows,
        )
    )  # fmt: skip
    section.notes.append(
        "Membership inference: members are windows of the train split, non-members windows of the val split, "
        "which is the tail of the corpus; where that tail differs in kind from the rest (a corpus of several "
        "files), the AUC also measures that difference, in every run alike."
    )
    section.figures.append(
        (r["figure"], "privacy-utility curve: validation perplexity against exposure and AUC")
    )
    for row in r["rows"]:
        if row["loss_change"] is None:
            continue
        who = f"DP-SGD at epsilon={row['label']}"
        section.findings.append(
            findings.difference("validation perplexity", who, "the non-private run", row["perplexity_change_pct"],
                                row["perplexity_change_pct_ci95"], "%")
        )  # fmt: skip
        section.findings.append(
            findings.difference("membership AUC (loss attack)", who, "the non-private run",
                                row["membership_auc_change"], row["membership_auc_change_ci95"])
        )  # fmt: skip
        for e in row["exposure"]:
            if e["repeats"] == 0:
                continue
            section.findings.append(
                findings.difference(f"the exposure of canaries inserted {e['repeats']} times", who,
                                    "the non-private run", e["change"], e["change_ci95"], "bits")
            )  # fmt: skip
            note = group_note(row["label"], e)
            if note:
                section.findings.append(note)
                section.notes.append(note)


def adversarial(r: dict, section: Section) -> None:
    names = {"clean": "clean training", "adversarial": "adversarial training"}
    rows = [
        [names[k], cell(m["clean_accuracy"]), cell(m["typo_accuracy"]), cell(m.get("hotflip_accuracy"))]
        for k, m in r["models"].items()
    ]
    section.tables.append(
        Table(
            f"Adversarial training: accuracy on {r['test_texts']} held-out texts, clean, under random typos "
            f"({', '.join(r['kinds'])} at {fmt(r['rate'])} edits/char) and under HotFlip ({r['hotflip_budget']} "
            "flips); Wilson 95% CI",
            ["classifier", "clean accuracy", "typo accuracy", "HotFlip accuracy"],
            rows,
        )
    )
    section.notes.append(
        "The typo accuracy counts each test text once per perturbation kind: its Wilson interval treats the "
        "copies as independent; the difference's interval is a paired bootstrap over the texts."
    )
    g = r["typo_accuracy_gain"]
    section.findings.append(
        sentence(
            findings.difference(
                "accuracy under typos", "adversarial training", "clean training", g["value"], g["ci95"]
            )
        )
    )
    if "hotflip_accuracy_gain" in r:
        h = r["hotflip_accuracy_gain"]
        section.findings.append(
            sentence(findings.difference("accuracy under HotFlip", "adversarial training", "clean training",
                                         h["value"], h["ci95"]))
        )  # fmt: skip


def cda(r: dict, section: Section) -> None:
    rows = [
        [label, cell({"value": m["mean_gap"], "ci95": m["ci95"]}, "value"), m["mean_abs_gap"], m["p_value"]]
        for label, m in (("before (the study's model)", r["before"]), ("after CDA", r["after"]))
    ]
    section.tables.append(
        Table(
            f"CDA: bias gap over {r['n_pairs']} built-in {r['pairs']} pairs (log p(stereotyped) - log "
            f"p(anti-stereotyped), nats; bootstrap 95% CI); corpus lines {r['corpus_lines']['before']} -> "
            f"{r['corpus_lines']['after']}",
            ["model", "mean gap", "mean |gap|", "sign-flip p"],
            rows,
        )
    )
    for p in r["preconditions"]:
        if not p["holds"]:
            section.notes.append(
                f"CDA precondition failed ({p['name']}): {p['detail']}; read the gaps as inconclusive."
            )
    for what, key in (
        ("the mean |bias gap| per pair", "abs_gap_change"),
        ("the mean bias gap", "gap_change"),
    ):
        c = r[key]
        section.findings.append(
            findings.difference(what, "CDA", "the study's model", c["value"], c["ci95"], "nats")
        )


MITIGATION = {"guard vs model": ("the input guard", "the unguarded model"),
              "defended vs clean_ft": ("injection-aware fine-tuning", "the clean fine-tune")}  # fmt: skip


def sentence(text: str) -> str:
    """A findings sentence starting with a capital (its subject may come first)."""
    return text[:1].upper() + text[1:]


def negated(value: float, interval) -> tuple[float, list[float] | None]:
    """-value and the interval of -X (0.0 added so that a zero prints as 0, not -0)."""
    return 0.0 - value, [0.0 - interval[1], 0.0 - interval[0]] if interval else None


def injection(r: dict, section: Section) -> None:
    rows = [
        [
            cond,
            cell(c["clean_accuracy"]),
            cell(c["twin_accuracy"]),
            cell(c["injection_overall"]),
            c["skipped"],
        ]
        for cond, c in r["conditions"].items()
    ]
    section.tables.append(
        Table(
            f"Prompt injection: {r['probes']} probes per condition (the injection-lab instruction model, "
            f"{r['suite_examples']} probe-tasks examples); Wilson 95% CI",
            [
                "condition",
                "clean accuracy",
                "clean-twin accuracy",
                "injection success (all probes)",
                "skipped",
            ],
            rows,
        )
    )
    comp_rows = []
    for name, comp in r["comparisons"].items():
        cost = comp["clean_accuracy_cost"]
        comp_rows.append([name, "clean accuracy cost", cost["n"], cell(cost, "value")])
        for family, c in comp["success_reduction"].items():
            comp_rows.append([name, f"{family}: success reduction", c["n"], cell(c, "value")])
    section.tables.append(
        Table(
            "Prompt injection, before - after each mitigation (paired over the same probes, bootstrap 95% CI)",
            ["comparison", "what", "probes", "before - after"],
            comp_rows,
        )
    )
    section.tables.append(
        Table(
            "Prompt injection audit findings and verdicts (inconclusive: a precondition failed)",
            ["metric", "value", "interval", "verdict"],
            [
                [f["metric"], f["value"], findings.fmt_interval(f["interval"]), f["verdict"]]
                for f in r["findings"]
            ],
        )
    )
    failed = [p for p in r["preconditions"] if not p["holds"]]
    for p in failed:
        text = (
            f"Injection audit precondition failed ({p['name']}): {p['detail']}. The verdicts that need it are "
            "inconclusive; the paired before/after differences are over all probes."
        )
        section.notes.append(text)
        section.findings.append(text)
    for name, comp in r["comparisons"].items():
        who, ref = MITIGATION.get(name, (name, "the reference"))
        for family, c in comp["success_reduction"].items():
            if c["n"] < 2:
                continue
            value, iv = negated(c["value"], c["interval"])  # after - before: "lowered" = fewer successes
            section.findings.append(
                sentence(findings.difference(f"{family} attack success", who, ref, value, iv))
            )


def poisoning(r: dict, section: Section) -> None:
    d = r["detector"]
    rows = [
        ["poisoned training set", r["train_rows"], cell(r["before"]["asr"]), cell(r["before"]["clean_accuracy"])],
        ["after removing flagged rows", r["after"]["train_rows"], cell(r["after"]["asr"]),
         cell(r["after"]["clean_accuracy"])],
    ]  # fmt: skip
    section.tables.append(
        Table(
            f"Backdoor (trigger {r['trigger']!r} -> {r['target_label']!r}, {r['poisoned_rows']} of {r['train_rows']} "
            f"rows poisoned, rate {fmt(r['poison_rate'])}): attack success on {r['attack_texts']} non-target texts; "
            "Wilson 95% CI",
            ["classifier trained on", "rows", "attack success rate", "clean accuracy"],
            rows,
        )
    )
    section.notes.append(
        f"The spectral-signature detector flagged {d['flagged']} rows, {d['removed_poison']} of them poisoned "
        f"(recall {fmt(d['recall'])}, precision {fmt(d['precision'])}); it was told the poisoned share of the "
        f"target class (eps {fmt(d['eps'])}), as in Tran et al.'s evaluation."
    )
    c = r["asr_change"]
    section.findings.append(
        sentence(findings.difference("backdoor attack success", "removing the detector's flagged rows",
                                     "training on the poisoned data", c["value"], c["ci95"]))
    )  # fmt: skip
