"""Weight-only quantisation, written from scratch: int8 per output channel, int4 per group.

Decoding one token at batch 1 reads every weight once and does 2 FLOPs with each, so its speed
is set by how many bytes the weights take, not by arithmetic. Storing weights in 8 or 4 bits
instead of 32 cuts those bytes 4x or 8x; activations stay in floating point ("weight-only").

Schemes (W is a Linear's weight, (N, K) = (out_features, in_features)):

- int8, symmetric, per output channel: ``scale[n] = max_k |W[n, k]| / 127`` and
  ``q = round(W / scale)`` in [-127, 127]; ``W ~ q * scale``. Each row gets its own scale, so a
  row of small weights is not crushed by another row's outlier. Error per weight <= scale / 2.
- int4, asymmetric, per group of ``group_size`` consecutive inputs of a row (32, 64 or 128):
  ``scale = (max - min) / 15``, ``q = round((W - min) / scale)`` in [0, 15]; ``W ~ q * scale +
  min``. 16 levels are too few for one scale per row, so every group gets its own range.
  Error per weight <= scale / 2. Two 4-bit values are packed per byte (low nibble = even k).

Storage: ``qweight`` (int8 (N, K), or uint8 (N, K/2) for int4), ``scales`` (float32 (N,) or
(N, K/g)) and, for int4, ``mins`` (float32 (N, K/g)). Every Linear of the blocks and the LM
head are quantised; the token embedding too (a row lookup dequantises only the rows it reads),
and with tied weights the embedding and the head share one quantised matrix, as they share one
float matrix. Position embeddings, norms and biases stay float32 (they are a few KB).

Matmul: ``reference`` dequantises W to float and multiplies (obviously right, slow: it writes a
float copy of W every call). ``kernel`` (default on CPU) uses torch's packed CPU kernels,
``torch._weight_int8pack_mm`` and ``torch._weight_int4pack_mm_for_cpu``, which read the small
weights directly. They are only vectorised for bfloat16 activations on CPU (float32 inputs take
a scalar path ~10x slower), so the kernel path rounds the activations to bfloat16, multiplies,
and returns float32; for int8 the per-channel scales are applied afterwards in float32 so they
are not rounded. tests/model/test_quantize.py checks the kernels against the reference.

The int8 LM head (50,257 x 768 for GPT-2: a third of the int8 model's bytes) uses a third kernel,
``dynamic``: torch's fbgemm/x86 int8 linear (``quantized.linear_dynamic``) on the same per-channel
int8 weights, with the activations quantised per call to 8 bits (one scale for the vector; the
range is cut to 7 bits, as torch's dynamic quantisation does on x86, so the int16 partial sums
cannot saturate). It reads the head about 1.5x faster than ``_weight_int8pack_mm`` at batch 1
(docs/performance.md); its extra error, one rounding of the head's input, is tested against fp32.
Where torch has no such engine the head uses ``kernel``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model.gpt import GPT, check_config_matches_shapes, check_tensor_names

BITS = (8, 4)
GROUP_SIZES = (32, 64, 128)
DEFAULT_GROUP_SIZE = 64
INT8_MAX = 127  # symmetric: -127..127 (-128 unused, so q and -q are both representable)
INT4_LEVELS = 15  # unsigned 0..15
INT4_KERNEL_N_MULTIPLE = 16  # the packed int4 kernel wants out_features divisible by 16
ALIGNMENT = 64  # bytes: torch's own allocations are aligned to this
KERNEL_DTYPE = torch.bfloat16  # the activation dtype the CPU kernels are vectorised for
BACKENDS = ("kernel", "reference", "dynamic")
DYNAMIC_ENGINES = ("x86", "fbgemm")  # torch's int8 engines whose dynamic linear is fast on x86
SCHEMES = {
    8: "int8 weight-only, symmetric, per output channel",
    4: "int4 weight-only, asymmetric (min/max), per group of inputs",
}


# ----------------------------------------------------------------------------- the math


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K) float -> q (N, K) int8 in [-127, 127], scales (N,) float32, with w ~ q * scales[:, None]."""
    w = w.detach().float()
    scales = w.abs().amax(dim=1) / INT8_MAX  # (N,)
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # an all-zero row: q = 0, any scale
    q = torch.round(w / scales[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scales


def dequantize_int8(
    q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """q (N, K) int8, scales (N,) -> w (N, K)."""
    return (q.to(torch.float32) * scales.float()[:, None]).to(dtype)


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K) float -> q (N, K) uint8 in [0, 15] (unpacked), scales and mins (N, K/group_size)
    float32, with w ~ q * scale + min inside each group of ``group_size`` consecutive inputs."""
    N, K = w.shape
    if K % group_size:
        raise GptlabError(f"int4 group size {group_size} does not divide in_features {K}")
    g = w.detach().float().view(N, K // group_size, group_size)  # (N, G, group)
    mins, maxs = g.amin(dim=-1), g.amax(dim=-1)  # (N, G) each
    scales = (maxs - mins) / INT4_LEVELS
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # a constant group: q = 0, w = min
    q = torch.round((g - mins[..., None]) / scales[..., None]).clamp(0, INT4_LEVELS)
    return q.to(torch.uint8).view(N, K), scales, mins


def dequantize_int4(
    q: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """q (..., K) values 0..15 (unpacked), scales and mins (..., G) -> w (..., K)."""
    K, G = q.size(-1), scales.size(-1)
    g = q.to(torch.float32).unflatten(-1, (G, K // G))  # (..., G, group)
    w = g * scales.float()[..., None] + mins.float()[..., None]
    return w.flatten(-2).to(dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(..., K) values 0..15 -> (..., K/2) uint8: even k in the low nibble, odd k in the high one."""
    if q.size(-1) % 2:
        raise GptlabError(f"cannot pack an odd number ({q.size(-1)}) of 4-bit values into bytes")
    q = q.to(torch.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(..., K/2) uint8 -> (..., K) uint8 values 0..15 (the inverse of `pack_int4`)."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


# ----------------------------------------------------------------------------- the modules


class QuantizedWeight(nn.Module):
    """A quantised (out_features, in_features) matrix: buffers ``qweight``, ``scales`` (+ ``mins``
    for int4), a matmul with it (`matmul`) and a row lookup (`rows`, for embeddings)."""

    def __init__(self, out_features: int, in_features: int, bits: int, group_size: int | None = None) -> None:
        super().__init__()
        check_settings(bits, group_size)
        self.out_features, self.in_features = out_features, in_features
        self.bits, self.group_size = bits, (group_size if bits == 4 else None)
        self.backend = "kernel"  # or "reference", or "dynamic" (int8 heads); see the module docstring
        N, K = out_features, in_features
        if bits == 8:
            self.register_buffer("qweight", torch.zeros(N, K, dtype=torch.int8))
            self.register_buffer("scales", torch.ones(N))
        else:
            if K % group_size:
                raise GptlabError(f"int4 group size {group_size} does not divide in_features {K}")
            self.register_buffer("qweight", torch.zeros(N, K // 2, dtype=torch.uint8))
            self.register_buffer("scales", torch.ones(N, K // group_size))
            self.register_buffer("mins", torch.zeros(N, K // group_size))
        self._kernel_cache: tuple[Any, ...] | None = None  # derived tensors for the kernel, built lazily

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "_kernel_cache": None}  # derived (and fbgemm's packed weight cannot be copied)

    def set_weight(self, w: torch.Tensor) -> None:
        """Quantise the float matrix ``w`` (N, K) into this module's buffers."""
        if tuple(w.shape) != (self.out_features, self.in_features):
            raise GptlabError(
                f"weight of shape {tuple(w.shape)}, expected {(self.out_features, self.in_features)}"
            )
        if self.bits == 8:
            q, scales = quantize_int8(w)
            self.qweight, self.scales = q, scales
        else:
            q, scales, mins = quantize_int4(w, self.group_size)
            self.qweight, self.scales, self.mins = pack_int4(q), scales, mins
        self._kernel_cache = None

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float matrix these bits stand for: (N, K)."""
        if self.bits == 8:
            return dequantize_int8(self.qweight, self.scales, dtype)
        return dequantize_int4(unpack_int4(self.qweight), self.scales, self.mins, dtype)

    def rows(self, idx: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Dequantised rows ``idx`` (...,) -> (..., K): an embedding lookup reading only those rows."""
        flat = idx.reshape(-1)  # index_select on the flat ids: a plain row gather, no advanced indexing
        q = self.qweight.index_select(0, flat)  # (n, K) or (n, K/2)
        scales = self.scales.index_select(0, flat)
        if self.bits == 8:
            w = q.to(torch.float32) * scales[:, None]
        else:
            w = dequantize_int4(unpack_int4(q), scales, self.mins.index_select(0, flat))
        return w.to(dtype).view(*idx.shape, self.in_features)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> x @ W^T (..., N), in x's dtype."""
        on_cpu = x.device.type == "cpu" and x.is_floating_point()
        if self.backend == "dynamic" and on_cpu and self.bits == 8 and dynamic_int8_available():
            return self._dynamic_matmul(x)
        if self.backend in ("kernel", "dynamic") and on_cpu:
            return self._kernel_matmul(x)
        return F.linear(x, self.dequantize(x.dtype))

    def _dynamic_matmul(self, x: torch.Tensor) -> torch.Tensor:
        lead, K = x.shape[:-1], x.size(-1)
        x2 = x.reshape(-1, K).float().contiguous()  # (M, K)
        y = torch.ops.quantized.linear_dynamic(
            x2, self._kernel_tensors("dynamic"), True
        )  # reduce_range: 7-bit x
        return y.to(x.dtype).view(*lead, self.out_features)

    def _kernel_matmul(self, x: torch.Tensor) -> torch.Tensor:
        lead, K = x.shape[:-1], x.size(-1)
        x2 = x.reshape(-1, K).to(KERNEL_DTYPE)  # (M, K)
        cache = self._kernel_tensors("kernel")
        if self.bits == 8:
            qweight, ones, scales = cache
            y = torch._weight_int8pack_mm(x2, qweight, ones).float() * scales  # (M, N)
        else:
            packed, scale_and_zero = cache
            y = torch._weight_int4pack_mm_for_cpu(x2, packed, self.group_size, scale_and_zero)
            y = y[:, : self.out_features].float()  # (M, N): drop the padding rows of W
        return y.to(x.dtype).view(*lead, self.out_features)

    def _kernel_tensors(self, kernel: str) -> Any:
        """What the kernels need besides qweight, built once (and again after a move or reload)."""
        key = (self.qweight.data_ptr(), self.scales.data_ptr(), self.qweight.device, kernel)
        if self._kernel_cache is not None and self._kernel_cache[0] == key:
            return self._kernel_cache[1]
        if self.bits == 8 and kernel == "dynamic":  # fbgemm's packed per-channel int8 weight
            zeros = torch.zeros(self.out_features, dtype=torch.long)
            with warnings.catch_warnings():  # torch marks its quantised tensor types deprecated
                warnings.simplefilter("ignore", UserWarning)
                qw = torch._make_per_channel_quantized_tensor(self.qweight, self.scales.double(), zeros, 0)
                tensors: Any = torch.ops.quantized.linear_prepack(qw, None)
        elif self.bits == 8:
            # the kernel reads with aligned vector loads: a tensor straight from a safetensors file
            # can sit at any offset (and crash it), so it gets a freshly allocated (aligned) copy
            qweight = self.qweight.contiguous()
            if qweight.data_ptr() % ALIGNMENT:
                qweight = qweight.clone()
            # unit scales in the kernel, the real ones applied in float32 after it (not rounded to bf16)
            ones = torch.ones(self.out_features, dtype=KERNEL_DTYPE, device=self.qweight.device)
            tensors = (qweight, ones, self.scales.float())
        else:
            tensors = int4_kernel_pack(unpack_int4(self.qweight), self.scales, self.mins)
        self._kernel_cache = (key, tensors)
        return tensors

    def extra_repr(self) -> str:
        g = f", group_size={self.group_size}" if self.bits == 4 else ""
        return f"out={self.out_features}, in={self.in_features}, bits={self.bits}{g}, backend={self.backend}"


def dynamic_int8_available() -> bool:
    """Whether torch's dynamic int8 linear runs here (an x86/fbgemm quantised engine)."""
    engines = torch.backends.quantized.supported_engines
    return torch.backends.quantized.engine in DYNAMIC_ENGINES or any(e in engines for e in DYNAMIC_ENGINES)


def use_dynamic_head(model: nn.Module) -> None:
    """Give an int8 model's LM head (tied: the embedding's matrix, whose row lookups do not
    change) the ``dynamic`` kernel (see the module docstring)."""
    head = model.lm_head
    target = head._embedding[0] if isinstance(head, TiedQuantizedHead) else head
    if isinstance(target, QuantizedWeight) and target.bits == 8:
        target.backend = "dynamic"
        target._kernel_cache = None


def int4_kernel_pack(
    q: torch.Tensor, scales: torch.Tensor, mins: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Our int4 (q (N, K) 0..15, scales and mins (N, G)) in the layout of
    ``torch._weight_int4pack_mm_for_cpu``: its packed weight, and scale_and_zero (G, N', 2) in
    bf16, N' = N rounded up to 16 (zero rows pad W; their outputs are dropped).

    The kernel dequantises ``(q - 8) * scale + zero``; ours is ``q * scale + min``, so
    ``zero = min + 8 * scale``.
    """
    N, K = q.shape
    pad = -N % INT4_KERNEL_N_MULTIPLE
    q32 = F.pad(q.to(torch.int32), (0, 0, 0, pad))  # (N', K)
    packed = torch._convert_weight_to_int4pack_for_cpu(q32, 1)
    zeros = mins.float() + 8 * scales.float()
    sz = torch.stack((scales.float(), zeros), dim=-1)  # (N, G, 2)
    sz = F.pad(sz, (0, 0, 0, 0, 0, pad)).transpose(0, 1).contiguous().to(KERNEL_DTYPE)  # (G, N', 2)
    return packed, sz


class QuantizedLinear(QuantizedWeight):
    """Drop-in for nn.Linear with a quantised weight (the bias stays float32)."""

    def __init__(
        self, in_features: int, out_features: int, bits: int, group_size: int | None = None, bias: bool = True
    ) -> None:
        super().__init__(out_features, in_features, bits, group_size)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int | None = None) -> QuantizedLinear:
        q = cls(linear.in_features, linear.out_features, bits, group_size, bias=linear.bias is not None)
        q.set_weight(linear.weight)
        if linear.bias is not None:
            q.bias = nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.matmul(x)  # (..., N)
        return y if self.bias is None else y + self.bias.to(y.dtype)


class QuantizedEmbedding(QuantizedWeight):
    """Drop-in for nn.Embedding: (num_embeddings, dim) quantised per row (int8) or per row group."""

    def __init__(self, num_embeddings: int, dim: int, bits: int, group_size: int | None = None) -> None:
        super().__init__(num_embeddings, dim, bits, group_size)

    @classmethod
    def from_embedding(
        cls, emb: nn.Embedding, bits: int, group_size: int | None = None
    ) -> QuantizedEmbedding:
        q = cls(emb.num_embeddings, emb.embedding_dim, bits, group_size)
        q.set_weight(emb.weight)
        return q

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.rows(idx)  # (..., dim)


class TiedQuantizedHead(nn.Module):
    """The LM head of a tied model: logits = x @ E^T with the quantised token embedding E. It owns
    no tensors (the embedding does), so the state dict holds the shared matrix once."""

    def __init__(self, embedding: QuantizedEmbedding) -> None:
        super().__init__()
        self._embedding = [embedding]  # a list: not registered as a submodule (no second copy in state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._embedding[0].matmul(x)  # (..., V)

    def extra_repr(self) -> str:
        return "tied to transformer.wte"


# ----------------------------------------------------------------------------- whole models


def check_settings(bits: int, group_size: int | None) -> None:
    if bits not in BITS:
        raise GptlabError(f"bits must be 8 or 4, got {bits!r}")
    if bits == 4 and group_size not in GROUP_SIZES:
        raise GptlabError(
            f"int4 group size must be one of {', '.join(map(str, GROUP_SIZES))}, got {group_size!r}"
        )


def quantization_info(bits: int, group_size: int | None) -> dict[str, Any]:
    """The ``quantization`` entry of a quantised run's model.json."""
    check_settings(bits, group_size)
    return {
        "bits": bits,
        "group_size": group_size if bits == 4 else None,
        "scheme": SCHEMES[bits],
        "format": "gptlab-weight-only",
        "version": 1,
    }


def linear_names(model: nn.Module) -> list[str]:
    """Names of the Linear layers to quantise: every Linear in the blocks, and the LM head."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where the submodule called ``name`` (dotted, e.g. ``transformer.h.0.attn.c_attn``) is."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.ModuleDict) or not hasattr(parent, child) or child.isdigit():
        parent[child] = module  # ModuleDict / ModuleList entries
    else:
        setattr(parent, child, module)


def check_quantizable(model: nn.Module, bits: int, group_size: int | None) -> None:
    """GptlabError unless every layer can be quantised with these settings (and is not already)."""
    check_settings(bits, group_size)
    arch = getattr(getattr(model, "config", None), "arch", "gpt")
    if arch != "gpt":  # its weights live in the recurrent cell, not in Linear layers
        raise GptlabError(
            f"quantisation works on GPTs only; this model is a recurrent {arch.upper()} (model.arch = {arch!r})"
        )
    if is_quantized(model):
        raise GptlabError("the model is already quantised")
    if bits == 4:
        for name in linear_names(model):
            k = model.get_submodule(name).in_features
            if k % group_size:
                raise GptlabError(
                    f"int4 group size {group_size} does not divide in_features {k} of {name}; "
                    f"choose a group size that divides it"
                )


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantizedWeight) for m in model.modules())


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int, group_size: int | None = DEFAULT_GROUP_SIZE) -> nn.Module:
    """Replace, in place, every nn.Linear and the token embedding of a GPT with quantised modules;
    returns the model (in eval mode). Tied embedding + head share one quantised matrix."""
    group_size = group_size if bits == 4 else None
    check_quantizable(model, bits, group_size)
    config = getattr(model, "config", None)
    tied = bool(getattr(config, "tie_weights", False))
    for name in linear_names(model):
        if tied and name == "lm_head":
            continue
        replace_module(model, name, QuantizedLinear.from_linear(model.get_submodule(name), bits, group_size))
    wte = model.transformer.wte
    qwte = QuantizedEmbedding.from_embedding(wte, bits, group_size)
    model.transformer["wte"] = qwte
    if tied:
        model.lm_head = TiedQuantizedHead(qwte)
    elif isinstance(model.lm_head, nn.Linear):
        model.lm_head = QuantizedLinear.from_linear(model.lm_head, bits, group_size)
    model.quantization = quantization_info(bits, group_size)
    use_dynamic_head(model)
    return model.eval()


def empty_quantized_model(config, info: dict[str, Any]) -> nn.Module:
    """A GPT with the structure of a quantised one (zero weights), ready for `load_state_dict`."""
    bits, group_size = info["bits"], info.get("group_size")
    check_settings(bits, group_size)
    with torch.device("meta"):  # float layers: shapes only, replaced by the loaded tensors
        model = GPT(config)
    tied = config.tie_weights
    for name in linear_names(model):
        if tied and name == "lm_head":
            continue
        lin = model.get_submodule(name)
        replace_module(
            model,
            name,
            QuantizedLinear(lin.in_features, lin.out_features, bits, group_size, lin.bias is not None),
        )
    qwte = QuantizedEmbedding(config.vocab_size, config.n_embd, bits, group_size)
    model.transformer["wte"] = qwte
    model.lm_head = (
        TiedQuantizedHead(qwte)
        if tied
        else QuantizedLinear(config.n_embd, config.vocab_size, bits, group_size, bias=False)
    )
    model.quantization = quantization_info(bits, group_size)
    return model


def quantized_tensor_specs(config, info: Any, source: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{name: (shape, dtype)}`` of the tensors a quantised run's weights file holds, from a model
    built on the meta device (nothing allocated); a bad ``quantization`` entry is a GptlabError."""
    if not isinstance(info, dict) or info.get("bits") not in BITS:
        raise GptlabError(f"{source}: invalid quantization entry {info!r} (bits must be 8 or 4)")
    try:
        with torch.device("meta"):
            model = empty_quantized_model(config, info)
    except GptlabError as e:
        raise GptlabError(f"{source}: {e}") from None
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def quantized_from_state_dict(
    config, info: dict[str, Any], state: dict[str, torch.Tensor], source: str
) -> nn.Module:
    """Build a quantised GPT from saved tensors; a missing, extra or misshapen tensor is a
    GptlabError naming ``source`` and the tensor."""
    check_config_matches_shapes(config, {k: tuple(v.shape) for k, v in state.items()}, source)
    expected = quantized_tensor_specs(config, info, source)
    check_tensor_names(expected, state, f"{source} does not match the quantised model")
    for name, (shape, dtype) in expected.items():
        t = state[name]
        if tuple(t.shape) != shape:
            raise GptlabError(f"{source}: tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
        if (dtype in (torch.int8, torch.uint8) or t.dtype in (torch.int8, torch.uint8)) and t.dtype != dtype:
            raise GptlabError(f"{source}: tensor {name!r} has dtype {t.dtype}, expected {dtype}")
        if not dtype.is_floating_point and dtype not in (torch.int8, torch.uint8):
            continue
        if dtype.is_floating_point and not t.is_floating_point():
            raise GptlabError(
                f"{source}: tensor {name!r} has dtype {t.dtype}, expected a floating-point type"
            )
    # float32 copies, and fresh (aligned) allocations for the integer tensors (see _kernel_tensors)
    state = {k: (v.float() if v.is_floating_point() else v.clone()) for k, v in state.items()}
    model = empty_quantized_model(config, info)
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_weights:  # assign=True replaced the embedding's buffers; the head reads them through it
        model.lm_head = TiedQuantizedHead(model.transformer.wte)
    use_dynamic_head(model)
    return model.eval()


def set_backend(model: nn.Module, backend: str, head: bool = True) -> nn.Module:
    """Use the packed CPU kernels (``"kernel"``; an int8 head keeps its ``dynamic`` one unless
    ``head`` is False) or dequantise-then-matmul everywhere (``"reference"``)."""
    if backend not in ("kernel", "reference"):
        raise GptlabError(f"backend must be 'kernel' or 'reference', got {backend!r}")
    for m in model.modules():
        if isinstance(m, QuantizedWeight):
            m.backend = backend
            m._kernel_cache = None
    if backend == "kernel" and head:
        use_dynamic_head(model)
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all tensors in the model's state (each shared tensor counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen or t.device.type == "meta":
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total
