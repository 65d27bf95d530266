"""Okapi BM25, Lucene's variant (Kamphuis et al., ECIR 2020, "Which BM25 do you mean?"):

    score(q, d) = sum over query terms t (repeats counted) of
                  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

N documents (chunks here), df(t) of them hold t, |d| tokens in d, avgdl the mean |d|.
- k1 (default 1.5) is term-frequency saturation: the tf part tends to 1 as tf grows, reaching
  half of that at tf = k1 (for an average-length document); k1 = 0 ignores tf altogether.
- b (default 0.75) is length normalisation: b = 1 divides tf by the relative length fully, b = 0
  ignores length.
Lucene's idf is never negative (a term in every document still scores a little), unlike
Robertson's original. The defaults and the formula are `bm25s`'s ``method="lucene"``, which the
tests check score for score.

Tokens: lower-cased runs of word characters (``\\w+``), the same for documents and queries.
The postings are term-major (CSR: for term t, the documents and counts at ptr[t]:ptr[t+1]), so a
query touches only the postings of its own terms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError

K1, B = 1.5, 0.75
_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass
class BM25:
    vocab: list[str]
    ptr: torch.Tensor  # (V + 1,) int64: term t's postings are at ptr[t]:ptr[t + 1]
    docs: torch.Tensor  # (P,) int64: document index of each posting
    tf: torch.Tensor  # (P,) float32: count of the term in that document
    lengths: torch.Tensor  # (N,) float32: tokens per document
    k1: float = K1
    b: float = B

    def __post_init__(self) -> None:
        self.term_ids = {t: i for i, t in enumerate(self.vocab)}

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], k1: float = K1, b: float = B) -> BM25:
        """From token lists, one per document (consumed once)."""
        if k1 < 0 or not 0 <= b <= 1:
            raise GptlabError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        term_ids: dict[str, int] = {}
        postings: list[list[tuple[int, int]]] = []
        lengths = []
        for d, tokens in enumerate(documents):
            lengths.append(len(tokens))
            for term, count in Counter(tokens).items():
                t = term_ids.setdefault(term, len(term_ids))
                if t == len(postings):
                    postings.append([])
                postings[t].append((d, count))
        ptr = [0]
        for p in postings:
            ptr.append(ptr[-1] + len(p))
        flat = [pair for p in postings for pair in p]
        return cls(
            vocab=list(term_ids),
            ptr=torch.tensor(ptr, dtype=torch.int64),
            docs=torch.tensor([d for d, _ in flat], dtype=torch.int64),
            tf=torch.tensor([c for _, c in flat], dtype=torch.float32),
            lengths=torch.tensor(lengths, dtype=torch.float32),
            k1=k1,
            b=b,
        )

    @property
    def n_docs(self) -> int:
        return len(self.lengths)

    def idf(self, term: int) -> float:
        df = int(self.ptr[term + 1] - self.ptr[term])
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def scores(self, query: str | Sequence[str]) -> torch.Tensor:
        """(N,) float64 scores of every document for a query (text, or tokens as given)."""
        tokens = tokenize(query) if isinstance(query, str) else list(query)
        out = torch.zeros(self.n_docs, dtype=torch.float64)
        if self.n_docs == 0:
            return out
        lengths = self.lengths.double()
        norm = self.k1 * (1 - self.b + self.b * lengths / lengths.mean())  # (N,)
        for token in tokens:
            t = self.term_ids.get(token)
            if t is None:  # a term no document holds scores nothing
                continue
            lo, hi = int(self.ptr[t]), int(self.ptr[t + 1])
            docs, tf = self.docs[lo:hi], self.tf[lo:hi].double()
            out.index_add_(0, docs, self.idf(t) * tf / (tf + norm[docs]))
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "bm25.ptr": self.ptr,
            "bm25.docs": self.docs,
            "bm25.tf": self.tf,
            "bm25.lengths": self.lengths,
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], vocab: list[str], k1: float, b: float) -> BM25:
        return cls(
            vocab,
            tensors["bm25.ptr"],
            tensors["bm25.docs"],
            tensors["bm25.tf"],
            tensors["bm25.lengths"],
            k1,
            b,
        )
