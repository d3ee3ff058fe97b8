"""SIGINT and SIGTERM take one path: the run's Interruption is set, so that nothing more is sent (but the status
reports that mark a stopped task `interrupted`), and KeyboardInterrupt is raised in the main thread, which stops the
running containers on its way out."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interruption:
    """Set once a signal asked this run to stop; every edge that sends or waits looks at it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def handled(interruption: Interruption) -> Iterator[Interruption]:
    """Route SIGINT and SIGTERM to `interruption` for the duration (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield interruption
        return

    def stop(signum, frame) -> None:
        interruption.set()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interruption
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
