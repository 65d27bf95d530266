"""A made-up fact collection for retrieval experiments, and copy-from-context training examples
drawn from the same world (`gptlab data instructions --kind rag-copy`).

The collection: one short article per invented person (occupation, birthplace town, the town's
country, filler sentences) and PopQA-style questions about it with the gold article's id. PopQA's
own data and the Wikipedia articles its questions are about are not available offline, and
invented entities are the extreme of PopQA's "rare facts": no model can have memorised them, so a
closed-book answer is right only by chance and any gain comes from the retrieved article.

Names split in two by a stable hash (`held_out_name`): evaluation collections (``names="held-out"``)
use one half, the rag-copy training examples the other, so a model trained on those examples
has never seen an evaluated entity and can only answer by reading (copying from) the sources.
``names="any"`` draws from both halves: it is what examples/rag_facts.py always wrote (same seed,
same collection).

A rag-copy example is a retrieval prompt exactly as `gptlab rag ask` builds it
(gptlab.rag.prompt: numbered sources, then ``Q: ... A:``) whose sources are the chunk holding the
answer and ``k - 1`` chunks of other articles, in random order, chunked as `gptlab rag index`
chunks (words, ``chunk_words`` with overlap); the target is the answer.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Sequence

from gptlab.errors import GptlabError
from gptlab.rag.chunking import chunk_words
from gptlab.rag.prompt import format_prompt

SYLLABLES = (
    "ka", "lo", "mir", "ten", "sa", "vu", "dor", "ell", "pra", "qui", "zan", "fo", "ret", "bal",
    "nim", "osk", "tue", "gar", "wyn", "hel",
)  # fmt: skip
COUNTRIES = ("Norway", "Peru", "Kenya", "Japan", "Chile", "Ghana", "Spain", "Nepal", "Italy", "Egypt")
OCCUPATIONS = ("painter", "chemist", "sailor", "architect", "poet", "surgeon", "composer", "farmer")
FILLER = (
    "Little else is recorded about the early years.",
    "Local archives hold a few letters from that period.",
    "The name is sometimes spelled differently in older sources.",
    "Travellers described the region as quiet and remote.",
)
QUESTIONS = ("occupation", "country", "birthplace")
NAME_SETS = ("any", "held-out", "training")


def held_out_name(name: str) -> bool:
    """Whether an invented name belongs to the evaluation half (a stable hash, same on every run)."""
    return zlib.crc32(name.encode("utf-8")) % 2 == 0


def name_count(names: str = "any") -> int:
    """How many distinct names `make_facts` can draw from ``names``."""
    every = ("".join(p).capitalize() for p in itertools.product(SYLLABLES, repeat=3))
    return len({n for n in every if _allowed(n, names)})


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()


def _allowed(name: str, names: str) -> bool:
    return names == "any" or held_out_name(name) == (names == "held-out")


def make_facts(
    entities: int,
    seed: int = 0,
    names: str = "any",
    questions: Sequence[str] = ("occupation", "country"),
) -> tuple[list[dict], list[dict]]:
    """(docs, qa): ``entities`` articles ``{"id", "text"}`` and their questions
    ``{"question", "answers", "doc"}`` (one per kind in ``questions``, in that order)."""
    if entities < 1:
        raise GptlabError(f"the number of entities must be positive, got {entities}")
    if names not in NAME_SETS:
        raise GptlabError(f"names must be one of {', '.join(NAME_SETS)}, got {names!r}")
    unknown = sorted(set(questions) - set(QUESTIONS))
    if unknown or not questions:
        raise GptlabError(f"unknown question kind(s) {unknown} (expected some of {', '.join(QUESTIONS)})")
    available = name_count(names)
    if 2 * entities > available * 0.9:  # two names an entity; the last few take long to draw
        raise GptlabError(
            f"at most {int(available * 0.45)} entities have {names} names, asked for {entities}"
        )
    rng = random.Random(seed)
    seen: set[str] = set()
    docs, qa = [], []
    while len(docs) < entities:
        person, town = _name(rng), _name(rng)
        if person in seen or town in seen or person == town:
            continue
        if not (_allowed(person, names) and _allowed(town, names)):
            continue
        seen |= {person, town}
        country, job = rng.choice(COUNTRIES), rng.choice(OCCUPATIONS)
        text = (
            f"{person} was a {job} born in the town of {town}. {rng.choice(FILLER)} "
            f"{town} is a small town in {country}. {rng.choice(FILLER)}"
        )
        docs.append({"id": person, "text": text})
        asked = {
            "occupation": (f"What is {person}'s occupation?", job),
            "country": (f"In what country is {town}?", country),
            "birthplace": (f"In what town was {person} born?", town),
        }
        for kind in questions:
            question, answer = asked[kind]
            qa.append({"question": question, "answers": [answer], "doc": person})
    return docs, qa


def copy_examples(
    n: int,
    seed: int = 0,
    k: int = 2,
    chunk_size: int = 32,
    overlap: int = 8,
) -> list[dict[str, str]]:
    """``n`` Alpaca records whose instruction is a retrieval prompt (the answer's chunk among
    ``k`` sources) and whose output is the answer; entities from the training half of the names
    only. Each record also holds ``text``: the prompt and its answer as the model reads them
    (``"... A: painter"``), for pretraining a language model on the same lines."""
    if n < 1:
        raise GptlabError(f"the number of examples must be positive, got {n}")
    if k < 1:
        raise GptlabError(f"the number of sources must be positive, got {k}")
    entities = max(k + 1, n // len(QUESTIONS) + 1)
    docs, qa = make_facts(entities, seed, names="training", questions=QUESTIONS)
    chunks = {
        d["id"]: [" ".join(words) for _, words in chunk_words(d["text"].split(), chunk_size, overlap)]
        for d in docs
    }
    rng = random.Random(f"rag-copy-{seed}")
    ids = list(chunks)
    records = []
    for row in rng.sample(qa, n):  # 3 questions per entity: always more than n
        answer = row["answers"][0]
        gold = next(c for c in chunks[row["doc"]] if answer in c)
        others = [c for doc in rng.sample(ids, k + 1) if doc != row["doc"] for c in chunks[doc][:1]][: k - 1]
        sources = [gold, *others]
        rng.shuffle(sources)
        prompt = format_prompt(row["question"], sources)
        records.append({"instruction": prompt, "input": "", "output": answer, "text": f"{prompt} {answer}"})
    return records
