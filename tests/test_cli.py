import subprocess
import sys

import pytest

from gptlab.cli import VERBS, main


def test_help_lists_every_verb(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.slow
def test_every_verb_has_help():
    # each verb module must import and register a parser with --help
    for verb in VERBS:
        proc = subprocess.run(
            [sys.executable, "-m", "gptlab", verb, "--help"], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, (verb, proc.stderr)
        assert "usage: gptlab" in proc.stdout
