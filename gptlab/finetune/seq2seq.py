"""Train an encoder-decoder (``model.arch = encdec``, gptlab/model/encdec.py) on input -> output
pairs (translation, summarisation): ``gptlab finetune seq2seq``.

The data is any pairs file gptlab.data.pairs reads (e.g. Multi30k's ``{"en", "de"}``), split
into train / test by ``test_fraction``. The model is new (shaped by ``n_layer``, ``n_head``,
``n_embd``, ``block_size``) over the tokenizer of ``tokenizer`` (a tokenizer JSON file or a run
directory holding one), or ``model``: an encoder-decoder run to continue. One id is reserved
after the tokenizer's: it is both the decoder's start token (``start_id``) and the end of a
target, so no tokenizer changes (T5 uses pad and </s>; one id does both jobs here).

Teacher forcing: the decoder reads the target shifted right behind the start token and is
trained with the cross-entropy of every target token and the end token (padding ignored);
AdamW, constant learning rate. At the end the test inputs are decoded greedily with the KV cache
and scored with corpus BLEU (sacrebleu's definition, gptlab.eval.bleu) and exact match. The run directory holds
the model (loads with ``--model``), results.json, and outputs.jsonl (input, reference, output).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gptlab.data.pairs import Pair, load_pairs
from gptlab.errors import GptlabError
from gptlab.eval.bleu import corpus_bleu
from gptlab.io import atomic_write_json, atomic_write_text
from gptlab.model.config import GPTConfig
from gptlab.model.encdec import EncoderDecoder, shift_right
from gptlab.model.gpt import IGNORE_INDEX
from gptlab.options import option, positive_int, required
from gptlab.rundir import save_model


@dataclass
class Seq2SeqOptions:
    """Everything `finetune_seq2seq` needs; the CLI flags are built from these fields."""

    data: str = required("input -> output pairs (JSONL or a JSON list)", metavar="FILE")
    input_field: str = required("the field holding the input", metavar="NAME")
    output_field: str = required("the field holding the target", metavar="NAME")
    out: str = required("the new run directory", metavar="DIR")
    tokenizer: str | None = option(
        None, "a tokenizer JSON file, or a run holding one (new model)", metavar="PATH"
    )
    model: str | None = option(None, "an encoder-decoder run to continue training instead", metavar="RUN")
    n_layer: int = option(2, "layers in each stack (new model)", type=positive_int)
    n_head: int = option(4, "attention heads (new model)", type=positive_int)
    n_embd: int = option(128, "width (new model)", type=positive_int)
    block_size: int = option(
        64, "longest input / target in tokens (new model); longer ones are cut", type=positive_int
    )
    epochs: int = option(5, "passes over the training pairs", type=positive_int)
    batch_size: int = option(16, "pairs per step", type=positive_int)
    lr: float = option(1e-3, "AdamW learning rate")
    test_fraction: float = option(0.1, "share of the pairs held out for BLEU")
    max_test: int = option(200, "test pairs decoded for BLEU", type=positive_int)
    seed: int = option(0, "split, order and init seed")
    device: str = option("cpu", "cpu, cuda, mps")
    minutes: float = option(0.0, "stop training after this much wall time (0: no limit)")

    def check(self) -> None:
        if (self.tokenizer is None) == (self.model is None):
            raise GptlabError(
                "give exactly one of --tokenizer (a new model) and --model (an encoder-decoder run)"
            )
        if not 0 < self.test_fraction < 1:
            raise GptlabError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if not self.lr > 0:
            raise GptlabError(f"--lr must be > 0, got {self.lr}")


def _start(options: Seq2SeqOptions) -> tuple[EncoderDecoder, Any]:
    from gptlab.run import Run
    from gptlab.tokenizers import load_tokenizer

    if options.model is not None:
        model, tokenizer = Run.open(options.model).load(device=options.device)
        if model.config.arch != "encdec":
            raise GptlabError(
                f"--model {options.model} is model.arch={model.config.arch!r}, not an encoder-decoder"
            )
        return model.train(), tokenizer
    path = Path(options.tokenizer)
    tokenizer = load_tokenizer(path / "tokenizer.json" if path.is_dir() else path)
    reserved = tokenizer.vocab_size  # start and end of a target (module docstring)
    config = GPTConfig(
        vocab_size=reserved + 1, block_size=options.block_size, n_layer=options.n_layer, n_head=options.n_head,
        n_embd=options.n_embd, bias=False, norm="rmsnorm", norm_eps=1e-6, activation="relu", arch="encdec",
        start_id=reserved,
    )  # fmt: skip
    torch.manual_seed(options.seed)
    return EncoderDecoder(config).to(options.device).train(), tokenizer


def encode_batch(pairs: list[Pair], tokenizer, config: GPTConfig, device) -> tuple[torch.Tensor, ...]:
    """(src (B, S), src_lengths (B,), decoder inputs (B, T), targets (B, T)): inputs cut to
    block_size; targets end with the end token (= start_id), padded with -100."""
    n = config.block_size
    srcs = [tokenizer.encode(p.input)[:n] or [config.start_id] for p in pairs]
    tgts = [tokenizer.encode(p.output)[: n - 1] + [config.start_id] for p in pairs]
    src = torch.zeros(len(pairs), max(map(len, srcs)), dtype=torch.long)
    tgt = torch.full((len(pairs), max(map(len, tgts))), IGNORE_INDEX, dtype=torch.long)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)], tgt[i, : len(t)] = torch.tensor(s), torch.tensor(t)
    lengths = torch.tensor([len(s) for s in srcs])
    return src.to(device), lengths.to(device), shift_right(tgt, config.start_id).to(device), tgt.to(device)


@torch.no_grad()
def translate(
    model: EncoderDecoder, tokenizer, texts: list[str], max_new_tokens: int, batch_size: int = 32
) -> list[str]:
    """Greedy outputs (KV cache) of ``texts``, cut at the end token."""
    model.eval()
    cfg, device = model.config, next(model.parameters()).device
    outputs = []
    for i in range(0, len(texts), batch_size):
        pairs = [Pair(t, ("",)) for t in texts[i : i + batch_size]]
        src, lengths, _, _ = encode_batch(pairs, tokenizer, cfg, device)
        for row in model.greedy(src, max_new_tokens, lengths, eos_id=cfg.start_id).tolist():
            row = row[: row.index(cfg.start_id)] if cfg.start_id in row else row
            outputs.append(tokenizer.decode([t for t in row if t < tokenizer.vocab_size]))
    return outputs


def finetune_seq2seq(options: Seq2SeqOptions, on_epoch=None) -> dict[str, Any]:
    """Train (module docstring), decode the test split, write the run; returns results.json."""
    options.check()
    pairs = load_pairs(options.data, options.input_field, options.output_field)
    order = list(range(len(pairs)))
    random.Random(options.seed).shuffle(order)
    n_test = max(1, round(len(pairs) * options.test_fraction))
    if len(pairs) - n_test < 1:
        raise GptlabError(f"{options.data}: too few pairs ({len(pairs)}) for a train and a test split")
    test = [pairs[i] for i in order[:n_test]][: options.max_test]
    train = [pairs[i] for i in order[n_test:]]
    model, tokenizer = _start(options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.01)
    rng, start, history, stopped = random.Random(options.seed + 1), time.monotonic(), [], False
    for epoch in range(1, options.epochs + 1):
        rng.shuffle(train)
        total = count = 0.0
        for i in range(0, len(train), options.batch_size):
            src, lengths, dec, tgt = encode_batch(
                train[i : i + options.batch_size], tokenizer, model.config, options.device
            )
            _, loss = model(dec, tgt, src=src, src_lengths=lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total, count = total + loss.item(), count + 1
            if options.minutes and time.monotonic() - start > 60 * options.minutes:
                stopped = True
                break
        history.append({"epoch": epoch, "train_loss": total / count})
        if on_epoch is not None:
            on_epoch(history[-1])
        if stopped:
            break
    outputs = translate(model, tokenizer, [p.input for p in test], model.config.block_size)
    bleu = corpus_bleu(outputs, [[p.output for p in test]])
    out = Path(options.out)
    extra = {"finetune": "seq2seq", "input_field": options.input_field, "output_field": options.output_field}
    save_model(out, model, tokenizer, extra=extra)
    atomic_write_text(
        out / "outputs.jsonl",
        "".join(
            json.dumps({"input": p.input, "reference": p.output, "output": o}, ensure_ascii=False) + "\n"
            for p, o in zip(test, outputs)
        ),  # fmt: skip
    )
    results = {
        "out_dir": str(out),
        "n_params": model.num_params(),
        "splits": {"train": len(train), "test": len(test)},
        "history": history,
        "train_seconds": round(time.monotonic() - start, 2),
        "test_bleu": bleu.score,
        "test_exact_match": sum(o.strip() == p.output.strip() for p, o in zip(test, outputs)) / len(test),
        "options": asdict(options),
    }
    atomic_write_json(out / "results.json", results)
    return results
