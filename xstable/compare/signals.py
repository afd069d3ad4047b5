"""Stopping `xstable compare` cleanly on SIGINT (Ctrl-C) and SIGTERM (CI cancel, `kill`).

Python turns SIGINT into `KeyboardInterrupt`; SIGTERM's default action ends the process at
once, leaving its workers (each in its own session, so a terminal's Ctrl-C reaches only the
parent) running as orphans. `raise_on_sigterm` makes SIGTERM raise `Terminated` instead, so
that the same cleanup runs for both: the workers' process groups are killed and a partial
report is written. The exit status is the shell's for a signal death, 128 + the signal number.
"""

import contextlib
import signal
import threading

__all__ = ["Terminated", "INTERRUPTS", "interrupt_signal", "exit_status_for", "raise_on_sigterm",
           "signals_ignored"]


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM under `raise_on_sigterm`."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


INTERRUPTS = (KeyboardInterrupt, Terminated)


def interrupt_signal(error):
    """Returns the signal (`signal.Signals`) an interrupt exception stands for."""
    if isinstance(error, Terminated):
        return signal.Signals(error.signum)
    return signal.SIGINT


def exit_status_for(error):
    """Returns 130 for SIGINT, 143 for SIGTERM (128 + the signal number)."""
    return 128 + int(interrupt_signal(error))


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raise_on_sigterm():
    """Within the block, SIGTERM raises `Terminated` in the main thread (elsewhere: no-op)."""
    if not _in_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored():
    """Ignores SIGINT and SIGTERM within the block (the partial report is being written)."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
