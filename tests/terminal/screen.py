"""A process in a real pseudo-terminal (pexpect) whose output is read through a terminal emulator (pyte): the tests
assert on the screen a person would see, not on the bytes."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte

ROOT = Path(__file__).resolve().parents[2]
SGR = re.compile(r"\x1b\[[0-9;]*m")


class Term:
    """The driver (tests/terminal/driver.py) in a pty of `rows` x `cols`; `screen` is what it shows."""

    def __init__(self, *args: str, rows: int, cols: int, env: dict[str, str] | None = None):
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""
        environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
        environ.update({"TERM": "xterm-256color", "PYTHONPATH": str(ROOT), **(env or {})})
        self.child = pexpect.spawn(sys.executable, ["-m", "tests.terminal.driver", *args], cwd=str(ROOT),
                                   env=environ, dimensions=(rows, cols))
        self.exit_status: int | None = None

    def pump(self, timeout: float = 0.05) -> bool:
        """Feed what the process wrote so far to the emulator; False once it has ended."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def rows(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.rows())

    def wait_for(self, what: Callable[[list[str]], bool] | str, timeout: float = 30.0) -> list[str]:
        """Read until the screen shows `what` (a text, or a test of the rows); return the rows."""
        test = (lambda rows: what in "\n".join(rows)) if isinstance(what, str) else what
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = self.pump()
            if test(self.rows()):
                return self.rows()
            if not alive:
                break
        raise AssertionError(f"the screen never showed {what!r}; it shows:\n{self.text()}")

    def send(self, text: str) -> None:
        self.child.send(text)

    def resize(self, rows: int, cols: int) -> None:
        """The window changes size: the pty first (the process gets SIGWINCH), then the emulator."""
        while True:  # what was drawn at the old size is shown at the old size
            try:
                data = self.child.read_nonblocking(65536, timeout=0)
            except (pexpect.TIMEOUT, pexpect.EOF):
                break
            self.raw += data
            self.stream.feed(data)
        self.child.setwinsize(rows, cols)
        self.screen.resize(rows, cols)

    def finish(self, timeout: float = 30.0) -> int:
        """Read to the end; the exit status."""
        deadline = time.monotonic() + timeout
        while self.pump() and time.monotonic() < deadline:
            pass
        self.child.close()
        self.exit_status = self.child.exitstatus
        return self.exit_status


def plain(text: str) -> str:
    return SGR.sub("", text)
