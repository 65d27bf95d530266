"""The GPT model: `GPTConfig` (architecture), `GPT` (the network), `KVCache` (incremental decoding)."""

from gptlab.model.config import PRESETS, GPTConfig
from gptlab.model.gpt import GPT
from gptlab.model.kv_cache import KVCache

__all__ = ["GPT", "GPTConfig", "KVCache", "PRESETS"]
