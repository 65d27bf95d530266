"""Knowledge distillation (gptlab.train.distill, `gptlab distill`): the KL term by hand, alpha=1 is
ordinary training bit for bit, the tokenizer check, precomputed top-k, and the student as a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from samples import TINY_TRAINING

from gptlab.cli import main
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.run import Run
from gptlab.train import train
from gptlab.train.distill import DistillOptions, distill, soft_kl, topk_kl
from gptlab.train.trainer import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def hand_kl(p_logits, q_logits, t):
    """KL(softmax(p/t) || softmax(q/t)) * t^2, written out with math.exp."""
    zp = sum(math.exp(v / t) for v in p_logits)
    zq = sum(math.exp(v / t) for v in q_logits)
    p = [math.exp(v / t) / zp for v in p_logits]
    q = [math.exp(v / t) / zq for v in q_logits]
    return t * t * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_soft_kl_equals_a_hand_computation(t):
    teacher = [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0], [1.0, 1.0, 1.0, 1.0]]
    student = [[0.0, 1.0, 0.5, -0.5], [2.0, -1.0, 0.0, 0.5], [3.0, 0.0, 0.0, 0.0]]
    targets = torch.tensor([1, -100, 2])  # the middle position is ignored, as in the CE
    got = soft_kl(torch.tensor(student), torch.tensor(teacher), t, targets)
    expected = (hand_kl(teacher[0], student[0], t) + hand_kl(teacher[2], student[2], t)) / 2
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert soft_kl(torch.tensor(teacher), torch.tensor(teacher), t, targets).item() == pytest.approx(
        0, abs=1e-7
    )


def test_topk_kl_renormalises_the_teachers_top_k():
    teacher = torch.tensor([[3.0, 1.0, -2.0, 0.5]])
    student = torch.tensor([[0.5, 0.0, 1.0, -1.0]])
    targets = torch.tensor([0])
    values, ids = teacher.topk(2, dim=-1)  # ids 0 and 1
    t = 2.0
    p = [math.exp(3.0 / t), math.exp(1.0 / t)]
    p = [v / sum(p) for v in p]  # the teacher renormalised over its top 2
    zq = sum(math.exp(v / t) for v in student[0].tolist())
    q = [math.exp(0.5 / t) / zq, math.exp(0.0 / t) / zq]  # the student's full softmax at those ids
    expected = t * t * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert topk_kl(student, ids, values, t, targets).item() == pytest.approx(expected, rel=1e-6)
    all_values, all_ids = teacher.topk(4, dim=-1)  # K = V: the full KL
    assert topk_kl(student, all_ids, all_values, t, targets).item() == pytest.approx(
        soft_kl(student, teacher, t, targets).item(), rel=1e-6
    )


def student_config(tiny_run, out, *extra):
    """A tiny student (1 layer x 16) on the teacher's prepared data, 3 steps."""
    data_dir = Run.open(tiny_run).data_dir
    overrides = [o for o in TINY_TRAINING if not o.startswith("data.")]
    overrides += [
        f'data.dir="{data_dir}"',
        "train.max_steps=3",
        "train.eval_every=3",
        f'train.out_dir="{out}"',
    ]
    return load_config(None, overrides + list(extra))


def weights(run_dir):
    model, _ = Run.open(run_dir).load()
    return model.state_dict()


