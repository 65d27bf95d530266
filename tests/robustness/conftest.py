"""Fixtures and helpers of the bad-input suite: tiny runs trained here (no ../shared needed), a
way to run a verb in-process or in its own process, and the checks every user-facing error must
pass (exit 2, one ``error:`` line last on stderr, no traceback, no existing file changed)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WORDS = ["the", "a", "cat", "dog", "nurse", "pilot", "doctor", "said", "that", "she", "he", "was", "late",
         "and", "ran", "home", "to", "see", "my", "friend", "who", "is", "here", "today", "with", "big",
         "small", "red", "blue", "green"]  # fmt: skip


# ------------------------------------------------------------------------------------ running verbs


@dataclass
class Outcome:
    """What a verb did: exit code, captured stdout and stderr, wall time."""

    code: int
    out: str
    err: str
    seconds: float

    def lines(self, stream: str = "err") -> list[str]:
        return [line for line in getattr(self, stream).splitlines() if line.strip()]

    def describe(self) -> str:
        """One line for an assertion message: the exit code and the first/last output lines."""
        both = self.lines("out") + self.lines("err")
        first = both[0] if both else ""
        last = self.lines("err")[-1] if self.lines("err") else (both[-1] if both else "")
        return f"exit {self.code}; first line {first[:160]!r}; last line {last[:200]!r}"


def run_in_process(argv: list[str], capfd, stdin: str | None = None) -> Outcome:
    """``gptlab.cli.main(argv)`` as the console script would run it: SystemExit's code is the exit
    code, and any other exception prints its traceback and exits 1 (as the interpreter does)."""
    from gptlab.cli import main

    capfd.readouterr()
    saved_stdin = sys.stdin
    if stdin is not None:
        import io

        sys.stdin = io.StringIO(stdin)
    start = time.monotonic()
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdin = saved_stdin
    seconds = time.monotonic() - start
    out, err = capfd.readouterr()
    return Outcome(int(code), out, err, seconds)


def subprocess_env(cwd: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        GPTLAB_CACHE=str(cwd / ".cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("GPTLAB_API_KEY", None)
    return env


def _limit_memory(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_subprocess(
    argv: list[str],
    cwd: Path,
    *,
    timeout: float = 120,
    stdin: str | None = None,
    memory_gb: float | None = None,
) -> Outcome:
    """``python -m gptlab ARGV`` in its own process (isolated: a verb that would hang, serve or
    allocate without bound is killed at ``timeout`` / fails at ``memory_gb`` of address space)."""
    start = time.monotonic()
    preexec = _limit_memory(int(memory_gb * 2**30)) if memory_gb else None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gptlab", *argv],
            cwd=cwd,
            env=subprocess_env(cwd),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired as e:

        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        return Outcome(
            -9, text(e.stdout), text(e.stderr) + f"\n<killed: still running after {timeout:.0f} s>", timeout
        )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def user_error_problems(outcome: Outcome) -> list[str]:
    """Why ``outcome`` is not a proper user-facing error (empty when it is): exit code 2, the last
    non-empty stderr line starts with ``error:`` and is the only such line, no traceback."""
    problems = []
    if outcome.code != 2:
        problems.append(f"exit code {outcome.code}, expected 2")
    if "Traceback" in outcome.out + outcome.err:
        problems.append("a Traceback was printed")
    err_lines = outcome.lines("err")
    if not err_lines or not err_lines[-1].startswith("error:"):
        problems.append("stderr's last line does not start with 'error:'")
    n_error_lines = sum(line.startswith("error:") for line in err_lines)
    if n_error_lines > 1:
        problems.append(f"{n_error_lines} lines start with 'error:'")
    return problems


def success_problems(outcome: Outcome) -> list[str]:
    problems = []
    if outcome.code != 0:
        problems.append(f"exit code {outcome.code}, expected 0")
    if "Traceback" in outcome.out + outcome.err:
        problems.append("a Traceback was printed")
    return problems


# ------------------------------------------------------------------------------------ file hashes


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and "<dir>" for every folder), by relative path."""
    result = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = "<link>" + os.readlink(path)
        elif path.is_dir():
            result[rel] = "<dir>"
        elif path.is_file():
            try:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:  # a chmod 000 case as non-root: compare its metadata instead
                stat = path.stat()
                result[rel] = f"<unreadable {stat.st_size} {stat.st_mtime_ns}>"
    return result


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files (not folders) that existed before and were modified or removed."""
    return sorted(k for k, v in before.items() if v != "<dir>" and after.get(k) != v)


def created_paths(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(set(after) - set(before))


# ------------------------------------------------------------------------------------ generated data


def make_corpus(n_lines: int = 400, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + "." for _ in range(n_lines)]
    return "\n".join(lines) + "\n"


def labelled_rows(n: int = 48, seed: int = 0) -> list[tuple[str, str]]:
    """(label, text): "alarm" when the text mentions a dog, else "calm"."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice([w for w in WORDS if w != "dog"]) for _ in range(rng.randint(3, 8))]
        if i % 2:
            words[rng.randrange(len(words))] = "dog"
        rows.append(("alarm" if "dog" in words else "calm", " ".join(words)))
    return rows


def instruction_rows(n: int = 24, seed: int = 0) -> list[dict[str, str]]:
    answers = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black"}
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        thing = rng.choice(sorted(answers))
        rows.append({"instruction": f"color of {thing}", "input": "", "output": answers[thing]})
    return rows


# The training overrides of the session's tiny run: 1 layer, 32 wide, context 64 (what `audit all
# --quick` needs), CPU.
TINY_MODEL = ["model.block_size=64", "model.n_layer=1", "model.n_head=2", "model.n_embd=32"]
TINY_TRAIN = [
    "train.batch_size=4",
    "train.eval_every=10",
    "train.eval_batches=1",
    "train.log_every=5",
    "train.sample_tokens=4",
    "train.progress=false",
    "train.device=cpu",
    "optim.warmup_steps=2",
    "optim.lr=3e-3",
]


