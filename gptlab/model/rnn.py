"""A recurrent language model (LSTM or GRU): the baseline the transformer replaced.

``model.arch = "lstm"`` or ``"gru"`` builds `RecurrentLM` from the same `GPTConfig` a GPT uses:
``n_layer`` stacked cells of width ``n_embd``, the token embedding (dropout ``embd_dropout``)
in front, dropout ``dropout`` between the layers and after the last one, and a linear head tied
to the embedding (``tie_weights``; the hidden state is n_embd wide so the matrix can be shared,
as in Press & Wolf, 2017). ``n_head``, positions, norms and the block variants are not read: a
recurrent network knows the order of its inputs by reading them one after another.

It has GPT's interface where that means something, so the trainer, checkpoints, ``generate``,
``eval perplexity``, task scoring, the privacy audits and ``finetune classify`` (the head reads
the last layer's output) run it unchanged: ``forward(idx, targets, kv_cache, last_only,
label_smoothing) -> (logits, loss)``, ``unembed``, ``head_input``, ``num_params``,
``tensor_shapes``, ``from_state_dict``. What needs attention or a residual stream
(``forward_with_attention``, ``hidden_states`` for the logit lens) raises a GptlabError, as
LoRA does (it adapts Linear layers; the cells' weights sit inside one nn.LSTM / nn.GRU).

Incremental decoding keeps the recurrent state instead of keys and values: `RecurrentState`
has the KV cache's interface (``pos``, ``max_len``, ``select``), so generation and beam search
drive it the same way; ``KVCache.for_model`` builds one for a recurrent model. The state is
bounded by ``block_size`` like the cache, so generation slides its context exactly as the naive
decoder crops it (an RNN could read on for ever, but then the two would disagree).

Left padding (prompts of different lengths in one batch): a padded row's padding slots must not
touch its state, so a call that covers them runs that row alone on its real tokens, from a zero
state, and its padding positions get zero outputs that nobody reads.

Shapes: B batch, T tokens, C = n_embd, L = n_layer, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gptlab.errors import GptlabError
from gptlab.model.config import GPTConfig
from gptlab.model.gpt import GPT, lm_loss
from gptlab.model.variant import ArchVariant

EMBED_STD = 0.02  # the tied table is also the head: GPT-2's scale keeps the first logits near 0
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def _no_attention(arch: str, what: str) -> GptlabError:
    return GptlabError(
        f"{what} needs a transformer (attention and a residual stream); this model is a recurrent "
        f"{arch.upper()} (model.arch = {arch!r})"
    )


class RecurrentState:
    """The recurrent state of a batch: ``h`` (L, B, C), and ``c`` (L, B, C) for an LSTM; what a
    KV cache is to a GPT (module docstring)."""

    def __init__(self, model: RecurrentLM, batch_size: int, pad: torch.Tensor | None, max_len: int) -> None:
        param = next(model.parameters())
        cfg = model.config
        shape = (cfg.n_layer, batch_size, cfg.n_embd)
        self.h = torch.zeros(shape, device=param.device, dtype=param.dtype)
        self.c = torch.zeros_like(self.h) if cfg.arch == "lstm" else None
        self.max_len = max_len
        self.pos = 0
        if pad is None:
            pad = torch.zeros(batch_size, dtype=torch.long)
        self.pad = pad.to(device=param.device, dtype=torch.long)  # (B,) left padding of each row
        self.window = None  # read by code that checks a KV cache's window

    def rows(self, rows: slice | torch.Tensor):
        """The state of some rows, as nn.LSTM / nn.GRU take it."""
        return self.h[:, rows] if self.c is None else (self.h[:, rows], self.c[:, rows])

    def store(self, rows: slice | torch.Tensor, state) -> None:
        if self.c is None:
            self.h[:, rows] = state
        else:
            self.h[:, rows], self.c[:, rows] = state

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (B',) in that order (beam search), as `KVCache.select`."""
        self.h = self.h.index_select(1, rows)
        self.c = None if self.c is None else self.c.index_select(1, rows)
        self.pad = self.pad.index_select(0, rows)

    def advance(self, T: int) -> None:
        self.pos += T


