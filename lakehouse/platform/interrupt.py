"""SIGTERM as Ctrl-C, for commands that start a stack of their own (`make
bench`, `make chaos`): a `kill`, a CI timeout or a closed terminal then runs
their `finally` blocks, which stop that stack, instead of leaving it running."""

from __future__ import annotations

import signal


def _interrupted(signum, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_sigterm() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt (also in a background job, where SIGINT is ignored)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupted)
