"""The GPT model: `GPTConfig` (architecture), `GPT` (the network), `KVCache` (incremental decoding)."""

from gptlab.model.config import PRESETS, GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.heads import GPTClassifier
from gptlab.model.kv_cache import KVCache
from gptlab.model.lora import LoRALinear, apply_lora, load_adapter, merge_lora, save_adapter, unmerge_lora

__all__ = [
    "GPT",
    "GPTConfig",
    "GPTClassifier",
    "KVCache",
    "LoRALinear",
    "PRESETS",
    "apply_lora",
    "load_adapter",
    "merge_lora",
    "save_adapter",
    "unmerge_lora",
]
