"""Classification head: pooling positions, padding invariance, trainable parts, a task learned to 100%."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptlab.errors import GptlabError
from gptlab.model import GPT, GPTConfig
from gptlab.model.heads import GPTClassifier
from gptlab.model.lora import apply_lora

VOCAB, PAD = 16, 15


def make_classifier(seed: int = 0, num_classes: int = 3, pooling: str = "last", **overrides) -> GPTClassifier:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    return GPTClassifier(GPT(GPTConfig(**{**cfg, **overrides})), num_classes, pooling=pooling).eval()


def pad_batch(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    idx = torch.tensor([s + [pad] * (T - len(s)) for s in seqs])
    return idx, torch.tensor([len(s) for s in seqs])


SEQS = [[1, 4, 7, 2, 9], [3, 3, 8, 1, 0, 12, 5, 6], [11, 2, 4]]


def unpadded_states(clf: GPTClassifier, seq: list[int]) -> torch.Tensor:
    """Final-normed hidden states (T, C) of one sequence run alone, with no padding at all."""
    x = clf.gpt.hidden_states(torch.tensor([seq]))[-1]
    return clf.gpt.transformer.ln_f(x)[0]


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_last_pooling_takes_the_last_real_token_and_ignores_padding(pos_encoding):
    clf = make_classifier(pos_encoding=pos_encoding)
    with torch.no_grad():
        for pad in (PAD, 0, 7):  # any pad id: right padding cannot reach a real token (causal)
            idx, lengths = pad_batch(SEQS, pad)
            feats = clf.features(idx, lengths)  # (3, C)
            for row, seq in enumerate(SEQS):
                states = unpadded_states(clf, seq)
                torch.testing.assert_close(feats[row], states[len(seq) - 1], atol=1e-5, rtol=0)
                if len(seq) > 1:  # and not its neighbour: the test can tell positions apart
                    assert not torch.allclose(feats[row], states[len(seq) - 2], atol=1e-3)


def test_mean_pooling_averages_exactly_the_real_tokens():
    clf = make_classifier(pooling="mean")
    idx, lengths = pad_batch(SEQS, PAD)
    with torch.no_grad():
        feats = clf.features(idx, lengths)
        padded_states = clf.gpt.transformer.ln_f(clf.gpt.hidden_states(idx)[-1])  # (3, T, C)
        for row, seq in enumerate(SEQS):
            torch.testing.assert_close(feats[row], unpadded_states(clf, seq).mean(0), atol=1e-5, rtol=0)
            if len(seq) < idx.shape[1]:  # including a pad position would change it
                assert not torch.allclose(feats[row], padded_states[row].mean(0), atol=1e-3)


def test_logits_and_weighted_loss():
    clf = make_classifier()
    clf.class_weights = torch.tensor([1.0, 2.0, 0.5])
    idx, lengths = pad_batch(SEQS, PAD)
    labels = torch.tensor([0, 1, 2])
    logits, loss = clf(idx, lengths, labels)
    assert logits.shape == (3, 3)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, weight=clf.class_weights))
    torch.testing.assert_close(clf.predict_proba(idx, lengths).sum(-1), torch.ones(3))


def test_bad_arguments_are_refused():
    gpt = make_classifier().gpt
    with pytest.raises(GptlabError, match="num_classes"):
        GPTClassifier(gpt, 1)
    with pytest.raises(GptlabError, match="pooling"):
        GPTClassifier(gpt, 2, pooling="max")
    with pytest.raises(GptlabError, match="class_weights"):
        GPTClassifier(gpt, 2, class_weights=torch.ones(3))
    clf = make_classifier()
    idx, _ = pad_batch(SEQS, PAD)
    with pytest.raises(GptlabError, match="lengths"):
        clf(idx, torch.tensor([5, 9, 3]))  # 9 > T = 8
    with pytest.raises(GptlabError, match="lengths"):
        clf(idx, torch.tensor([5, 8]))


def trainable_names(clf: GPTClassifier) -> set[str]:
    return {n for n, p in clf.named_parameters() if p.requires_grad}


def test_set_trainable_chooses_the_parts():
    clf = make_classifier(n_layer=3)
    clf.set_trainable("head")
    assert trainable_names(clf) == {"head.weight", "head.bias"}
    clf.set_trainable("last:1")
    names = trainable_names(clf)
    assert {n.split(".")[3] for n in names if n.startswith("gpt.transformer.h.")} == {"2"}
    assert "gpt.transformer.ln_f.weight" in names and "head.weight" in names
    assert not any("wte" in n or "wpe" in n for n in names)
    clf.set_trainable("last:0")
    assert trainable_names(clf) == {
        "gpt.transformer.ln_f.weight",
        "gpt.transformer.ln_f.bias",
        "head.weight",
        "head.bias",
    }
    clf.set_trainable("all")
    assert trainable_names(clf) == {n for n, _ in clf.named_parameters()}
    for bad in ("last:4", "last:x", "some"):
        with pytest.raises(GptlabError, match="trainable"):
            clf.set_trainable(bad)


def test_set_trainable_keeps_lora_parameters_trainable():
    clf = make_classifier()
    apply_lora(clf.gpt, rank=2, targets=("attn.c_attn",))
    clf.set_trainable("head")
    names = trainable_names(clf)
    assert {"head.weight", "head.bias"} < names
    assert {n for n in names if not n.startswith("head.")} == {
        f"gpt.transformer.h.{i}.attn.c_attn.lora_{ab}" for i in range(2) for ab in "AB"
    }


def synthetic_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class = the first token (0, 1 or 2); then 2..9 filler tokens from 3..14; right padding.
    The last token must look back to position 0, across a varying distance."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    seqs = []
    for label in labels.tolist():
        length = int(torch.randint(2, 10, (1,), generator=g))
        seqs.append([label] + torch.randint(3, 15, (length,), generator=g).tolist())
    idx, lengths = pad_batch(seqs, PAD)
    return idx, lengths, labels


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_tiny_synthetic_task_reaches_100_percent(pooling):
    clf = make_classifier(seed=1, pooling=pooling)
    clf.set_trainable("all")
    train_idx, train_len, train_y = synthetic_task(512, seed=2)
    test_idx, test_len, test_y = synthetic_task(200, seed=3)
    opt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(4)
    clf.train()
    for _ in range(100):  # 100% from about step 30 on this task
        batch = torch.randint(0, len(train_y), (32,), generator=g)
        _, loss = clf(train_idx[batch], train_len[batch], train_y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        predictions = clf(test_idx, test_len)[0].argmax(-1)
    assert (predictions == test_y).float().mean().item() == 1.0
