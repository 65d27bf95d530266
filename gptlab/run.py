"""What a run is: the one answer to "what kind of run is this, what does it hold, where is its data".

    run = Run.open("runs/shakespeare")
    run.kind            # "lm", "instruct", "classifier", "hf-import" or "quantized"
    run.config          # the GPTConfig of its model
    run.template        # the prompt template it was fine-tuned with ("alpaca" when it says none)
    run.fields          # (input field, output field) of an input -> output fine-tune
    run.tokenizer       # its tokenizer, loaded once
    run.data_dir        # the prepared data it was pretrained on, or None
    run.windows("val", n=64, length=128, seed=0)    # token windows from that data
    model, tokenizer = run.load(device="cpu")

Kinds, from the files a run holds (gptlab/rundir.py documents the model files):

* ``classifier``: ``classifier.json`` (``gptlab finetune classify``; a LoRA classifier holds only
  the adapter and names its base run);
* ``quantized``: model.json has ``"quantization"`` (``gptlab quantize``);
* ``instruct``: model.json's extra says ``"finetune": "instruct"`` (``gptlab finetune instruct``);
* ``hf-import``: a Hugging Face GPT-2 folder (config.json), or a run converted from one
  (``gptlab convert``: extra ``"converted_from"``);
* ``lm``: any other gptlab model folder: a pretraining run, or a checkpoint folder inside one.

Writers claim their folder with ``Run.create(out)`` (gptlab.outputs: nothing a user made is lost).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gptlab.errors import GptlabError
from gptlab.finetune.classifier_run import CLASSIFIER_JSON, load_classifier, read_classifier_json
from gptlab.hf_folder import HF_CONFIG_FILE, read_hf_config
from gptlab.model import GPTConfig
from gptlab.rundir import (
    CHECKPOINTS_DIR,
    MODEL_JSON,
    TOKENIZER_FILE,
    latest_checkpoint,
    load_model,
    read_model_json,
)

RUN_KINDS = ("lm", "instruct", "classifier", "hf-import", "quantized")
CONFIG_TOML = "config.toml"  # the training config `gptlab train` copies into its run
DATA_DIR = "data"  # RUN/data: the data `gptlab train` prepared from data.input
DATA_META = "meta.json"  # what makes a folder a prepared data folder (gptlab.data.shards)
BEST_DIR = "best"  # RUN/best: the best-validation model `gptlab train` keeps
DEFAULT_TEMPLATE = "alpaca"

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Run:
    """A run directory, read once: see the module docstring. Build it with ``Run.open``."""

    path: Path
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)  # model.json ({} for a HF folder)

    # --- opening and creating ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: PathLike) -> Run:
        """The run at ``path``; GptlabError when it is not one (saying what a run holds)."""
        path = Path(path)
        if not path.exists():
            raise GptlabError(f"{path} does not exist: give a run directory made by gptlab")
        if not path.is_dir():
            raise GptlabError(f"{path} is not a folder: give a run directory made by gptlab")
        if (path / CLASSIFIER_JSON).is_file():
            meta = read_model_json(path)[1] if (path / MODEL_JSON).is_file() else {}
            return cls(path, "classifier", meta)
        model_folder = latest_checkpoint(path)  # a run killed before publishing: its checkpoint
        if (model_folder / MODEL_JSON).is_file():
            meta = read_model_json(model_folder)[1]
            return cls(path, _kind_from_meta(meta), meta)
        if (path / HF_CONFIG_FILE).is_file():
            return cls(path, "hf-import", {})
        raise GptlabError(
            f"{path} is not a run: no {MODEL_JSON} (a gptlab run), {CLASSIFIER_JSON} (a classifier run) "
            f"or {HF_CONFIG_FILE} (a Hugging Face GPT-2 folder)"
        )

    @staticmethod
    def create(
        out: PathLike,
        *,
        what: str = "run directory",
        overwrite: bool = False,
        sources: tuple[PathLike | None, ...] | list[PathLike | None] = (),
    ) -> Path:
        """Claim ``out`` as a new, empty run folder and return it: an existing non-empty folder is
        refused unless ``overwrite`` (gptlab.outputs.claim_folder), and so is a folder inside one
        of ``sources`` (the runs or data the writer reads)."""
        from gptlab.outputs import claim_folder

        return claim_folder(out, what=what, overwrite=overwrite, sources=sources)

    # --- what it is ---------------------------------------------------------------------------------

    @property
    def extra(self) -> dict[str, Any]:
        """model.json's ``extra``: what the writer recorded (template, finetune kind, sources)."""
        extra = self.meta.get("extra")
        return extra if isinstance(extra, dict) else {}

    @cached_property
    def config(self) -> GPTConfig:
        """The model's config (a LoRA classifier's is its base run's)."""
        if self.meta:
            return GPTConfig(**self.meta["config"])
        if self.kind == "classifier":
            return Run.open(self.classifier_base).config
        return read_hf_config(self.path)

    @property
    def template(self) -> str:
        """The prompt template an instruction-tuned run was trained with: a template name, or the
        prompt string with ``{input}`` of an input -> output fine-tune; ``"alpaca"`` for any
        other run (or a template name this version does not know)."""
        from gptlab.data.tasks import TEMPLATES, is_prompt_template

        template = self.extra.get("template")
        return template if template in TEMPLATES or is_prompt_template(template) else DEFAULT_TEMPLATE

    @property
    def fields(self) -> tuple[str | None, str | None]:
        """(input field, output field) of the data an input -> output fine-tune read; Nones
        for any other run."""
        names = (self.extra.get("input_field"), self.extra.get("output_field"))
        return tuple(n if isinstance(n, str) and n else None for n in names)  # type: ignore[return-value]

    @cached_property
    def classifier_meta(self) -> dict[str, Any]:
        """classifier.json, validated (GptlabError when this is not a classifier run)."""
        return read_classifier_json(self.path)

    @property
    def classifier_base(self) -> Path:
        """The base run a LoRA (or other --peft) classifier's adapter belongs to; the run itself otherwise."""
        meta = self.classifier_meta
        return Path(meta["base_model"]) if meta.get("lora") or meta.get("peft") else self.path

    @cached_property
    def tokenizer(self):
        """Its tokenizer (a LoRA classifier keeps its own copy; a HF folder its tokenizer files)."""
        if self.kind == "hf-import" and not self.meta:  # its tokenizer.json, if any, is HF's format
            from gptlab.tokenizers.interop import load_hf_gpt2_tokenizer

            return load_hf_gpt2_tokenizer(self.path)
        if (self.path / TOKENIZER_FILE).is_file():
            from gptlab.tokenizers import load_tokenizer

            return load_tokenizer(self.path / TOKENIZER_FILE)
        return self.load(device="cpu")[1]

    # --- where its data is --------------------------------------------------------------------------

    @cached_property
    def train_config(self):
        """The training config (config.toml) of the run this folder belongs to, or None: a
        checkpoint folder or ``best/`` inside a run answers for the run."""
        from gptlab.config import load_config

        for folder in self._run_folders():
            if (folder / CONFIG_TOML).is_file():
                return load_config(str(folder / CONFIG_TOML))
        return None

    @cached_property
    def data_dir(self) -> Path | None:
        """The prepared data folder the run was pretrained on: RUN/data, or the config's
        ``data.dir``; None when there is none (a converted or fine-tuned model)."""
        candidates: list[Path] = []
        for folder in self._run_folders():
            candidates.append(folder / DATA_DIR)
            if (folder / CONFIG_TOML).is_file():
                try:
                    config = self.train_config
                except GptlabError:
                    config = None
                if config is not None and config.data.dir:
                    candidates.append(Path(config.data.dir))
                break
        return next((c for c in candidates if (c / DATA_META).is_file()), None)

    def require_data_dir(self) -> Path:
        """``data_dir``, or a GptlabError saying where it was looked for."""
        if self.data_dir is None:
            raise GptlabError(
                f"cannot find the data {self.path} was trained on (no {self.path / DATA_DIR / DATA_META} "
                f"and no data.dir in {self.path / CONFIG_TOML}): give the texts explicitly"
            )
        return self.data_dir

    def has_split(self, split: str) -> bool:
        """Whether its data holds the token file of ``split`` ("train" or "val"): a forgetting
        measure needs the val split of the data the base model was pretrained on."""
        from gptlab.data.shards import has_split

        return self.data_dir is not None and has_split(self.data_dir, split)

    def windows(self, split: str, n: int, length: int, seed: int = 0) -> list[list[int]]:
        """``n`` random windows of ``length`` tokens from a split ("train" or "val") of its data."""
        from gptlab.data.shards import TokenDataset, sample_windows

        return sample_windows(TokenDataset(self.require_data_dir(), split).tokens, n, length, seed)

    def _run_folders(self) -> list[Path]:
        """This folder, then the run it sits in: RUN/best -> RUN, RUN/checkpoints/step-N -> RUN.
        Only those: any other folder's parent is not this run's (a ``data/`` beside a fine-tuned
        run is someone else's data)."""
        if self.path.parent.name == CHECKPOINTS_DIR:
            return [self.path, self.path.parent.parent]
        if self.path.name == BEST_DIR:
            return [self.path, self.path.parent]
        return [self.path]

    # --- loading ------------------------------------------------------------------------------------

    def load(self, device: str = "cpu", dtype=None):
        """``(model, tokenizer)`` in eval mode: a classifier run gives its GPT (what reads a
        language model: attention, the lens, generation); ``load_classifier`` gives the classifier."""
        if self.kind == "classifier":
            clf = self.load_classifier(device)
            return clf.model.gpt, clf.tokenizer
        return load_model(self.path, device=device, dtype=dtype)

    def load_classifier(self, device: str = "cpu"):
        """The classifier of a classifier run (gptlab.finetune.classifier_run.LoadedClassifier)."""
        return load_classifier(self.path, device=device)


def _kind_from_meta(meta: dict[str, Any]) -> str:
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    if meta.get("quantization") is not None:
        return "quantized"
    if extra.get("finetune") == "instruct":
        return "instruct"
    if "converted_from" in extra:
        return "hf-import"
    return "lm"
