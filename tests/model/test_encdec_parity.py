"""Parity of the BERT-style encoder and the T5-style encoder-decoder with Hugging Face's
``BertForMaskedLM`` and ``T5ForConditionalGeneration`` (tiny random configs built here)."""

import pytest
import torch

from gptlab.model.hf_encdec import encdec_from_t5, encoder_from_bert

transformers = pytest.importorskip("transformers")


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=24,
        type_vocab_size=2,
    )
    return transformers.BertForMaskedLM(cfg).eval()


def _t5():
    torch.manual_seed(0)
    cfg = transformers.T5Config(
        vocab_size=90,
        d_model=32,
        d_kv=8,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward_proj="relu",
        decoder_start_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
    )
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # random init leaves the tiny model's logits nearly flat: spread them
        for p in hf.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    return hf


def test_encoder_matches_bert_for_masked_lm_with_padding(tmp_path):
    hf = _bert()
    hf.save_pretrained(tmp_path)  # through a saved folder, as a user would have it
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    ours = encoder_from_bert(hf.config.to_dict(), hf.state_dict(), mask_id=103 % 120).eval()
    idx = torch.randint(0, 120, (3, 17))
    lengths = torch.tensor([17, 11, 5])
    types = torch.randint(0, 2, (3, 17))
    mask = (torch.arange(17)[None] < lengths[:, None]).long()
    with torch.no_grad():
        expected = hf(input_ids=idx, attention_mask=mask, token_type_ids=types).logits
        got = ours.mlm_logits(ours.encode(idx, lengths, types))
    for b, n in enumerate(lengths.tolist()):  # padded positions are not compared: nothing reads them
        torch.testing.assert_close(got[b, :n], expected[b, :n], atol=1e-4, rtol=0)


def test_encdec_matches_t5_logits_and_greedy_output():
    hf = _t5()
    ours = encdec_from_t5(hf.config.to_dict(), hf.state_dict(), block_size=64).eval()
    src = torch.randint(2, 90, (2, 13))
    src_lengths = torch.tensor([13, 8])
    src_mask = (torch.arange(13)[None] < src_lengths[:, None]).long()
    dec = torch.randint(2, 90, (2, 9))
    with torch.no_grad():
        expected = hf(input_ids=src, attention_mask=src_mask, decoder_input_ids=dec).logits
        got, _ = ours(dec, src=src, src_lengths=src_lengths)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        hf_out = hf.generate(
            input_ids=src, attention_mask=src_mask, max_new_tokens=12, do_sample=False, num_beams=1
        )[:, 1:]  # HF's output starts with the decoder start token
        mine = ours.greedy(src, 12, src_lengths, eos_id=1)
    assert hf_out.shape[1] >= 4  # a meaningful comparison: several decoded tokens
    n = hf_out.shape[1]
    hf_out = hf_out.masked_fill(hf_out == 0, 1)  # HF pads finished rows with pad, we repeat eos
    assert torch.equal(mine[:, :n], hf_out)


def test_encdec_cached_decoding_equals_recomputing_the_prefix():
    hf = _t5()
    ours = encdec_from_t5(hf.config.to_dict(), hf.state_dict(), block_size=64).eval()
    src = torch.randint(2, 90, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    cached = ours.greedy(src, 20, lengths)
    assert torch.equal(cached, ours.greedy(src, 20, lengths, use_cache=False))
    assert cached.shape == (3, 20)
