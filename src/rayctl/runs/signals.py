"""Ctrl-C and SIGTERM during a launch: both become KeyboardInterrupt, and cleanup is not cut short.

`signals_as_interrupt()` wraps a whole launch (the job is stopped, the run recorded
`interrupted`, exit 130); `no_interrupts()` wraps the cleanup after an interrupt. Both
only act in the main thread (signal handlers can be set nowhere else).
"""

from __future__ import annotations

import contextlib
import signal
import threading


def signals_as_interrupt():
    """SIGINT and SIGTERM (Ctrl-C, cron timeouts, CI cancels, `kill`) both stop the job and exit 130.

    Both handlers are installed explicitly, whatever this process inherited: a process
    started with SIGINT ignored (a background job of a shell, some CI runners and init
    systems) would otherwise keep Python from installing its own Ctrl-C handler, and
    `kill -INT` would do nothing. The previous handlers come back afterwards.
    """
    return _both_signals(_raise_interrupt)


def no_interrupts():
    """Cleanup after an interrupt runs to its end (it is bounded by timeouts)."""
    return _both_signals(signal.SIG_IGN)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _both_signals(handler):
    """`handler` for SIGINT and SIGTERM inside the block, the previous handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
