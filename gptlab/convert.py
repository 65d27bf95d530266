"""Runs made from other runs and folders: import a Hugging Face GPT-2 model (``gptlab convert``),
export a run to one (``gptlab export``), quantise a run (``gptlab quantize``).

The maths lives in the model package (gptlab/model/hf.py maps GPT-2's configs and tensors,
gptlab/model/quantize.py quantises weights); HF folders are read and written by
gptlab/hf_folder.py; run directories by gptlab/rundir.py. This module joins them: it reads the
source, checks it, and writes the new run into a folder its caller claimed (``Run.create``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.hf_folder import load_hf_gpt2, to_hf_gpt2
from gptlab.model.gpt import GPT
from gptlab.model.quantize import (
    DEFAULT_GROUP_SIZE,
    check_quantizable,
    check_settings,
    quantization_info,
    quantize_model,
    weight_bytes,
)
from gptlab.rundir import (
    MODEL_JSON,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    check_vocab,
    load_model,
    read_model_json,
    save_model,
)

HUB_FILES = [
    "config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
]


def looks_like_local_path(source: str) -> bool:
    """True when ``source`` can only mean a local folder, not a hub name (NAME or OWNER/NAME).

    It starts with ``.``, ``/`` or ``~``, has more than two components, or its first component is
    a local folder: ``runs/gpt2`` beside a ``runs/`` folder is a typo'd path, not hub user "runs".
    """
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return True
    first = source.split("/", 1)[0]
    return "/" in source and Path(first).is_dir()


def resolve_hf_source(source: str, revision: str | None = None) -> Path:
    """A local HF directory, or a hub name (``gpt2``, ``openai-community/gpt2``) downloaded with
    huggingface_hub when online, at ``revision`` (a branch, tag or commit) when given; offline or
    without huggingface_hub, a GptlabError says so."""
    path = Path(source).expanduser()
    if path.exists() or looks_like_local_path(source):
        if not path.exists():
            raise GptlabError(
                f"no such directory: {source} (give a folder with a Hugging Face GPT-2 model, or a "
                "hub name such as gpt2 or openai-community/gpt2)"
            )
        if not path.is_dir():
            raise GptlabError(
                f"{source} is not a directory with a Hugging Face GPT-2 model (config.json + weights)"
            )
        if revision is not None:
            raise GptlabError(
                f"--revision {revision} only applies to hub downloads, and {source} is a local "
                "directory; leave --revision out"
            )
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise GptlabError(
            f"{source!r} is not a local directory, and downloading it needs huggingface_hub "
            "(pip install 'gptlab[hf]')"
        ) from None
    at = f" at revision {revision!r}" if revision is not None else ""
    try:
        return Path(snapshot_download(repo_id=source, revision=revision, allow_patterns=HUB_FILES))
    except Exception as e:  # network, auth and not-found errors all mean the same to the user
        raise GptlabError(
            f"cannot download {source!r}{at} from the Hugging Face hub ({type(e).__name__}: {e}); "
            "without network access, download the model elsewhere and pass its directory"
        ) from None


def convert_from_hf(source: str, out_dir: str | os.PathLike, revision: str | None = None) -> tuple[Path, GPT]:
    """Import an HF GPT-2 directory or hub name (at ``revision``) into a gptlab run directory."""
    hf_dir = resolve_hf_source(source, revision)
    model, tokenizer = load_hf_gpt2(hf_dir)
    check_vocab(model, tokenizer, str(hf_dir))
    extra = {"converted_from": source} | ({"revision": revision} if revision is not None else {})
    return save_model(out_dir, model, tokenizer, extra=extra), model


def export_to_hf(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Export a gptlab run directory to an HF GPT-2 directory (weights, config, tokenizer files)."""
    model, tokenizer = load_model(model_path)
    return to_hf_gpt2(model, out_dir, tokenizer)


def dir_bytes(path) -> int:
    """Size on disk of a run's model files (model.json, model.safetensors, tokenizer.json): what a
    user ships to run it (a training run's checkpoints and optimizer state are not counted)."""
    files = (Path(path) / name for name in (MODEL_JSON, WEIGHTS_FILE, TOKENIZER_FILE))
    return sum(p.stat().st_size for p in files if p.is_file())


def quantize_run(
    model_path,
    out,
    bits: int,
    group_size: int | None = DEFAULT_GROUP_SIZE,
    eval_file=None,
    eval_max_chars: int | None = None,
) -> dict[str, Any]:
    """Quantise the run at ``model_path`` into a new run directory ``out``; returns a summary:
    sizes on disk before/after, settings, and with ``eval_file`` the perplexity of both models
    on it (the first ``eval_max_chars`` characters, if given)."""
    group_size = group_size if bits == 4 else None
    check_settings(bits, group_size)
    if eval_max_chars is not None and eval_max_chars < 1:  # text[:-5] would silently drop the tail
        raise GptlabError(f"eval_max_chars must be a positive number of characters, got {eval_max_chars}")
    src, out = Path(model_path), Path(out)
    if not src.exists():
        raise GptlabError(f"model not found: {src}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GptlabError(f"output {out} already exists and is not an empty folder: choose a new --out")
    if (src / MODEL_JSON).is_file():
        _, meta = read_model_json(src)
        if meta.get("quantization") is not None:
            raise GptlabError(f"{src} is already quantised ({meta['quantization'].get('bits')}-bit)")
    model, tokenizer = load_model(src, device="cpu")
    check_quantizable(model, bits, group_size)  # before anything is written
    weights = src / WEIGHTS_FILE
    before = dir_bytes(src) if (src / MODEL_JSON).is_file() else None
    float_weight_bytes = weight_bytes(model)

    text = None
    result: dict[str, Any] = {}
    if eval_file is not None:
        from gptlab.data.corpus import read_text_file
        from gptlab.eval.perplexity import evaluate_text

        text = read_text_file(eval_file)
        if eval_max_chars:
            text = text[:eval_max_chars]
        result["perplexity_fp32"] = evaluate_text(model, tokenizer, text).perplexity

    qmodel = quantize_model(model, bits, group_size)
    save_model(out, qmodel, tokenizer, extra={"quantized_from": str(src)})
    if text is not None:
        from gptlab.eval.perplexity import evaluate_text

        reloaded, _ = load_model(out, device="cpu")  # score what was written, as a user would load it
        ppl = evaluate_text(reloaded, tokenizer, text).perplexity
        result["perplexity_quantized"] = ppl
        result["perplexity_change_percent"] = 100.0 * (ppl / result["perplexity_fp32"] - 1.0)
        result["eval_file"] = str(eval_file)
    after = dir_bytes(out)
    return {
        "model": str(src),
        "out": str(out),
        **quantization_info(bits, group_size),
        "run_bytes_before": before,
        "run_bytes_after": after,
        "weights_file_bytes_before": weights.stat().st_size if weights.is_file() else None,
        "weights_file_bytes_after": (out / WEIGHTS_FILE).stat().st_size,
        "weight_bytes_in_memory_before": float_weight_bytes,
        "weight_bytes_in_memory_after": weight_bytes(qmodel),
        **result,
    }
