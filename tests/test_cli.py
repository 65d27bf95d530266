import subprocess
import sys

from gptlab.cli import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_every_verb_has_help():
    # each verb module must import and register a parser with --help
    for verb in VERBS:
        proc = subprocess.run(
            [sys.executable, "-m", "gptlab", verb, "--help"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, (verb, proc.stderr)
        assert "usage: gptlab" in proc.stdout


def test_generate_and_chat_share_the_sampling_flags_with_their_samplers_defaults():
    from gptlab.chat import DEFAULT_SAMPLER
    from gptlab.cli import build_parser
    from gptlab.commands.sampling import sampler_from_args
    from gptlab.generate import Sampler

    for verb, expected in (("generate", Sampler()), ("chat", DEFAULT_SAMPLER)):
        args = build_parser(verb).parse_args([verb, "--model", "RUN"])
        assert sampler_from_args(args) == expected, verb
        flags = ["--temperature", "0.5", "--top-k", "3", "--top-p", "0.9", "--repetition-penalty", "1.2"]
        args = build_parser(verb).parse_args([verb, "--model", "RUN", *flags])
        assert sampler_from_args(args) == Sampler(0.5, 3, 0.9, 1.2), verb
