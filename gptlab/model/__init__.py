"""The GPT model: `GPTConfig` (architecture), `GPT` (the network), `KVCache` (incremental decoding);
`RecurrentLM`, the LSTM/GRU baseline; `Encoder` (BERT-style) and `EncoderDecoder` (T5-style);
`build_model` picks between them by ``config.arch``."""

from gptlab.model.build import build_model, model_from_state_dict
from gptlab.model.config import PRESETS, GPTConfig
from gptlab.model.encdec import EncoderDecoder
from gptlab.model.encoder import Encoder
from gptlab.model.gpt import GPT
from gptlab.model.heads import GPTClassifier
from gptlab.model.kv_cache import KVCache
from gptlab.model.lora import LoRALinear, apply_lora, load_adapter, merge_lora, save_adapter, unmerge_lora
from gptlab.model.rnn import RecurrentLM, RecurrentState

__all__ = [
    "Encoder",
    "EncoderDecoder",
    "GPT",
    "GPTConfig",
    "GPTClassifier",
    "KVCache",
    "LoRALinear",
    "PRESETS",
    "RecurrentLM",
    "RecurrentState",
    "apply_lora",
    "build_model",
    "load_adapter",
    "merge_lora",
    "model_from_state_dict",
    "save_adapter",
    "unmerge_lora",
]