def tiny_train_args(corpus: Path, steps: int = 20, tokenizer: str = "bpe") -> list[str]:
    """``gptlab train`` overrides for a few seconds' run on ``corpus`` (BPE with 300 tokens:
    byte-level, so any text encodes, and exportable to Hugging Face)."""
    data = [f"data.input=[{json.dumps(str(corpus))}]", f"data.tokenizer={tokenizer}", "data.vocab_size=300"]
    return [*data, *TINY_MODEL, *TINY_TRAIN, f"train.max_steps={steps}"]


@dataclass
class Fixtures:
    """The session's good inputs; every test copies what it may touch (see ``materialize``)."""

    root: Path
    corpus: Path  # generated text the LM run is trained on
    text: Path  # held-out text (eval perplexity, quantize --eval-file)
    tsv: Path  # labelled rows, header "label<TAB>text"
    instructions: Path  # Alpaca-style JSON list
    run: Path  # a tiny pretraining run made by `gptlab train` (config, checkpoints, data/)
    clf: Path  # a tiny classifier run made by `gptlab finetune classify`
    it: Path  # a tiny instruction run made by `gptlab finetune instruct`
    hf: Path  # the LM run exported as a Hugging Face GPT-2 folder
    enc: Path  # a tiny encoder (model.arch=encoder) pretrained with train.objective=mlm

    train_args = staticmethod(tiny_train_args)


def _call(argv: list[str]) -> None:
    from gptlab.cli import main

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"building a fixture failed: gptlab {' '.join(argv)} exited {code}")


@pytest.fixture(scope="session")
def fx(tmp_path_factory) -> Fixtures:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("robustness-fixtures")
        corpus = root / "corpus.txt"
        corpus.write_text(make_corpus())
        text = root / "heldout.txt"
        text.write_text(make_corpus(40, seed=1))
        tsv = root / "task.tsv"
        tsv.write_text("label\ttext\n" + "".join(f"{y}\t{x}\n" for y, x in labelled_rows()))
        instructions = root / "instructions.json"
        instructions.write_text(json.dumps(instruction_rows()))
        run = root / "run"
        _call(["train", *tiny_train_args(corpus), "--out", str(run)])
        clf = root / "clf"
        _call(["finetune", "classify", "--model", str(run), "--data", str(tsv), "--out", str(clf),
               "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress",
               "--prompting-shots"])  # fmt: skip
        it = root / "it"
        _call(["finetune", "instruct", "--model", str(run), "--data", str(instructions), "--out", str(it),
               "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--no-progress",
               "--max-new-tokens", "4", "--max-test-examples", "2", "--no-base-comparison"])  # fmt: skip
        from gptlab.hf_folder import to_hf_gpt2
        from gptlab.rundir import load_model

        model, tokenizer = load_model(run)
        hf = to_hf_gpt2(model, root / "hf", tokenizer)
        enc = root / "enc"
        _call(
            [
                "train",
                *tiny_train_args(corpus),
                "model.arch=encoder",
                "train.objective=mlm",
                "--out",
                str(enc),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    return Fixtures(root, corpus, text, tsv, instructions, run, clf, it, hf, enc)


PLACEHOLDERS = {
    "run": "run",
    "clf": "clf",
    "it": "it",
    "hf": "hf",
    "enc": "enc",
    "corpus": "corpus.txt",
    "text": "heldout.txt",
    "tsv": "task.tsv",
    "instructions": "instructions.json",
}


def materialize(template: list[str], fx: Fixtures, tmp: Path) -> list[str]:
    """Fill ``{run}``, ``{clf}``, ... with copies of the fixtures under ``tmp`` (made only for the
    placeholders used, so a verb that writes where it must not can only damage its own copy) and
    ``{tmp}`` with ``tmp``."""
    joined = " ".join(template)
    for key, name in PLACEHOLDERS.items():
        if "{" + key + "}" in joined and not (tmp / name).exists():
            source = fx.root / name
            if source.is_dir():
                shutil.copytree(source, tmp / name)
            else:
                shutil.copy2(source, tmp / name)
    values = {key: str(tmp / name) for key, name in PLACEHOLDERS.items()} | {"tmp": str(tmp)}
    # other braces stay as written: a prompt template's {input} is the verb's, not ours
    return [re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), arg) for arg in template]


class Gptlab:
    """Run verbs and check what they did; the ``gptlab`` fixture (test modules import nothing
    from here: every helper comes through a fixture)."""

    Outcome = Outcome
    snapshot = staticmethod(snapshot)
    changed_files = staticmethod(changed_files)
    created_paths = staticmethod(created_paths)
    user_error_problems = staticmethod(user_error_problems)
    success_problems = staticmethod(success_problems)
    materialize = staticmethod(materialize)

    def __init__(self, capfd) -> None:
        self._capfd = capfd

    def run(self, argv: list[str], stdin: str | None = None) -> Outcome:
        return run_in_process(argv, self._capfd, stdin)

    spawn = staticmethod(run_subprocess)


@pytest.fixture
def gptlab(capfd) -> Gptlab:
    return Gptlab(capfd)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A case's folder, also the working directory (a default relative output lands here), with
    the dataset cache inside it and no network for Hugging Face."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPTLAB_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("GPTLAB_API_KEY", raising=False)
    yield tmp_path
    for folder, subfolders, _ in os.walk(tmp_path):  # chmod cases: let pytest delete the folder later
        for name in subfolders:
            os.chmod(os.path.join(folder, name), 0o755)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread than on two fighting over a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