class RecurrentLM(ArchVariant, nn.Module):
    ARCHES = tuple(CELLS)

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.check_arch(config)
        self.config = config
        # named as in GPT, so what reads the token table (embeddings analysis, saliency, vocabulary
        # growth in fine-tuning) finds it
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                drop=nn.Dropout(config.site_dropout("embd")),
            )
        )
        self.rnn = CELLS[config.arch](
            config.n_embd,
            config.n_embd,
            num_layers=config.n_layer,
            bias=config.bias,
            batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,  # between layers
        )
        self.out_drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.activation_checkpointing = False  # set by the trainer; a GPT option, not read here
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        nn.init.normal_(self.transformer.wte.weight, mean=0.0, std=EMBED_STD)
        if not config.tie_weights:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=EMBED_STD)
        if config.arch == "lstm" and config.bias:
            # forget-gate bias 1 (Jozefowicz et al., 2015): remember by default at the start of
            # training, so gradients reach far back; the gates are ordered input, forget, cell, output
            C = config.n_embd
            with torch.no_grad():
                for layer in range(config.n_layer):
                    getattr(self.rnn, f"bias_ih_l{layer}")[C : 2 * C].fill_(1.0)
                    getattr(self.rnn, f"bias_hh_l{layer}")[C : 2 * C].zero_()

    # counted as a GPT is (a tied matrix once; non_embedding drops the token table): it has no position table
    num_params = GPT.num_params

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: RecurrentState | None = None,
        last_only: bool = False,
        label_smoothing: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As `GPT.forward`: idx (B, T) -> logits (B, T, V) and the mean cross-entropy against
        targets, or None. ``kv_cache`` is a `RecurrentState`: idx holds the tokens after it."""
        if last_only and targets is not None:
            raise GptlabError("last_only gives the last position's logits: it cannot compute a loss")
        if kv_cache is not None and not isinstance(kv_cache, RecurrentState):
            raise GptlabError(
                "a recurrent model decodes with a RecurrentState: build it with KVCache.for_model"
            )
        x = self._run(idx, kv_cache)
        if last_only:
            x = x[:, -1:, :]
        logits = self.unembed(x)
        return logits, lm_loss(logits, targets, label_smoothing)

    def recurrent_state(self, batch_size: int, pad: torch.Tensor | None, max_len: int) -> RecurrentState:
        """A zero state for ``batch_size`` rows (what `KVCache.for_model` gives this model)."""
        return RecurrentState(self, batch_size, pad, max_len)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's output (B, T, C) -> logits (B, T, V)."""
        return self.lm_head(x)

    def head_input(self, idx: torch.Tensor) -> torch.Tensor:
        """What the LM head reads at every position, as `GPT.head_input`: the last layer's
        output (B, T, C)."""
        return self._run(idx, None)

    def forward_with_attention(self, idx: torch.Tensor):
        raise _no_attention(self.config.arch, "attention analysis")

    def hidden_states(self, idx: torch.Tensor, kv_cache=None):
        raise _no_attention(
            self.config.arch, "hidden states after each block (the logit lens, inner-layer embeddings)"
        )

    def _run(self, idx: torch.Tensor, state: RecurrentState | None) -> torch.Tensor:
        B, T = idx.shape
        x = self.transformer.drop(self.transformer.wte(idx))  # (B, T, C)
        if state is None:
            out, _ = self.rnn(x)
            return self.out_drop(out)
        if state.pos + T > state.max_len:
            raise GptlabError(f"recurrent state full: {state.pos} + {T} tokens exceed its {state.max_len}")
        skip = (state.pad - state.pos).clamp(min=0, max=T)  # (B,) padding slots in this call, per row
        if not bool(skip.any()):
            out, new = self.rnn(x, state.rows(slice(None)))
            state.store(slice(None), new)
        else:  # rows with padding here run alone on their real tokens (module docstring)
            out = torch.zeros_like(x)
            for b, s in enumerate(skip.tolist()):
                if s == T:
                    continue  # only padding so far: the state stays zero
                row = slice(b, b + 1)
                out[row, s:], new = self.rnn(x[row, s:], state.rows(row))
                state.store(row, new)
        state.advance(T)
        return self.out_drop(out)

    @classmethod
    def from_state_dict(cls, config: GPTConfig, state: dict[str, torch.Tensor], source: str = "weights"):
        """As `GPT.from_state_dict`: exactly the expected tensors, floating point, or a GptlabError."""
        model = super().from_state_dict(config, state, source)
        model.rnn.flatten_parameters()  # assign=True replaced the cell's weights: re-pack them for cuDNN
        return model
