"""A sampling study: what temperature, top-k and top-p do to generated text, measured.

For one prompt, N samples are drawn at each setting of a sweep (by default one factor at a time:
each temperature without filtering, each top-k at temperature 1, each top-p at temperature 1; or
the full grid), and every step's distribution is recorded, so the usual "temperature 0.1 / 0.7 /
1.2" comparison becomes numbers instead of impressions:

- diversity: distinct-1 and distinct-2 across the N samples, and the mean repetition rate of
  word trigrams within a sample (gptlab/eval/diversity.py, on whitespace words);
- likelihood: the mean log-probability per token of the sampled tokens under the model's own
  distribution (temperature 1, no filtering: how probable the model finds what was sampled, the
  same yardstick for every setting), and under the sampling distribution actually drawn from;
- uncertainty: the next-token entropy (nats) of the model's distribution and of the sampling
  distribution after temperature and filtering, per step and on average;
- the nucleus size: how many tokens the filters keep at each step, i.e. the tokens with nonzero
  sampling probability. It is counted from the filtered logits (finite = kept), not from
  ``probs > 0``, so a float32 softmax that underflows a very unlikely token to 0.0 does not make
  it look filtered: without top-k/top-p the nucleus is the whole vocabulary at any temperature.
  ``exp(entropy)`` of the sampling distribution (the "effective size") is reported beside it,
  because that is what a temperature changes.

Decisions, so the numbers mean one thing:

- Temperature 0 is greedy decoding, as in gptlab.generate: the sampling distribution is the
  one-hot on the argmax, so its entropy is 0, its nucleus size 1 and the sampled token's
  log-probability under it 0 (top-k/top-p are ignored). The model's own entropy and log-prob
  are reported as for any other setting.
- The tokens come from gptlab.generate's own KV-cache loop (``decode_steps``) and its
  `Sampler` (`SamplingSetting.sampler`), through a `RecordingSampler` that keeps each step's
  logits for the statistics. So for the same seed the study draws exactly the tokens that
  ``generate(model, [prompt] * N, max_new_tokens, setting.sampler(), generator=seeded)`` draws
  (tested), and a prompt plus samples
  longer than the context slides it, as `generate` does.
- End-of-text is not special: every sample runs for exactly ``max_new_tokens`` tokens, so every
  per-step average is over all N samples. A sampled ``<|endoftext|>`` shows in the text.
- Seeding: each setting gets a fresh generator seeded with ``seed``, so a setting's samples do
  not depend on which other settings ran or in which order, and settings are compared on common
  random numbers (less noise between settings than independent seeds would give).
- The N samples of a setting are one batch (the same prompt N times, so no padding).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.eval.diversity import distinct_n, repetition_rate
from gptlab.generate import (
    GREEDY_BELOW,
    RecordingSampler,
    Sampler,
    decode_steps,
    encode_prompt,
    top_k_filter,
    top_p_filter,
)
from gptlab.model.gpt import GPT
from gptlab.model.modes import model_device

REPETITION_N = 3  # repetition rate over word trigrams, as the instruction-tuning evaluation reports it
SAMPLES_SHOWN = 3  # samples per setting on the HTML page
PLOT_ALT = "sampling entropy and nucleus size per step, distinct-2 and mean log-prob per setting"


def _fmt_number(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class SamplingSetting:
    """One point of the sweep. ``temperature`` 0 = greedy (top-k and top-p are then reset to off:
    they cannot change an argmax); ``top_k`` 0 = off; ``top_p`` 1 = off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise GptlabError(f"temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, (int, float)) or int(k) != k or k < 0:
            raise GptlabError(f"top-k must be an integer >= 0 (0 = no top-k filtering), got {k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            raise GptlabError(f"top-p must be in (0, 1] (1 = no top-p filtering), got {p!r}")
        object.__setattr__(self, "temperature", float(t))
        # greedy decoding ignores the filters, so greedy settings are all one setting (one row in a grid)
        object.__setattr__(self, "top_k", 0 if t == 0 else int(k))
        object.__setattr__(self, "top_p", 1.0 if t == 0 else float(p))

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW  # as the Sampler: logits / 1e-320 would be inf

    def sampler(self) -> Sampler:
        """The generation Sampler of this setting (0 = off becomes None = no limit)."""
        return Sampler(
            temperature=self.temperature,
            top_k=self.top_k or None,
            top_p=self.top_p if self.top_p < 1.0 else None,
        )

    @property
    def label(self) -> str:
        """ "T=0.7", "top-k=10", "top-p=0.9", or the non-default parts joined ("T=0.7, top-k=10")."""
        if self.greedy:
            return "T=0 (greedy)"
        parts = []
        if self.top_k:
            parts.append(f"top-k={self.top_k}")
        if self.top_p < 1.0:
            parts.append(f"top-p={_fmt_number(self.top_p)}")
        if self.temperature != 1.0 or not parts:
            parts.insert(0, f"T={_fmt_number(self.temperature)}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
        }


def build_sweep(
    temperatures: Sequence[float] = (0.1, 0.7, 1.2),
    top_ks: Sequence[int] = (),
    top_ps: Sequence[float] = (0.5, 0.9),
    grid: bool = False,
) -> list[SamplingSetting]:
    """The settings to compare. One factor at a time (default): each temperature with no
    filtering, then each top-k at temperature 1, then each top-p at temperature 1. ``grid``:
    every (temperature, top-k, top-p) combination, an empty list standing for "off" (T=1 for an
    empty temperature list). Duplicates are dropped, order kept; GptlabError on invalid values or
    an empty sweep."""
    if grid:
        combos = itertools.product(temperatures or [1.0], top_ks or [0], top_ps or [1.0])
        settings = [SamplingSetting(t, k, p) for t, k, p in combos]
    else:
        settings = (
            [SamplingSetting(temperature=t) for t in temperatures]
            + [SamplingSetting(top_k=k) for k in top_ks]
            + [SamplingSetting(top_p=p) for p in top_ps]
        )
    unique = list(dict.fromkeys(settings))
    if not unique:
        raise GptlabError("the sampling sweep is empty: give at least one temperature, top-k or top-p")
    return unique


def sampling_logits(logits: torch.Tensor, setting: SamplingSetting) -> torch.Tensor:
    """The logits (B, V) actually sampled from: float32 logits / T, then top-k, then top-p (the
    order and the filters of gptlab.generate.Sampler); filtered tokens are -inf. Greedy (T=0):
    0 at each row's argmax, -inf elsewhere (a one-hot distribution)."""
    logits = logits.float()
    if setting.greedy:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.argmax(-1, keepdim=True), True)
        return torch.zeros_like(logits).masked_fill(~keep, float("-inf"))
    top = logits.amax(dim=-1, keepdim=True)  # shifted as the Sampler does, so nothing overflows
    logits = torch.where(logits == top, 0.0, logits - top) / setting.temperature
    if setting.top_k:
        logits = top_k_filter(logits, setting.top_k)
    if setting.top_p < 1.0:
        logits = top_p_filter(logits, setting.top_p)
    return logits


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row (B, V) of log-probabilities (-inf entries count 0) -> (B,)."""
    return torch.special.entr(log_probs.exp()).sum(-1)


@torch.no_grad()
def sample_steps(
    model: GPT,
    prompt_ids: Sequence[int],
    setting: SamplingSetting,
    n_samples: int,
    max_new_tokens: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Draw ``n_samples`` continuations of ``prompt_ids`` as one batch with the KV cache; return
    (N, n) tensors per step: ``tokens``, ``model_logprob`` (log p of the token under the model,
    T=1, unfiltered), ``sampling_logprob`` (under the sampling distribution), ``model_entropy``,
    ``sampling_entropy`` (nats), ``nucleus`` (tokens kept by the filters) and ``effective``
    (exp of the sampling entropy)."""
    prompt = list(prompt_ids)
    if not prompt:
        raise GptlabError("cannot sample from an empty prompt: give at least one token")
    if n_samples < 1:
        raise GptlabError(f"the number of samples must be >= 1, got {n_samples}")
    if max_new_tokens < 1:
        raise GptlabError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    sampler = RecordingSampler(setting.sampler())
    batch = torch.arange(n_samples, device=device)
    names = ("tokens", "model_logprob", "sampling_logprob", "model_entropy", "sampling_entropy", "nucleus")
    steps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    rows = [prompt] * n_samples
    for next_ids in decode_steps(model, rows, max_new_tokens, sampler, None, generator):  # (N,)
        logits = sampler.logits  # (N, V): what this step's token was drawn from
        model_lp = logits.float().log_softmax(-1)  # (N, V): the model's own distribution
        sampling_lp = sampling_logits(logits, setting).log_softmax(-1)  # (N, V), -inf = filtered out
        steps["tokens"].append(next_ids)
        steps["model_logprob"].append(model_lp[batch, next_ids])
        steps["sampling_logprob"].append(sampling_lp[batch, next_ids])
        steps["model_entropy"].append(_entropy(model_lp))
        steps["sampling_entropy"].append(_entropy(sampling_lp))
        steps["nucleus"].append(torch.isfinite(sampling_lp).sum(-1))
    out = {name: torch.stack(values, dim=1).cpu() for name, values in steps.items()}  # each (N, n)
    out["effective"] = out["sampling_entropy"].exp()
    return out


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean())


