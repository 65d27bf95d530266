"""Stop signals during training: SIGTERM is handled like Ctrl-C, and neither lands mid-update.

A scheduler, ``kill``, ``docker stop`` or ``torchrun`` stopping a job sends SIGTERM; the default
action kills the process without a checkpoint. While ``stop_signals()`` is active (the trainer
wraps a whole training in it), SIGTERM raises `Terminated`, a KeyboardInterrupt, so the same
path as Ctrl-C saves a checkpoint of the last completed step; the CLI then exits 143 (128 +
SIGTERM) instead of 130 (128 + SIGINT).

Inside ``deferred()`` (the optimizer update and the step counter that goes with it) either signal
waits until the block ends, so a checkpoint never holds weights one update ahead of its step
(AdamW updates its parameter groups one after the other: an exception between them would leave
half a step). A second signal while one is waiting acts at once: a hung step can still be stopped.
Handlers are only installed in the main thread (Python delivers signals there); SIGINT only when
its handler is Python's default, so an application's own handler is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGINT_EXIT = 128 + signal.SIGINT  # 130
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during training (see the module doc)."""

    exit_code = SIGTERM_EXIT


_depth = 0  # nesting of deferred() blocks
_pending: int | None = None  # a signal that arrived inside one


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame) -> None:
    global _pending
    if _depth > 0 and _pending is None:
        _pending = signum
        return
    _pending = None
    raise _exception(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM raises `Terminated` and both signals respect `deferred` while the block runs."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _handler)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _handler)
    _pending = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _pending = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal that arrives inside the block until it ends, then raise it."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    if _depth == 0 and _pending is not None:
        signum, _pending = _pending, None
        raise _exception(signum)


def exit_code(stop_reason: str) -> int:
    """The CLI's exit status for a training that ended with ``stop_reason``."""
    return {"interrupted": SIGINT_EXIT, "terminated": SIGTERM_EXIT}.get(stop_reason, 0)
