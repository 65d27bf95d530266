"""User-facing errors.

A `GptlabError` is a problem with the user's input (a bad file, a wrong option, a value out of
range). The CLI prints its message as ``error: ...`` and exits with status 2, without a traceback;
anything else is a bug and keeps its traceback.
"""


class GptlabError(Exception):
    """An error the user can fix: the message names the file, the field and what was expected."""
