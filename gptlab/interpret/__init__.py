"""Interpretability: attention weights and their statistics, attention rollout, the logit lens,
attributions, embeddings, a sampling study; and the registry of analyses ``gptlab analyze`` runs.

The maths (attention.py, lens.py, saliency.py, embeddings.py, sampling.py) takes a gptlab `GPT`
and token ids and returns tensors or plain dicts, so the same numbers feed tables, JSON and the
HTML views (views.py). Each analysis (analyses/<name>.py) is an options dataclass and
``run(run, options) -> AnalysisResult`` (analysis.py); ``ANALYSES`` below registers it, and the
CLI builds ``gptlab analyze <name>`` from the entry. docs/architecture.md shows how to add one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gptlab.interpret.analyses import attention, embeddings, lens, saliency, sampling
from gptlab.interpret.analysis import AllOptions, Analysis, AnalysisResult

if TYPE_CHECKING:
    from gptlab.run import Run

ANALYSES: dict[str, Analysis] = {
    "attention": Analysis(attention.AttentionOptions, attention.run, attention.HELP, attention.FILES, "Attention", attention.in_all, needs_attention=True),
    "lens": Analysis(lens.LensOptions, lens.run, lens.HELP, lens.FILES, "Logit lens", lens.in_all, needs_attention=True),
    "saliency": Analysis(saliency.SaliencyOptions, saliency.run, saliency.HELP, saliency.FILES, "Token attributions", saliency.in_all),
    "embeddings": Analysis(embeddings.EmbeddingsOptions, embeddings.run, embeddings.HELP, embeddings.FILES, "Embeddings", embeddings.in_all),
    "sampling": Analysis(sampling.SamplingOptions, sampling.run, sampling.HELP, sampling.FILES, "Sampling study", sampling.in_all),
}  # fmt: skip
INDEX_FILE = "index.html"


def all_analyses() -> dict[str, Analysis]:
    """The analyses ``analyze all`` runs, in registry order."""
    return {name: a for name, a in ANALYSES.items() if a.in_all is not None}


def all_files() -> list[str]:
    """Every file ``analyze all`` writes: each analysis's views, then the index."""
    return [name for a in all_analyses().values() for name in a.files] + [INDEX_FILE]


def run_all(run: Run, options: AllOptions) -> AnalysisResult:
    """Every analysis in ``all_analyses()`` on one text, each with its ``in_all`` options; the views are
    all their files and an index.html that links their pages. A recurrent model (``model.arch``
    lstm / gru) has no attention: the analyses that need it are left out, and the summary says so."""
    from gptlab.interpret.views import index_page

    arch = run.config.arch
    chosen = {n: a for n, a in all_analyses().items() if arch == "gpt" or not a.needs_attention}
    left_out = sorted(set(all_analyses()) - set(chosen))
    results = {name: (a, a.run(run, a.in_all(run, options))) for name, a in chosen.items()}
    note = (
        f"; left out: {', '.join(left_out)} (a recurrent {arch.upper()} has no attention)" if left_out else ""
    )

    def views() -> dict[str, str | bytes]:
        files: dict[str, str | bytes] = {}
        links = []
        for a, result in results.values():
            pages = result.views()
            links.append((next(iter(pages)), a.title, result.summary))
            files.update(pages)
        return {INDEX_FILE: index_page(f"Analysis of {run.path}", links), **files}

    return AnalysisResult(
        {"views": list(results), "left_out": left_out},
        table=lambda: f"{len(results)} views: {', '.join(results)}{note}",
        views=views,
        summary="every view for one text, with an index",
    )
