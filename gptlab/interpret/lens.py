"""The logit lens (nostalgebraist, 2020): read the model's next-token guess from every layer.

The residual stream after the embeddings and after each block goes through the final norm and the
unembedding, as the last layer's does; where the right answer appears in the top-k shows the
layer at which the prediction forms. The last entry equals the model's own logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gptlab.interpret.attention import ids_tensor
from gptlab.model.gpt import GPT
from gptlab.model.modes import eval_mode


@torch.no_grad()
def lens_logits(model: GPT, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """(L + 1, T, V) logits: from the embeddings (row 0) and after each of the L blocks."""
    with eval_mode(model):
        hidden = model.hidden_states(ids_tensor(model, ids))  # L + 1 tensors (1, T, C)
        return torch.stack([model.unembed(h)[0].float() for h in hidden])


def logit_lens(model: GPT, ids: Sequence[int] | torch.Tensor, top_k: int = 5) -> list[list[list[dict]]]:
    """For every layer (embeddings first) and position, the top-k next tokens with probabilities:
    ``result[layer][position] = [{"id", "prob"}, ...]``, most likely first."""
    probs = lens_logits(model, ids).softmax(dim=-1)  # (L + 1, T, V)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [
            [{"id": int(i), "prob": float(p)} for i, p in zip(ids_row, p_row)]
            for ids_row, p_row in zip(layer_ids.tolist(), layer_p.tolist())
        ]
        for layer_ids, layer_p in zip(top.indices, top.values)
    ]
