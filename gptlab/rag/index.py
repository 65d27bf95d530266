"""A retrieval index: chunks, their dense vectors and BM25 postings, searched three ways.

On disk, a folder of three files (never pickle):
- ``index.json``: format version, the embedder's id and width, the chunking and BM25 settings,
  the BM25 vocabulary;
- ``chunks.jsonl``: one chunk a line, ``{"doc", "start", "text"}``, in index order;
- ``index.safetensors``: ``embeddings`` (N, dim) float32 unit vectors and the BM25 arrays.

Search modes: ``bm25``, ``dense`` (cosine), ``hybrid`` (reciprocal rank fusion of the two
rankings' top ``depth`` each). A query embedded by another embedder than the index's is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gptlab.errors import GptlabError
from gptlab.io import parse_json, read_json
from gptlab.rag.bm25 import BM25, K1, B, tokenize
from gptlab.rag.chunking import Chunk, read_chunks
from gptlab.rag.dense import Embedder, cosine_top_k
from gptlab.rag.fusion import RRF_K, reciprocal_rank_fusion

FORMAT = "gptlab-rag-index"
VERSION = 1
META, CHUNKS, TENSORS = "index.json", "chunks.jsonl", "index.safetensors"
MODES = ("hybrid", "bm25", "dense")
FUSION_DEPTH = 50  # each ranking's top 50 enter the fusion


@dataclass
class Hit:
    chunk: Chunk
    id: int  # the chunk's index in the index
    score: float  # the mode's score: RRF, BM25 or cosine
    bm25: float
    cosine: float

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            **self.chunk.to_dict(),
            "score": self.score,
            "bm25": self.bm25,
            "cosine": self.cosine,
        }


@dataclass
class RagIndex:
    chunks: list[Chunk]
    embeddings: torch.Tensor  # (N, dim) unit rows
    bm25: BM25
    embedder: str
    chunk_tokens: int
    overlap: int

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def check_embedder(self, embedder: Embedder) -> None:
        if embedder.id != self.embedder or embedder.dim != self.dim:
            raise GptlabError(
                f"this index was built with the embedder {self.embedder} ({self.dim} wide); "
                f"queries cannot be embedded with {embedder.id} ({embedder.dim} wide): "
                f"pass the index's embedder, or rebuild the index"
            )

    def search(self, query: str, embedder: Embedder | None, k: int = 4, mode: str = "hybrid") -> list[Hit]:
        """The top ``k`` chunks for ``query``; ``embedder`` may be None for ``mode="bm25"``."""
        if mode not in MODES:
            raise GptlabError(f"unknown search mode {mode!r}: choose one of {', '.join(MODES)}")
        if k < 1:
            raise GptlabError(f"k must be at least 1, got {k}")
        bm25 = self.bm25.scores(tokenize(query))
        cos = torch.zeros(len(self.chunks))
        if mode != "bm25":
            if embedder is None:
                raise GptlabError(f"search mode {mode!r} needs the index's embedder")
            self.check_embedder(embedder)
            q = embedder([query])[0]
            cos = self.embeddings @ q
        if mode == "bm25":
            top = torch.topk(bm25, min(k, len(bm25)))
            ranked = list(zip(top.indices.tolist(), top.values.tolist()))
        elif mode == "dense":
            values, indices = cosine_top_k(q, self.embeddings, k)
            ranked = list(zip(indices.tolist(), values.tolist()))
        else:
            depth = min(max(k, FUSION_DEPTH), len(self.chunks))
            by_bm25 = [i for i in torch.topk(bm25, depth).indices.tolist() if bm25[i] > 0]
            by_cos = torch.topk(cos, depth).indices.tolist()
            ranked = reciprocal_rank_fusion([by_bm25, by_cos], RRF_K)[:k]
        return [Hit(self.chunks[i], i, float(s), float(bm25[i]), float(cos[i])) for i, s in ranked]

    def save(self, folder: str | os.PathLike) -> None:
        """Write the three files into ``folder`` (which the caller claimed); index.json last, so
        an interrupted save leaves no folder that loads as an index."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "embedder": self.embedder,
            "dim": self.dim,
            "chunks": len(self.chunks),
            "chunk_tokens": self.chunk_tokens,
            "overlap": self.overlap,
            "bm25": {"variant": "lucene", "k1": self.bm25.k1, "b": self.bm25.b, "vocab": self.bm25.vocab},
            "fusion": {"method": "rrf", "k": RRF_K, "depth": FUSION_DEPTH},
        }
        tensors = {"embeddings": self.embeddings.contiguous(), **self.bm25.tensors()}
        save_file(tensors, str(folder / TENSORS))
        with open(folder / CHUNKS, "w", encoding="utf-8") as f:
            for chunk in self.chunks:
                f.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
        with open(folder / META, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False)


def build_index(
    docs: str | os.PathLike,
    embedder: Embedder,
    chunk_tokens: int = 128,
    overlap: int = 32,
    batch_size: int = 64,
    warn: Callable[[str], None] = lambda message: None,
    k1: float = K1,
    b: float = B,
) -> RagIndex:
    """Chunk, embed (in batches, as the chunks stream in) and BM25-index every document."""
    chunks: list[Chunk] = []
    vectors: list[torch.Tensor] = []
    pending: list[Chunk] = []

    def flush() -> None:
        if pending:
            vectors.append(embedder([c.text for c in pending]))
            chunks.extend(pending)
            pending.clear()

    for chunk in read_chunks(docs, chunk_tokens, overlap, warn):
        pending.append(chunk)
        if len(pending) == batch_size:
            flush()
    flush()
    if not chunks:
        raise GptlabError(f"{docs}: no text to index (the corpus is empty, or every file was skipped)")
    bm25 = BM25.build((tokenize(c.text) for c in chunks), k1, b)
    return RagIndex(chunks, torch.cat(vectors), bm25, embedder.id, chunk_tokens, overlap)


def load_index(folder: str | os.PathLike) -> RagIndex:
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise GptlabError(f"{folder} is not a retrieval index (no {META}; build one with `gptlab rag index`)")
    meta = read_json(meta_path, "retrieval index metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GptlabError(f"{meta_path}: not a gptlab retrieval index")
    if meta.get("version") != VERSION:
        raise GptlabError(
            f"{meta_path}: index format version {meta.get('version')}, this gptlab reads {VERSION}"
        )
    for name in (CHUNKS, TENSORS):
        if not (folder / name).is_file():
            raise GptlabError(f"{folder}: the index is incomplete ({name} is missing)")
    chunks = []
    with open(folder / CHUNKS, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            row = parse_json(line, f"{folder / CHUNKS}:{number}")
            try:
                chunks.append(Chunk(str(row["doc"]), int(row["start"]), str(row["text"])))
            except (KeyError, TypeError, ValueError):
                raise GptlabError(f"{folder / CHUNKS}:{number}: not a chunk row") from None
    tensors = load_file(str(folder / TENSORS))
    embeddings = tensors["embeddings"]
    if embeddings.shape != (len(chunks), meta["dim"]) or len(chunks) != meta["chunks"]:
        raise GptlabError(
            f"{folder}: the index is inconsistent ({len(chunks)} chunks, embeddings {tuple(embeddings.shape)}, "
            f"index.json says {meta['chunks']} x {meta['dim']})"
        )
    bm = meta["bm25"]
    bm25 = BM25.from_tensors(tensors, list(bm["vocab"]), float(bm["k1"]), float(bm["b"]))
    return RagIndex(
        chunks, embeddings, bm25, meta["embedder"], int(meta["chunk_tokens"]), int(meta["overlap"])
    )
