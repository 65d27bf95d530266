"""`SlotCache`: one KV cache for many sequences of different lengths, for continuous batching.

Layout: ``k`` and ``v`` are ``(n_layer, rows, H, length, D)`` tensors; the sequences being decoded
occupy rows ``0 .. n-1`` in order, each from slot 0, and row b has ``lengths[b]`` tokens, the token
in slot t sitting at position t. Rows are aligned on the left and padded on the right: a short
row's slots past its length hold zeros (or an earlier sequence's finite leftovers) that the mask
hides. Keeping rows contiguous (a sequence that leaves is squeezed out, the rows after it move
up) makes ``k[layer, :n, :, :S]`` a view, so a decode step copies nothing to assemble the batch.

Why zeros rather than uninitialised memory (what `gptlab.model.kv_cache.KVCache` uses): a padded
slot is read by every row whose neighbours are longer. Masked attention gives it weight 0, but
0 * NaN is NaN, and uninitialised memory may hold NaN bit patterns.

The model uses it through the same five members as a `KVCache` (``window``, ``positions``,
``attention_mask``, ``update``, ``advance``), so `GPT.forward` runs a batch of sequences at
different positions unchanged: each row gets its own positions (learned, sinusoidal and rotary
encodings all take a (B, T) position tensor) and a (B, 1, T, S) mask, causal per row (and within
the window for a local-attention model, whose slots before the window simply stay hidden).

Capacity grows by doubling (rows and slots, up to the model's context), so an idle or lightly
loaded server holds little memory: GPT-2 small needs 75 MB per row for its full 1024 positions.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError


class SlotCache:
    def __init__(self, model: torch.nn.Module) -> None:
        cfg = model.config
        param = next(model.parameters())
        self.n_layer, self.n_head, self.head_size = cfg.n_layer, cfg.n_head, cfg.head_size
        self.max_len = cfg.block_size
        self.window = cfg.window if cfg.attention == "local" else None
        self.device, self.dtype = param.device, param.dtype
        self.k = self.v = self._empty(0, 0)
        self.lengths = torch.zeros(0, dtype=torch.long, device=self.device)  # (n,) tokens per row
        self.longest = 0  # max(lengths), kept as an int: reading it from the tensor would sync a GPU
        self._mask_key: int | None = None  # the T of the memoised mask (forgotten when lengths change)
        self._mask: torch.Tensor | None = None
        self._write: tuple[int, torch.Tensor] | None = None  # (T, scatter index) of this step

    @property
    def n(self) -> int:
        """Rows in use."""
        return self.lengths.numel()

    def _empty(self, rows: int, slots: int) -> torch.Tensor:
        shape = (self.n_layer, rows, self.n_head, slots, self.head_size)
        return torch.zeros(shape, device=self.device, dtype=self.dtype)

    def _reserve(self, rows: int, slots: int) -> None:
        """Room for ``rows`` rows of ``slots`` slots; grow by doubling (keeping what is stored)."""
        have_rows, have_slots = self.k.size(1), self.k.size(3)
        if rows <= have_rows and slots <= have_slots:
            return
        new_rows = max(rows, min(2 * have_rows, rows + have_rows)) if rows > have_rows else have_rows
        new_slots = min(self.max_len, max(slots, 2 * have_slots)) if slots > have_slots else have_slots
        used = self.longest
        for name in ("k", "v"):
            grown = self._empty(new_rows, new_slots)
            grown[:, : self.n, :, :used] = getattr(self, name)[:, : self.n, :, :used]
            setattr(self, name, grown)

    def _forget_mask(self) -> None:
        """The rows or their lengths changed: the memoised mask and write slots are stale."""
        self._mask_key, self._mask = None, None
        self._write = None

    def append(self, k: torch.Tensor, v: torch.Tensor, length: int) -> range:
        """Add sequences at the end: k, v (n_layer, B, H, F, D) are the keys and values of their
        last F tokens (F < length only for a local cache, which kept just its window); each row
        is ``length`` tokens long. Returns the rows they occupy."""
        if length > self.max_len:
            raise GptlabError(f"a sequence of {length} tokens does not fit the {self.max_len}-token context")
        B, kept = k.size(1), k.size(3)
        start = self.n
        self._reserve(start + B, length + 1)  # + 1: the next decode step writes at slot `length`
        self.k[:, start : start + B, :, length - kept : length] = k
        self.v[:, start : start + B, :, length - kept : length] = v
        added = torch.full((B,), length, dtype=torch.long, device=self.device)
        self.lengths = torch.cat((self.lengths, added))
        self.longest = max(self.longest, length)
        self._forget_mask()
        return range(start, start + B)

    def remove(self, rows: range) -> None:
        """Free ``rows`` (a contiguous block): the rows after them move up to close the gap."""
        after = range(rows.stop, self.n)
        if len(after):
            used = self.longest
            for name in ("k", "v"):
                t = getattr(self, name)
                t[:, rows.start : rows.start + len(after), :, :used] = t[
                    :, after.start : after.stop, :, :used
                ].clone()
        self.lengths = torch.cat((self.lengths[: rows.start], self.lengths[rows.stop :]))
        self.longest = int(self.lengths.max()) if self.n else 0
        self._forget_mask()
        if not self.n:  # idle: give the memory back
            self.k = self.v = self._empty(0, 0)

    # ------------------------------------------------ what the model calls (as on a KVCache)

    def positions(self, T: int) -> torch.Tensor:
        """Positions of the next T tokens of every row: (n, T), each row after its own tokens.

        The model calls this first in a forward, so this is where the slots the T tokens will be
        written to are worked out, once for all layers."""
        if self.longest + T > self.max_len:
            raise GptlabError(f"KV cache full: {self.longest} + {T} tokens exceed its {self.max_len} slots")
        self._reserve(self.n, self.longest + T)
        pos = self.lengths[:, None] + torch.arange(T, device=self.device)[None, :]  # (n, T)
        # scatter index along the slot dim: (n, H, T, D), one kernel per layer to store k or v
        self._write = (T, pos[:, None, :, None].expand(self.n, self.n_head, T, self.head_size))
        return pos

    def attention_mask(self, T: int) -> torch.Tensor:
        """(n, 1, T, S) bool, S = the longest row + T: a row's query sees its own keys up to
        itself (and within the window), never another row's padding. Built once per step."""
        if self._mask_key == T:
            return self._mask
        S = self.longest + T
        q = self.lengths[:, None] + torch.arange(T, device=self.device)[None, :]  # (n, T)
        k_slot = torch.arange(S, device=self.device)[None, None, :]  # (1, 1, S)
        visible = k_slot <= q[:, :, None]  # (n, T, S): causal; slots past a row's end are > q
        if self.window is not None:
            visible = visible & (k_slot > q[:, :, None] - self.window)
        self._mask_key, self._mask = T, visible[:, None]
        return self._mask

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (n, H, T, D) after each row's tokens; return every row's
        (n, H, S, D) (a view: rows 0..n-1 are contiguous)."""
        T = k.size(2)
        if self._write is None or self._write[0] != T:
            self.positions(T)
        index = self._write[1]
        self.k[layer, : self.n].scatter_(2, index, k)
        self.v[layer, : self.n].scatter_(2, index, v)
        S = self.longest + T
        return self.k[layer, : self.n, :, :S], self.v[layer, : self.n, :, :S]

    def advance(self, T: int) -> None:
        self.lengths = self.lengths + T
        self.longest += T
        self._forget_mask()
