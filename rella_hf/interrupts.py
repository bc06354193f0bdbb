"""Ctrl-C and SIGTERM, stopped cleanly: one exception for both, and a way to defer them to a safe point.

The command line calls :func:`raise_on_signals`, so SIGTERM (``kill``, a scheduler's stop) acts like
Ctrl-C: an :class:`Interrupted` (a ``KeyboardInterrupt``) is raised where the program is, ``finally``
blocks and atomic writes clean up, and the command exits with 128 + the signal number (130 for
Ctrl-C, 143 for SIGTERM). Training defers both to the end of the current optimizer step
(:func:`deferred_signals`), saves a checkpoint there and then raises.

Standard library only, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

#: The signals that stop a command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived; ``signum`` says which.

    A ``KeyboardInterrupt``, so code that already stops cleanly on Ctrl-C stops cleanly on SIGTERM.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


def exit_code(error: BaseException) -> int:
    """The shell's exit code of a command stopped by ``error``: 128 + the signal number (Ctrl-C: 130)."""
    return 128 + int(getattr(error, "signum", signal.SIGINT))


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted` (main thread only); the previous
    handlers come back on leaving it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class StopRequest:
    """What :func:`deferred_signals` recorded: ``signum`` is None until a stop signal arrives."""

    signum: int | None = None


@contextlib.contextmanager
def deferred_signals() -> Iterator[StopRequest]:
    """Within the block SIGINT / SIGTERM are recorded, not raised, so the code stops at its next safe point.

    The code polls the yielded :class:`StopRequest` and raises :class:`Interrupted` itself once it is
    safe (training: after the checkpoint of the current step). A second signal raises at once. On
    leaving the block the previous handlers come back, and a signal that was recorded but not acted
    on is raised then. Outside the main thread (where Python delivers no signals) nothing is deferred.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def record(signum, frame):
        if request.signum is not None:
            raise Interrupted(signum)
        request.signum = signum

    previous = {signum: signal.signal(signum, record) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if request.signum is not None:
        raise Interrupted(request.signum)
