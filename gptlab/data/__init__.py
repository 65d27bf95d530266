"""Data: text in (corpus), named downloads (registry), token shards and batches (shards)."""

from gptlab.data.corpus import (
    default_corpus,
    default_documents,
    find_text_files,
    iter_texts,
    read_text_file,
    read_texts,
)
from gptlab.data.registry import REGISTRY, DatasetEntry, download, list_datasets
from gptlab.data.shards import BatchSampler, TokenDataset, iter_eval_batches, prepare

__all__ = [
    "REGISTRY",
    "BatchSampler",
    "DatasetEntry",
    "TokenDataset",
    "default_corpus",
    "default_documents",
    "download",
    "find_text_files",
    "iter_eval_batches",
    "iter_texts",
    "list_datasets",
    "prepare",
    "read_text_file",
    "read_texts",
]