def test_alpha_one_is_ordinary_training_bit_for_bit(tiny_run, tmp_path):
    plain = train(student_config(tiny_run, tmp_path / "plain", "model.dropout=0.1"))
    distilled = distill(
        tiny_run,
        student_config(tiny_run, tmp_path / "alpha1", "model.dropout=0.1"),
        DistillOptions(temperature=2.0, alpha=1.0),
    )
    a, b = weights(plain.run_dir), weights(distilled.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [
        [r["loss"] for r in read_metrics(d) if r["kind"] == "train"]
        for d in (plain.run_dir, distilled.run_dir)
    ]
    assert losses[0] == losses[1]
    # alpha < 1 does change training (the soft term reaches the weights)
    soft = distill(tiny_run, student_config(tiny_run, tmp_path / "alpha0"), DistillOptions(alpha=0.0))
    c = weights(soft.run_dir)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_the_first_distilled_loss_is_the_mixture_of_ce_and_kl(tiny_run, tmp_path):
    """Step 1's logged loss = alpha * CE + (1 - alpha) * T^2 KL on its batch, from the initial weights."""
    from gptlab.data.shards import BatchSampler, TokenDataset
    from gptlab.model import GPT

    config = student_config(tiny_run, tmp_path / "s", "train.log_every=1")
    distill(tiny_run, config, DistillOptions(temperature=3.0, alpha=0.25))
    first = next(r for r in read_metrics(tmp_path / "s") if r["kind"] == "train")
    data = TokenDataset(Run.open(tiny_run).data_dir, "train")
    x, y = BatchSampler(data, config.train.batch_size, 16, config.train.seed).next_batch()
    torch.manual_seed(config.train.seed)
    student = GPT(config.model.build(vocab_size=data.vocab_size))
    teacher, tokenizer = Run.open(tiny_run).load()
    logits, ce = student(x, y)
    v = tokenizer.vocab_size
    kl = soft_kl(logits[..., :v], teacher(x)[0][..., :v], 3.0, y)
    assert first["loss"] == pytest.approx((0.25 * ce + 0.75 * kl).item(), rel=1e-5)


def test_a_different_tokenizer_is_refused_before_training(tiny_run, tmp_path):
    text = tmp_path / "other.txt"
    text.write_text("abcabc cab bac " * 200)
    config = student_config(tiny_run, tmp_path / "s")
    config.data.dir, config.data.input, config.data.tokenizer = "", [str(text)], "char"
    with pytest.raises(GptlabError, match="different tokenizers"):
        distill(tiny_run, config, DistillOptions())
    assert not (tmp_path / "s" / "checkpoints").exists()


def test_a_student_wider_than_the_teachers_context_is_refused(tiny_run, tmp_path):
    config = student_config(tiny_run, tmp_path / "s", "model.block_size=64")
    with pytest.raises(GptlabError, match="exceeds the teacher's"):
        distill(tiny_run, config, DistillOptions())


def test_precomputed_top_k_holds_the_teachers_largest_logits(tiny_run, tmp_path):
    result = distill(tiny_run, student_config(tiny_run, tmp_path / "s"), DistillOptions(top_k=4))
    folder = result.run_dir / "teacher_topk"
    ids, logits = np.load(folder / "ids.npy"), np.load(folder / "logits.npy")
    teacher, _ = Run.open(tiny_run).load()
    from gptlab.data.shards import TokenDataset

    train_tokens = TokenDataset(Run.open(tiny_run).data_dir, "train").tokens
    assert ids.shape == (len(train_tokens), 4)
    block = teacher.config.block_size
    x = torch.tensor(np.asarray(train_tokens[block : 2 * block], dtype=np.int64))[None]  # the second window
    with torch.no_grad():
        values, index = teacher(x)[0][0].topk(4, dim=-1)
    assert np.array_equal(ids[block : 2 * block], index.numpy())
    np.testing.assert_allclose(logits[block : 2 * block], values.numpy(), rtol=1e-3, atol=1e-3)  # float16
    assert json.loads((result.run_dir / "distill.json").read_text())["top_k"] == 4


def test_cli_student_is_an_ordinary_run(tiny_run, tmp_path, capsys):
    from gptlab.generate import generate_text

    out = tmp_path / "student"
    data_dir = Run.open(tiny_run).data_dir
    args = ["distill", "--teacher", str(tiny_run), "--temperature", "2", "--alpha", "0.5", "--out", str(out),
            *[o for o in TINY_TRAINING if not o.startswith("data.")], f"data.dir={json.dumps(str(data_dir))}",
            "train.max_steps=2", "train.eval_every=2", "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["distill"] == {"teacher": str(tiny_run), "temperature": 2.0, "alpha": 0.5, "top_k": 0}
    run = Run.open(out)
    assert run.kind == "lm"
    model, tokenizer = run.load()
    assert len(generate_text(model, tokenizer, "ROMEO:", max_new_tokens=5, seed=0)) > 0
    assert json.loads((out / "distill.json").read_text())["alpha"] == 0.5
    assert main(args) == 2  # the run exists: refused, not overwritten
    assert "--overwrite" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(tiny_run), "--alpha", "1.5", "--out", str(tmp_path / "x")]) == 2


