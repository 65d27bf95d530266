"""``analyze sampling``: N samples of a prompt at each temperature, top-k and top-p of a sweep,
with distinct-n, repetition, mean log-probability, entropies and nucleus size per setting
(gptlab/interpret/sampling.py), with an HTML page and a PNG of the curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gptlab.errors import GptlabError
from gptlab.interpret.analysis import AllOptions, AnalysisResult
from gptlab.options import float_list, int_list, option, positive_int, required, seed_type

if TYPE_CHECKING:
    from gptlab.interpret.sampling import SamplingSetting
    from gptlab.run import Run

HELP = "sample a prompt at several temperatures, top-k and top-p: diversity, log-prob, entropy, nucleus size"
FILES = ("sampling.html", "sampling.png")


@dataclass
class SamplingOptions:
    prompt: str = required("the prompt every sample continues")
    temperatures: list[float] = option(
        [0.1, 0.7, 1.2], "comma-separated temperatures, 0 = greedy", type=float_list
    )
    top_k: list[int] = option(
        [], "comma-separated top-k values, at temperature 1 (default none)", type=int_list
    )
    top_p: list[float] = option([0.5, 0.9], "comma-separated top-p values, at temperature 1", type=float_list)
    grid: bool = option(
        False, "every temperature x top-k x top-p combination instead of one factor at a time"
    )
    samples: int = option(8, "samples per setting, drawn as one batch", type=positive_int)
    max_new_tokens: int = option(40, "tokens per sample", type=positive_int)
    seed: int = option(0, "seed of every setting's generator", type=seed_type)

    def __post_init__(self) -> None:
        self.settings()  # GptlabError on a value no sampler takes, or an empty sweep
        if self.samples < 1:
            raise GptlabError(f"--samples must be >= 1, got {self.samples}")
        if self.max_new_tokens < 1:
            raise GptlabError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")

    def settings(self) -> list[SamplingSetting]:
        from gptlab.interpret.sampling import build_sweep

        return build_sweep(self.temperatures, self.top_k, self.top_p, grid=self.grid)


def run(run: Run, options: SamplingOptions) -> AnalysisResult:
    from gptlab.interpret.sampling import sampling_study

    model, tokenizer = run.load()
    result = sampling_study(
        model,
        tokenizer,
        options.prompt,
        options.settings(),
        options.samples,
        options.max_new_tokens,
        options.seed,
    )
    return AnalysisResult(
        result,
        table=lambda: _table(result),
        views=lambda: _views(result),
        summary="diversity, log-prob, entropy, nucleus size per setting",
    )


def _views(result: dict) -> dict[str, str | bytes]:
    from gptlab.interpret.sampling import plot_sampling, render_sampling_html

    png = plot_sampling(result)
    return {FILES[0]: render_sampling_html(result, png), FILES[1]: png}


def in_all(run: Run, options: AllOptions) -> SamplingOptions:
    return SamplingOptions(
        prompt=options.text, samples=options.samples, max_new_tokens=options.max_new_tokens
    )


def _table(result: dict) -> str:
    records = result["settings"]
    width = max(7, *(len(r["label"]) for r in records))
    lines = [
        f"{result['n_samples']} samples x {result['max_new_tokens']} tokens per setting, "
        f"seed {result['seed']}; log-prob under the model (T=1, unfiltered), entropies in nats, "
        "nucleus = tokens kept by the filters"
    ]
    columns = ("distinct-1", "distinct-2", "repetition", "mean logprob", "model H", "sampling H", "nucleus")
    lines.append(f"{'setting':<{width}}  " + "  ".join(f"{c:>12}" for c in columns))
    for r in records:
        values = (
            r["distinct_1"],
            r["distinct_2"],
            r["repetition_rate"],
            r["mean_logprob"],
            r["model_entropy"],
            r["sampling_entropy"],
        )
        lines.append(
            f"{r['label']:<{width}}  "
            + "  ".join(f"{v:12.4f}" for v in values)
            + f"  {r['nucleus_size']:12.1f}"
        )
    lines.append("\none sample per setting (the prompt, then the completion):")
    lines += [f"--- {r['label']} ---\n{result['prompt']}{r['samples'][0]}" for r in records]
    return "\n".join(lines)