def _per_step(x: torch.Tensor) -> list[float]:
    """(N, n) -> the n per-step means over the samples."""
    return x.double().mean(dim=0).tolist()


def sampling_study(
    model: GPT,
    tokenizer,
    prompt: str,
    settings: Sequence[SamplingSetting],
    n_samples: int = 8,
    max_new_tokens: int = 40,
    seed: int = 0,
) -> dict:
    """Sample ``n_samples`` continuations of ``prompt`` at each setting and measure them (see the
    module docstring). Returns a JSON-serialisable dict: ``prompt``, ``n_samples``,
    ``max_new_tokens``, ``seed``, ``vocab_size``, ``repetition_n`` and ``settings``, one record per
    setting with its ``label``/``temperature``/``top_k``/``top_p``, ``samples`` (completion texts,
    without the prompt), ``token_ids``, ``distinct_1``, ``distinct_2`` (over the N samples),
    ``repetition_rate`` (mean over samples, word trigrams), ``mean_logprob`` (per sampled token,
    under the model's unmodified distribution: temperature 1, no filtering),
    ``mean_sampling_logprob`` (under the distribution sampled from), ``model_entropy``,
    ``sampling_entropy`` (nats), ``nucleus_size``, ``nucleus_size_max``, ``effective_size``
    (means over samples and steps) and ``per_step`` lists of the last five (means over samples)."""
    if not settings:
        raise GptlabError("no sampling settings to study")
    prompt_ids = encode_prompt(tokenizer, prompt)
    records = []
    for setting in settings:
        s = sample_steps(model, prompt_ids, setting, n_samples, max_new_tokens, seed)
        token_ids = s["tokens"].tolist()
        texts = [decode_padded(tokenizer, ids) for ids in token_ids]
        records.append(
            {
                **setting.to_dict(),
                "samples": texts,
                "token_ids": token_ids,
                "distinct_1": distinct_n(texts, 1),
                "distinct_2": distinct_n(texts, 2),
                "repetition_rate": sum(repetition_rate(t, REPETITION_N) for t in texts) / len(texts),
                "mean_logprob": _mean(s["model_logprob"]),
                "mean_sampling_logprob": _mean(s["sampling_logprob"]),
                "model_entropy": _mean(s["model_entropy"]),
                "sampling_entropy": _mean(s["sampling_entropy"]),
                "nucleus_size": _mean(s["nucleus"]),
                "nucleus_size_max": int(s["nucleus"].max()),
                "effective_size": _mean(s["effective"]),
                "per_step": {
                    "model_entropy": _per_step(s["model_entropy"]),
                    "sampling_entropy": _per_step(s["sampling_entropy"]),
                    "nucleus_size": _per_step(s["nucleus"]),
                    "effective_size": _per_step(s["effective"]),
                    "model_logprob": _per_step(s["model_logprob"]),
                },
            }
        )
    return {
        "prompt": prompt,
        "n_samples": n_samples,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "vocab_size": model.config.vocab_size,
        "repetition_n": REPETITION_N,
        "settings": records,
    }


