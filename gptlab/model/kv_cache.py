"""The KV cache: keys and values of past tokens, kept so each new token costs one position of work.

Without a cache, sampling token t re-runs the model over all t previous tokens; with it, the model
runs on the new token only, and its attention reads the stored keys/values of the earlier ones.

Layout: ``k`` and ``v`` are preallocated ``(n_layer, B, H, max_len, D)`` tensors and every row
shares one write position ``pos`` (slots ``0..pos-1`` are filled). Prompts of different lengths
are left-padded: row b's first ``pad[b]`` slots are padding that no query attends to, and its
token in slot t sits at position ``t - pad[b]``, so each row sees exactly what it would alone.

Decoding speed: every layer asks for the same attention mask at a given step, so the mask is built
once per step and reused; without padding, the first (prefill) step needs no mask at all (plain
causal attention over the new tokens, the fused kernel's fastest path) and later steps a causal
mask shared by all rows, (1, 1, T, S) instead of (B, 1, T, S).

Local (sliding-window) attention: a query at position p sees keys p - window + 1 .. p, so the
cache of a local model keeps only the last ``window - 1`` keys and values (the new token brings
its own): memory is bounded by the window, not by the context, while positions keep counting up
to ``max_len``. Its slots hold the kept keys oldest first; each step attends to those plus the
new ones and then keeps the newest ``window - 1`` (a shift of at most window - 1 slots per step:
simpler to read than a ring buffer, and attention reads them all anyway).
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError


class KVCache:
    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_size: int,
        max_len: int,
        pad: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        window: int | None = None,
    ) -> None:
        # a local model's cache: the window - 1 keys before the newest token are all a query needs
        self.window = window
        slots = max_len if window is None else min(max_len, window - 1)
        shape = (n_layer, batch_size, n_head, slots, head_size)
        # uninitialised: slots are read only after they are written (0..pos-1), and zero-filling two
        # (n_layer, B, H, block_size, D) tensors costs more than a short generation (75 MB for GPT-2 small)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0
        if pad is None:
            pad = torch.zeros(batch_size, dtype=torch.long)
        self.pad = pad.to(device=device, dtype=torch.long)  # (B,) left padding of each row
        self.padded = bool((self.pad > 0).any())  # one check now, not one per step
        self._mask_key: tuple[int, int] | None = None  # (pos, T) the memoised mask is for
        self._mask: torch.Tensor | None = None

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        batch_size: int,
        pad: torch.Tensor | None = None,
        max_len: int | None = None,
    ) -> KVCache:
        """A cache for ``model``: ``max_len`` positions (default: its whole context, ``block_size``),
        and only the window of a local-attention model. A recurrent model (``arch`` lstm / gru)
        gets its `RecurrentState` instead, which the decoding loops drive the same way."""
        cfg = model.config
        if cfg.arch != "gpt":
            return model.recurrent_state(batch_size, pad, cfg.block_size if max_len is None else max_len)
        param = next(model.parameters())
        window = cfg.window if cfg.attention == "local" else None
        return cls(
            cfg.n_layer,
            batch_size,
            cfg.n_head,
            cfg.head_size,
            cfg.block_size if max_len is None else max_len,
            pad,
            param.device,
            param.dtype,
            window,
        )

    @property
    def filled(self) -> int:
        """How many slots hold keys/values: ``pos``, or fewer once a local cache is full."""
        return min(self.pos, self.k.size(3))

    def positions(self, T: int) -> torch.Tensor:
        """Positions of the next T tokens of every row: (B, T); padding slots get 0 (never attended).

        The model calls this first, so a cache without room for T more tokens is an error here."""
        if self.pos + T > self.max_len:
            raise GptlabError(f"KV cache full: {self.pos} + {T} tokens exceed its {self.max_len} slots")
        slots = torch.arange(self.pos, self.pos + T, device=self.pad.device)  # (T,)
        return (slots[None, :] - self.pad[:, None]).clamp(min=0)

    def attention_mask(self, T: int) -> torch.Tensor | None:
        """Which keys each of the next T queries may attend to: (B, 1, T, S) bool, (1, 1, T, S)
        when no row is padded, or None (plain causal attention over the T new tokens) when nothing
        is cached yet, no row is padded and the window (if any) holds all T. S = filled + T: the
        cached keys, then the new ones. Built once per step (see above).

        Causal (and within the window), and padding is hidden. A padding query attends to itself
        only: a row with no visible key would make softmax produce NaN, which would then leak
        through the values.
        """
        if self._mask_key == (self.pos, T):
            return self._mask
        if self.pos == 0 and not self.padded and (self.window is None or self.window >= T):
            mask = None
        else:
            device, first_key = self.pad.device, self.pos - self.filled
            q_slot = torch.arange(self.pos, self.pos + T, device=device)[:, None]  # (T, 1)
            k_slot = torch.arange(first_key, self.pos + T, device=device)[None, :]  # (1, S)
            visible = causal_mask(q_slot, k_slot, self.window)  # (T, S)
            if self.padded:
                not_pad = k_slot[None] >= self.pad[:, None, None]  # (B, 1, S)
                mask = (visible & (not_pad | (k_slot == q_slot)))[:, None]  # (B, 1, T, S)
            else:
                mask = visible[None, None]  # (1, 1, T, S)
        self._mask_key, self._mask = (self.pos, T), mask
        return mask

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (B, H, T, D) at ``pos`` and return all of them: (B, H, pos+T, D)
        (a local cache: the kept ones and the new ones, (B, H, filled+T, D))."""
        if self.window is not None:
            return self._update_window(layer, k, v)
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def _update_window(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kept = self.filled  # the same for every layer of this step: pos advances after the last
        k_all = torch.cat((self.k[layer, :, :, :kept], k), dim=2)  # (B, H, kept+T, D)
        v_all = torch.cat((self.v[layer, :, :, :kept], v), dim=2)
        keep = min(self.k.size(3), k_all.size(2))  # the newest window - 1 (or fewer)
        if keep:
            self.k[layer, :, :, :keep] = k_all[:, :, -keep:]
            self.v[layer, :, :, :keep] = v_all[:, :, -keep:]
        return k_all, v_all

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (B',) of the batch, in that order (a row may be taken twice):
        beam search continues each surviving beam from the cache of the beam it extends."""
        self.k = self.k.index_select(1, rows)
        self.v = self.v.index_select(1, rows)
        self.pad = self.pad.index_select(0, rows)
        self.padded = bool((self.pad > 0).any())
        self._mask_key, self._mask = None, None

    def advance(self, T: int) -> None:
        """Move the write position past the T tokens every layer has just stored."""
        self.pos += T

    def rollback(self, pos: int) -> None:
        """Forget every token from slot ``pos`` on (their slots are overwritten by the next ones):
        speculative decoding drops the keys of the draft's rejected guesses this way. A local
        cache has already shifted older keys out, so it cannot go back."""
        if self.window is not None:
            raise GptlabError("a sliding-window KV cache cannot be rolled back")
        if not 0 <= pos <= self.pos:
            raise GptlabError(f"cannot roll the KV cache back to {pos}: it holds {self.pos} tokens")
        self.pos = pos


def causal_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Which keys each query may see: q_pos (T, 1) and k_pos (1, S) -> (T, S) bool. Causal (a key
    at or before the query), and with a ``window`` only the last ``window`` of them
    (q - window < k <= q: sliding-window attention)."""
    visible = k_pos <= q_pos
    if window is not None:
        visible = visible & (k_pos > q_pos - window)
    return visible