# --- classifiers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    from synthetic_task import synthetic_rows

    path = tmp_path_factory.mktemp("task") / "task.tsv"
    path.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in synthetic_rows(60)))
    return path


def classify_options(base, data, out, **extra):
    from gptlab.finetune.classify import ClassifyOptions

    return ClassifyOptions(
        model=str(base), data=str(data), out=str(out), epochs=1, batch_size=8, device="cpu",
        prompting_shots=(), progress=False, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def teacher_classifier(tiny_run, task_file, tmp_path_factory):
    from gptlab.finetune.classify import finetune_classifier

    return finetune_classifier(
        classify_options(tiny_run, task_file, tmp_path_factory.mktemp("t") / "clf")
    ).out_dir


@pytest.mark.slow
def test_classifier_distillation_alpha_one_is_plain_fine_tuning_and_alpha_half_differs(
    tiny_run, task_file, teacher_classifier, tmp_path
):
    from gptlab.finetune.classifier_run import load_classifier
    from gptlab.finetune.classify import finetune_classifier

    finetune_classifier(classify_options(tiny_run, task_file, tmp_path / "plain"))
    finetune_classifier(
        classify_options(
            tiny_run, task_file, tmp_path / "a1", teacher=str(teacher_classifier), distill_alpha=1.0
        )
    )
    finetune_classifier(
        classify_options(
            tiny_run, task_file, tmp_path / "a5", teacher=str(teacher_classifier), distill_alpha=0.5
        )
    )
    states = [load_classifier(tmp_path / n).model.state_dict() for n in ("plain", "a1", "a5")]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_classifier_distillation_refuses_other_labels(tiny_run, task_file, teacher_classifier, tmp_path):
    from gptlab.finetune.classify import finetune_classifier

    options = classify_options(
        tiny_run, task_file, tmp_path / "s", teacher=str(teacher_classifier), labels=["calm", "alarm"]
    )
    with pytest.raises(GptlabError, match="labels"):
        finetune_classifier(options)


@pytest.mark.slow
def test_cli_distils_a_classifier_into_a_classifier_run(
    tiny_run, task_file, teacher_classifier, tmp_path, capsys
):
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(teacher_classifier), "--student-base", str(tiny_run), "--data", str(task_file),
            "--epochs", "1", "--temperature", "4", "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["test"]["accuracy"] <= 1
    run = Run.open(out)
    assert run.kind == "classifier" and run.load_classifier().label_names == ["alarm", "calm"]
    assert json.loads((out / "results.json").read_text())["options"]["teacher"] == str(teacher_classifier)
    assert main(["distill", "--teacher", str(teacher_classifier), "--out", str(tmp_path / "x")]) == 2
    assert "--student-base" in capsys.readouterr().err


def test_resume_continues_a_student_and_refuses_other_settings(tiny_run, tmp_path):
    out = tmp_path / "s"
    distill(
        tiny_run,
        student_config(tiny_run, out, "train.max_steps=2", "train.eval_every=2"),
        DistillOptions(2.0, 0.5),
    )
    with pytest.raises(GptlabError, match="other distillation settings"):
        distill(
            tiny_run,
            student_config(tiny_run, out, "train.max_steps=4"),
            DistillOptions(4.0, 0.5),
            resume=True,
        )
    result = distill(
        tiny_run, student_config(tiny_run, out, "train.max_steps=4"), DistillOptions(2.0, 0.5), resume=True
    )
    assert result.step == 4
