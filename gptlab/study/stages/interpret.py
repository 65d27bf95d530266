"""Stage ``interpret``: `analyze all` (gptlab.interpret.run_all: attention, logit lens, token
attributions, embeddings, the sampling study) on the study's probe texts, on the pretrained model
and on one fine-tuned model of the tasks stage (instruction, else translation, else summarisation:
a GPT, so the same analyses apply).

Every analysis's views are written into the stage folder, ``<model>/<text number>/`` with an
index.html per text; the report embeds each model's figures for the first text (the embedding
PCA and the sampling study) and a table per model and text: tokens, the mean next-token loss of
the model on the text, and the views written. The finding compares the two models' losses on the
probe texts (paired over texts, a normal 95% interval: none with one text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptlab.study import findings
from gptlab.study.stage import Section, Stage, StageContext, Table

FINETUNED = ("instruction", "translation", "summarisation")  # the first one the tasks stage has
FIGURES = {"embeddings_pca.png": "embeddings: PCA of token embeddings", "sampling.png": "the sampling study"}
DEFAULT_TEXTS = [
    "The cat sat on the mat because it was tired.",
    "Once upon a time, a small dog ran across the green field.",
]


@dataclass
class InterpretSection:
    texts: list[str] = field(default_factory=lambda: list(DEFAULT_TEXTS))
    samples: int = 6  # samples per setting in the sampling study
    max_new_tokens: int = 30


def run(ctx: StageContext) -> dict:
    from gptlab.interpret import run_all
    from gptlab.interpret.analysis import AllOptions
    from gptlab.run import Run

    section: InterpretSection = ctx.section
    if not section.texts:
        from gptlab.errors import GptlabError

        raise GptlabError("interpret.texts needs at least one probe text")
    models = {"base": ctx.study_dir / ctx.upstream["pretrain"]["result"]["run"]}
    done = ctx.upstream["tasks"]["result"]["tasks"]
    tuned = next((t for t in FINETUNED if t in done), None)
    if tuned:
        models[tuned] = ctx.upstream_dirs["tasks"] / done[tuned]["run"]
    out: dict[str, dict] = {}
    bar = ctx.bar(len(models) * len(section.texts), unit="text")
    for name, path in models.items():
        run = Run.open(path)
        records = []
        for i, text in enumerate(section.texts):
            folder = ctx.dir / name / str(i)
            result = run_all(
                run, AllOptions(text=text, samples=section.samples, max_new_tokens=section.max_new_tokens)
            )
            result.write(folder)
            bar.update(1)
            records.append({"text": text, "views": result.data["views"], "index": f"{name}/{i}/index.html"} | _loss(run, text, ctx.config.study.device))  # fmt: skip
        figures = [f"{name}/0/{f}" for f in FIGURES if (ctx.dir / name / "0" / f).is_file()]
        out[name] = {"run": "pretrain model" if name == "base" else f"tasks/{done[name]['run']}", "texts": records, "figures": figures}  # fmt: skip
    bar.close()
    result = {"models": out, "finetuned": tuned}
    if tuned:
        diffs = [t["loss"] - b["loss"] for t, b in zip(out[tuned]["texts"], out["base"]["texts"])]
        mean, interval = findings.mean_interval(diffs)
        result |= {"loss_diff": mean, "loss_diff_ci95": list(interval) if interval else None}
    return result


def _loss(run, text: str, device: str) -> dict:
    """The model's mean next-token loss (nats/token) on ``text`` (its last block_size + 1 tokens)."""
    import torch

    model, tokenizer = run.load(device=device)
    ids = tokenizer.encode(text)[-(model.config.block_size + 1) :]
    if len(ids) < 2:
        return {"tokens": len(ids), "loss": None}
    x = torch.tensor(ids, device=device)
    with torch.no_grad():
        logits, _ = model(x[None, :-1])
        loss = torch.nn.functional.cross_entropy(logits[0].float(), x[1:])
    return {"tokens": len(ids), "loss": float(loss)}


def report(result: dict, stage_dir: Path) -> Section:
    section = Section("Interpretability")
    rows = []
    for name, m in result["models"].items():
        section.method.append((f"{name} model", m["run"]))
        for i, t in enumerate(m["texts"]):
            rows.append([name, i, t["tokens"], t["loss"], ", ".join(t["views"]), t["index"]])
        section.figures += [(f, f"{name} model: {FIGURES[Path(f).name]}") for f in m["figures"]]
    texts = next(iter(result["models"].values()))["texts"]
    section.method += [(f"probe text {i}", t["text"]) for i, t in enumerate(texts)]
    section.tables.append(
        Table(
            "`analyze all` per model and probe text: tokens, the model's mean next-token loss (nats/token) "
            "on the text, the views written and their index page",
            ["model", "text", "tokens", "loss", "views", "index"],
            rows,
        )
    )
    tuned = result["finetuned"]
    if tuned:
        section.findings.append(
            findings.difference(
                "the next-token loss on the probe texts",
                f"the {tuned} model",
                "the base model",
                result["loss_diff"],
                result["loss_diff_ci95"],
                "nats/token",
            )
        )
    else:
        section.notes.append("The tasks stage fine-tuned no GPT (only a classifier): the base model alone.")
    return section


STAGE = Stage("interpret", "Interpretability", InterpretSection, run, report, needs=("pretrain", "tasks"))
