"""``POST /v1/rag`` (extension, with ``gptlab serve --rag-index INDEX``): retrieve the top k chunks
of the index for a question, answer it with the served model from a prompt citing them
(gptlab.rag.ask), and return the answer with the chunks and their scores, which the playground
shows as the answer's sources."""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from gptlab.errors import GptlabError
from gptlab.serve.routes import check_limits, need_lm

MAX_K = 20


class RagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # unknown fields are errors, as elsewhere

    question: str = Field(..., min_length=1)
    k: int = Field(4, ge=1, le=MAX_K)
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    max_tokens: int = Field(15, ge=1)


def attach_rag(app: FastAPI, index_path: str, device: str = "cpu") -> None:
    """Load the index (and its query embedder) into ``app.state`` and add the route. The index's
    embedder must be MiniLM or the served run itself."""
    from gptlab.rag.dense import MINILM, MINILM_ID, make_embedder, run_embedder
    from gptlab.rag.index import load_index

    state = app.state
    if state.kind != "lm":
        raise GptlabError("--rag-index needs a language model run (this one is a classifier)")
    index = load_index(index_path)
    if index.embedder == MINILM_ID:
        embedder = make_embedder(MINILM)
    else:
        embedder = run_embedder(state.model_dir, device, state.model, state.tokenizer)
    index.check_embedder(embedder)
    state.rag_index, state.rag_embedder = index, embedder
    app.add_api_route("/v1/rag", rag, methods=["POST"])


async def rag(body: RagRequest, request: Request):
    from gptlab.rag.ask import answer

    state = request.app.state
    need_lm(state)
    check_limits(state, body.max_tokens, 1)

    def work():
        return answer(
            state.model, state.tokenizer, state.rag_index, state.rag_embedder, body.question, body.k, body.mode,
            body.max_tokens,
        )  # fmt: skip

    result = await state.engine.call(work, state.limits.timeout_s)
    return {"object": "rag.answer", "model": state.model_id, **result.to_dict()}
