"""Task data: classification files, stratified splits, balancing, instruction templates, collate masks."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import SMS

from gptlab.data.tasks import (
    ASSISTANT_TOKEN,
    CHAT_SPECIAL_TOKENS,
    USER_TOKEN,
    ClassificationData,
    ClassificationDataset,
    InstructionDataset,
    InstructionExample,
    balance,
    class_weights,
    collate_classification,
    collate_instructions,
    encode_example,
    encode_prompt,
    extract_response,
    format_prompt,
    load_classification,
    load_instructions,
    split_examples,
    stratified_split,
)
from gptlab.errors import GptlabError
from gptlab.tokenizers import EOT, BPETokenizer, CharTokenizer

IGNORE = -100


# --- collate: the hand-checked example -------------------------------------------------------------

EOT_ID, PAD_ID = 9, 0
# (ids = prompt + response + <|endoftext|>, prompt length)
BATCH = [([1, 2, 3, 4, 5, EOT_ID], 3), ([6, 7, 8, EOT_ID], 2)]


def as_lists(*tensors: torch.Tensor) -> list:
    return [t.tolist() for t in tensors]


def test_collate_shifts_targets_and_masks_padding_but_keeps_the_end_of_text():
    inputs, targets = collate_instructions(BATCH, pad_id=PAD_ID)
    assert as_lists(inputs, targets) == [
        [[1, 2, 3, 4, 5], [6, 7, 8, PAD_ID, PAD_ID]],
        [[2, 3, 4, 5, EOT_ID], [7, 8, EOT_ID, IGNORE, IGNORE]],
    ]


def test_collate_with_the_end_of_text_as_pad_still_keeps_the_first_one_as_target():
    inputs, targets = collate_instructions(BATCH, pad_id=EOT_ID)
    assert inputs.tolist()[1] == [6, 7, 8, EOT_ID, EOT_ID]
    assert targets.tolist()[1] == [7, 8, EOT_ID, IGNORE, IGNORE]


def test_collate_masks_the_prompt_tokens_on_request():
    _, targets = collate_instructions(BATCH, pad_id=PAD_ID, mask_prompt=True)
    # row 0: prompt [1, 2, 3]: targets 2 and 3 are prompt tokens; 4 (first response token) stays
    assert targets.tolist() == [[IGNORE, IGNORE, 4, 5, EOT_ID], [IGNORE, 8, EOT_ID, IGNORE, IGNORE]]


def test_collate_truncates_to_the_context_length():
    inputs, targets = collate_instructions(BATCH, pad_id=PAD_ID, context_length=3)
    assert as_lists(inputs, targets) == [[[1, 2, 3], [6, 7, 8]], [[2, 3, 4], [7, 8, EOT_ID]]]
    inputs, targets = collate_instructions(BATCH[1:], pad_id=PAD_ID, context_length=10)
    assert inputs.shape == (1, 3)  # dynamic: the batch's longest row, not the context


def test_collate_with_a_masked_prompt_cuts_the_prompt_not_the_response():
    # row 0 cut to 3 from the start: inputs [3, 4, 5], targets [4, 5, EOT]; the prompt's last
    # target (3 -> 4 is the first response token) stays a target, the rest of the prompt is gone
    inputs, targets = collate_instructions(BATCH, pad_id=PAD_ID, context_length=3, mask_prompt=True)
    assert as_lists(inputs, targets) == [[[3, 4, 5], [6, 7, 8]], [[4, 5, EOT_ID], [IGNORE, 8, EOT_ID]]]
    # a prompt longer than the window alone: every row still has a response target
    long_prompt = [(list(range(1, 21)) + [30, EOT_ID], 20)]
    _, targets = collate_instructions(long_prompt, pad_id=PAD_ID, context_length=8, mask_prompt=True)
    assert targets.tolist() == [[IGNORE] * 6 + [30, EOT_ID]]


def test_collate_refuses_bad_input():
    with pytest.raises(GptlabError):
        collate_instructions([], pad_id=0)
    with pytest.raises(GptlabError, match="at least 2 tokens"):
        collate_instructions([([EOT_ID], 0)], pad_id=0)


# --- collate: the property ---------------------------------------------------------------------------

VOCAB = 50


@st.composite
def instruction_batches(draw):
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        prompt = draw(st.lists(st.integers(0, VOCAB - 2), min_size=1, max_size=12))
        response = draw(st.lists(st.integers(0, VOCAB - 2), min_size=0, max_size=12))
        rows.append((prompt + response + [VOCAB - 1], len(prompt)))  # VOCAB - 1 is <|endoftext|>
    return rows


@settings(max_examples=200, deadline=None)
@given(
    batch=instruction_batches(),
    context=st.one_of(st.none(), st.integers(1, 30)),
    mask_prompt=st.booleans(),
    pad_id=st.sampled_from([0, VOCAB - 1]),
)
def test_collate_masks_exactly_the_intended_positions(batch, context, mask_prompt, pad_id):
    inputs, targets = collate_instructions(
        batch, pad_id=pad_id, context_length=context, mask_prompt=mask_prompt
    )
    longest = max(len(ids) - 1 for ids, _ in batch)
    T = longest if context is None else min(longest, context)
    assert inputs.shape == targets.shape == (len(batch), T)
    for row, (ids, prompt_len) in enumerate(batch):
        n_real = min(len(ids) - 1, T)  # positions holding a real input token
        # a row longer than the window loses its end, or with mask_prompt its start
        offset = len(ids) - 1 - T if mask_prompt and len(ids) - 1 > T else 0
        for i in range(T):
            if i < n_real:
                assert inputs[row, i] == ids[offset + i]
                is_prompt_target = offset + i + 1 < prompt_len  # target lies inside the prompt
                expected = IGNORE if (mask_prompt and is_prompt_target) else ids[offset + i + 1]
                assert targets[row, i] == expected
            else:
                assert inputs[row, i] == pad_id and targets[row, i] == IGNORE
        kept = targets[row][targets[row] != IGNORE].tolist()
        # the response's end-of-text is always learned, unless the context cuts the unmasked row
        if len(ids) - 1 <= T or mask_prompt:
            assert kept[-1] == VOCAB - 1
        if len(ids) - 1 <= T:
            assert kept.count(VOCAB - 1) == ids[1:].count(VOCAB - 1)


# --- instruction files and templates -------------------------------------------------------------


def test_load_shared_alpaca_json_and_the_same_as_jsonl(dataset, tmp_path):
    examples = load_instructions(dataset("instruction-data-subset"))
    raw = json.loads(dataset("instruction-data-subset").read_text())
    assert len(examples) == len(raw) == 990
    assert examples[0] == InstructionExample(raw[0]["instruction"], raw[0]["input"], raw[0]["output"])
    assert sum(not ex.input for ex in examples) == sum(not r["input"] for r in raw)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in raw[:50]) + "\n\n")
    assert load_instructions(jsonl) == examples[:50]


def test_alpaca_prompt_with_and_without_input():
    with_input = format_prompt(InstructionExample("Fix the spelling.", "freind", "friend"))
    assert with_input.endswith("### Instruction:\nFix the spelling.\n\n### Input:\nfreind\n\n### Response:\n")
    assert "paired with an input" in with_input
    without = format_prompt(InstructionExample("Name a colour.", "", "Red."))
    assert "### Input" not in without and without.endswith(
        "### Instruction:\nName a colour.\n\n### Response:\n"
    )


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    text = "Below is an instruction that describes a task. ### Response: friend colour Red. " * 20
    return BPETokenizer.train(text, vocab_size=256 + 20 + 3, special_tokens=(EOT, *CHAT_SPECIAL_TOKENS))


def test_alpaca_encoding_is_prompt_then_response_then_end_of_text(tokenizer):
    ex = InstructionExample("Fix the spelling.", "freind", "friend")
    ids, prompt_len = encode_example(ex, tokenizer, "alpaca")
    assert ids[:prompt_len] == encode_prompt(ex, tokenizer) == tokenizer.encode(format_prompt(ex))
    assert ids[-1] == tokenizer.eot_id and ids.count(tokenizer.eot_id) == 1
    assert tokenizer.decode(ids) == format_prompt(ex) + "friend" + EOT


def test_chat_template_uses_special_tokens_that_data_cannot_forge(tokenizer):
    specials = tokenizer.special_tokens
    ex = InstructionExample(f"Say {EOT} and {ASSISTANT_TOKEN} please", "", "ok")
    ids, prompt_len = encode_example(ex, tokenizer, "chat")
    assert ids[0] == specials[USER_TOKEN]
    assert ids[prompt_len - 2] == specials[ASSISTANT_TOKEN]  # then "\n", then the response
    assert [i for i in ids if i in specials.values()] == [
        specials[USER_TOKEN],
        specials[ASSISTANT_TOKEN],
        specials[EOT],
    ]
    assert tokenizer.decode(ids[:prompt_len]) == format_prompt(ex, "chat")
    plain = CharTokenizer.train("abc Say", special_tokens=[EOT])
    with pytest.raises(GptlabError, match=r"<\|user\|>"):
        encode_example(InstructionExample("Say", "", "abc"), plain, "chat")
    with pytest.raises(GptlabError, match="template"):
        format_prompt(ex, "llama")


def test_extract_response():
    ex = InstructionExample("Name a colour.", "", "Red.")
    assert extract_response(format_prompt(ex) + " Red.\n" + EOT + "junk") == "Red."
    assert extract_response(format_prompt(ex, "chat") + "Blue." + EOT, "chat") == "Blue."
    assert extract_response("just text") == "just text"


def test_instruction_dataset_feeds_collate(tokenizer):
    examples = [
        InstructionExample("Name a colour.", "", "Red."),
        InstructionExample("Fix.", "freind", "friend"),
    ]
    ds = InstructionDataset(examples, tokenizer)
    inputs, targets = collate_instructions([ds[0], ds[1]], pad_id=tokenizer.eot_id, mask_prompt=True)
    for row in range(2):
        ids, prompt_len = ds[row]
        kept = targets[row][targets[row] != IGNORE].tolist()
        assert kept == ids[prompt_len:]  # exactly the response and its end-of-text


def test_split_examples_is_seeded():
    items = list(range(100))
    train, val, test = split_examples(items, 0.1, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert sorted(train + val + test) == items
    assert split_examples(items, 0.1, 0.2, seed=3) == (train, val, test)
    assert split_examples(items, 0.1, 0.2, seed=4) != (train, val, test)


# --- classification files ----------------------------------------------------------------------------


def test_load_headerless_sms_spam_tsv(dataset):
    data = load_classification(dataset("sms-spam-subset"), text_column=1, label_column=0)
    assert data.label_names == ["ham", "spam"]
    assert data.counts() == [3862, 598]  # as documented in shared/data/README.md
    first = dataset("sms-spam-subset").read_text().splitlines()[0].split("\t")
    assert (data.label_names[data.labels[0]], data.texts[0]) == (first[0], first[1])


def test_csv_and_jsonl_with_named_columns(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('id,sms,kind\n1,"hello, world",ham\n2,"two\nlines",spam\n3,plain,ham\n')
    data = load_classification(csv_file, text_column="sms", label_column="kind")
    assert data.texts == ["hello, world", "two\nlines", "plain"] and data.labels == [0, 1, 0]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"t": "a", "y": 10}\n{"t": "b", "y": 2}\n\n{"t": "c", "y": 2}\n')
    data = load_classification(jsonl, text_column="t", label_column="y")
    assert data.label_names == ["2", "10"] and data.labels == [1, 0, 0]  # numeric label order
    fixed = load_classification(jsonl, text_column="t", label_column="y", labels=["10", "2", "7"])
    assert fixed.labels == [0, 1, 1] and fixed.counts() == [1, 2, 0]


MALFORMED = [  # (file name, content, kwargs, words the message must contain)
    ("a.tsv", "label\ttext\nham\thi\nspam\n", {}, ["a.tsv", "line 3", "missing column"]),
    ("b.tsv", "label\tsms\nham\thi\n", {}, ["b.tsv", "line 1", "missing column 'text'"]),
    ("c.csv", "label,text\nham,hi\nspam,   \n", {}, ["c.csv", "line 3", "empty text"]),
    ("d.tsv", "ham\thi\nspam\tbuy\nhamm\tok\n", dict(text_column=1, label_column=0, labels=["ham", "spam"]),
     ["d.tsv", "line 3", "unknown label 'hamm'"]),
    ("e.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label": \n',
     {}, ["e.jsonl", "line 3", "bad JSON"]),
    ("f.jsonl", '{"text": "a", "label": "x"}\n\n{"label": "y"}\n', {}, ["f.jsonl", "line 3", "missing field 'text'"]),
    ("g.json", '[\n {"text": "a", "label": "x"},\n {"text": "", "label": "y"}\n]', {}, ["g.json", "line 3", "empty text"]),
    ("h.tsv", "ham\thi\n", dict(text_column="text", label_column=0, header=False), ["h.tsv", "no header"]),
    ("i.tsv", "label\ttext\nham\thi\n", {}, ["i.tsv", "only the label 'ham'"]),
    ("j.csv", "label,text\nham,hi\nspam,\"unclosed\n", {}, ["j.csv", "line 3"]),
]  # fmt: skip


@pytest.mark.parametrize("name, content, kwargs, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_classification_files_name_the_file_and_line(tmp_path, name, content, kwargs, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GptlabError) as e:
        load_classification(path, **kwargs)
    for word in words:
        assert word in str(e.value)


MALFORMED_INSTRUCTIONS = [
    ("a.json", '[\n {"instruction": "x", "output": "y"},\n {"instruction": "x"}\n]', ["line 3", "missing field 'output'"]),
    ("b.json", '[\n {"instruction": "x", "output": "y"},\n {"instruction": "x", "output": "y"} oops\n]', ["line 3", "bad JSON"]),
    ("c.jsonl", '{"instruction": "x", "output": "y"}\n{"instruction": "x", "output": "y"\n', ["line 2", "bad JSON"]),
    ("d.jsonl", '{"instruction": " ", "output": "y"}\n', ["line 1", "empty text", "instruction"]),
    ("e.jsonl", '{"instruction": "x", "input": 3, "output": "y"}\n', ["line 1", "'input'", "string"]),
    ("f.json", '{"instruction": "x", "output": "y"}', ["line 1", "JSON list"]),
    ("g.jsonl", '["x", "y"]\n', ["line 1", "object"]),
    ("h.txt", "", ["extension"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, content, words", MALFORMED_INSTRUCTIONS, ids=[m[0] for m in MALFORMED_INSTRUCTIONS]
)
def test_malformed_instruction_files_name_the_file_and_line(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(GptlabError) as e:
        load_instructions(path)
    assert name in str(e.value)
    for word in words:
        assert word in str(e.value)


# --- splits, balance, weights, encoding -----------------------------------------------------------


def test_stratified_split_keeps_class_shares_and_is_reproducible():
    data = load_classification(SMS, text_column=1, label_column=0)
    train, val, test = stratified_split(data, val_fraction=0.1, test_fraction=0.2, seed=7)
    for part, fraction in ((val, 0.1), (test, 0.2)):
        for c, n in enumerate(data.counts()):
            assert abs(part.counts()[c] - n * fraction) <= 0.5  # rounded per class
    assert Counter(zip(data.texts, data.labels)) == Counter(
        zip(train.texts + val.texts + test.texts, train.labels + val.labels + test.labels)
    )
    again = stratified_split(data, val_fraction=0.1, test_fraction=0.2, seed=7)
    assert all(a.texts == b.texts and a.labels == b.labels for a, b in zip(again, (train, val, test)))
    other = stratified_split(data, val_fraction=0.1, test_fraction=0.2, seed=8)
    assert other[2].texts != test.texts
    with pytest.raises(GptlabError, match="below 1"):
        stratified_split(data, 0.5, 0.5)


SMALL = ClassificationData(texts=list("abcdefgh"), labels=[0, 0, 0, 0, 0, 0, 1, 1], label_names=["no", "yes"])


def test_balance_undersample_and_oversample():
    under = balance(SMALL, "undersample", seed=0)
    assert under.counts() == [2, 2] and set(under.texts) >= {"g", "h"}
    over = balance(SMALL, "oversample", seed=0)
    assert over.counts() == [6, 6] and set(over.texts) == set("abcdefgh")
    assert balance(SMALL, "none") is SMALL
    assert balance(SMALL, "undersample", seed=1).texts == balance(SMALL, "undersample", seed=1).texts
    with pytest.raises(GptlabError, match="balance"):
        balance(SMALL, "smote")


def test_class_weights_are_inverse_frequency():
    # 8 examples, 2 classes, counts 6 and 2: 8 / (2 * 6) and 8 / (2 * 2)
    torch.testing.assert_close(class_weights(SMALL), torch.tensor([8 / 12, 2.0]))
    with pytest.raises(GptlabError, match="no examples"):
        class_weights(ClassificationData(["a"], [0], ["x", "y"]))


def test_classification_dataset_truncates_and_collate_pads():
    tok = CharTokenizer.train("abcdefgh", special_tokens=[EOT])
    data = ClassificationData(["abcdefgh", "ab", "abc"], [1, 0, 1], ["x", "y"])
    ds = ClassificationDataset(data, tok, max_length=5)
    assert ds[0] == (tok.encode("abcde"), 1) and ds.truncated == 1
    pad = tok.eot_id
    idx, lengths, labels = collate_classification([ds[1], ds[2]], pad_id=pad)
    assert idx.tolist() == [tok.encode("ab") + [pad], tok.encode("abc")]
    assert lengths.tolist() == [2, 3] and labels.tolist() == [0, 1]
    idx, lengths, _ = collate_classification([ds[0], ds[1]], pad_id=pad, pad_to=4)
    assert idx.tolist() == [tok.encode("abcd"), tok.encode("ab") + [pad, pad]] and lengths.tolist() == [4, 2]