# ------------------------------------------------------------------------------------------- views


def plot_sampling(result: dict) -> bytes:
    """PNG bytes, three panels: sampling entropy per step, nucleus size per step (log scale: from
    1 for greedy to the vocabulary without filtering), and distinct-2 beside the mean log-prob."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = result["settings"]
    fig, (ax_h, ax_n, ax_d) = plt.subplots(1, 3, figsize=(14, 4.2), dpi=100)
    for r in records:
        steps = range(1, len(r["per_step"]["sampling_entropy"]) + 1)
        ax_h.plot(steps, r["per_step"]["sampling_entropy"], label=r["label"], linewidth=1.3)
        ax_n.plot(steps, r["per_step"]["nucleus_size"], label=r["label"], linewidth=1.3)
    ax_h.set_title("sampling entropy per step")
    ax_h.set_xlabel("generated token")
    ax_h.set_ylabel("entropy (nats)")
    ax_n.set_title("nucleus size per step (tokens kept)")
    ax_n.set_xlabel("generated token")
    ax_n.set_ylabel("tokens (mean over samples)")
    ax_n.set_yscale("log")
    for ax in (ax_h, ax_n):
        ax.grid(alpha=0.3)
    ax_h.legend(fontsize=8)

    labels = [r["label"] for r in records]
    x = range(len(records))
    ax_d.bar(x, [r["distinct_2"] for r in records], color="tab:blue", alpha=0.75)
    ax_d.set_ylabel("distinct-2", color="tab:blue")
    ax_d.set_ylim(0, 1.05)
    ax_d.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=8)
    ax_lp = ax_d.twinx()
    ax_lp.plot(list(x), [r["mean_logprob"] for r in records], "o-", color="tab:red")
    ax_lp.set_ylabel("mean log-prob per token (model, T=1)", color="tab:red")
    ax_d.set_title("diversity vs likelihood")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


METRIC_COLUMNS = (
    ("distinct_1", "distinct-1"),
    ("distinct_2", "distinct-2"),
    ("repetition_rate", "repetition"),
    ("mean_logprob", "mean logprob"),
    ("mean_sampling_logprob", "sampling logprob"),
    ("model_entropy", "model entropy"),
    ("sampling_entropy", "sampling entropy"),
    ("nucleus_size", "nucleus size"),
    ("effective_size", "exp(entropy)"),
)


def render_sampling_html(result: dict, png: bytes, title: str = "gptlab sampling study") -> str:
    """A self-contained HTML page: the metrics table (one row per setting), the plots (a data:
    URI) and the first few samples of each setting, every text escaped."""
    from gptlab.report import format_value, html_page, image, table

    records = result["settings"]
    head = "".join(f"<th>{html.escape(name)}</th>" for _, name in METRIC_COLUMNS)
    rows = "".join(
        f"<tr><td>{html.escape(r['label'])}</td>"
        + "".join(f"<td>{html.escape(format_value(r[key]))}</td>" for key, _ in METRIC_COLUMNS)
        + "</tr>"
        for r in records
    )
    about = table(
        [
            ("prompt", result["prompt"]),
            ("samples per setting", result["n_samples"]),
            ("new tokens per sample", result["max_new_tokens"]),
            ("seed (every setting)", result["seed"]),
            ("vocabulary", result["vocab_size"]),
        ]
    )
    notes = (
        "<p>distinct-n: distinct word n-grams / all n-grams over the samples of a setting; repetition: "
        f"share of a sample's word {result['repetition_n']}-grams seen earlier in it (mean over samples). "
        "Mean logprob: log-probability per sampled token under the model's own distribution (temperature 1, "
        "no filtering); sampling logprob: under the distribution sampled from. Entropies in nats, averaged "
        "over steps and samples. Nucleus size: tokens left with nonzero probability by top-k/top-p (the "
        "whole vocabulary without filtering; 1 for greedy, T=0). exp(entropy): the effective number of "
        "choices.</p>"
    )
    samples = "".join(
        f"<h3>{html.escape(r['label'])}</h3>"
        + "".join(
            f"<pre>{html.escape(result['prompt'])}<b>{html.escape(text)}</b></pre>"
            for text in r["samples"][:SAMPLES_SHOWN]
        )
        for r in records
    )
    body = (
        f"<h2>Setup</h2>{about}"
        f'<section id="metrics"><h2>Metrics</h2><table><tr><th>setting</th>{head}</tr>{rows}</table>{notes}'
        "</section>"
        f'<section id="plots"><h2>Plots</h2>{image(png, PLOT_ALT)}</section>'
        f'<section id="samples"><h2>Samples (prompt, then <b>completion</b>)</h2>{samples}</section>'
    )
    return html_page(title, body)


def decode_padded(tokenizer, ids: list[int]) -> str:
    """Text of ids from a model that may be padded wider than its tokenizer (e.g. to a multiple
    of 64): ids past the tokenizer's vocabulary (untrained rows a sampler can still draw) show as
    <id> instead of failing; runs of ordinary ids are decoded together."""
    if all(i < tokenizer.vocab_size for i in ids):
        return tokenizer.decode(ids)
    parts, run = [], []
    for i in ids:
        if i < tokenizer.vocab_size:
            run.append(i)
            continue
        if run:
            parts.append(tokenizer.decode(run))
            run = []
        parts.append(f"<{i}>")
    if run:
        parts.append(tokenizer.decode(run))
    return "".join(parts)
