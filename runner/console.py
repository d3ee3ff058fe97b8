"""The terminal: where human text and JSON go, colour, prompts, and the live progress bars that share the screen.

Text mode: the plan, step lines and recap go to stdout. JSON mode: only the JSON document goes to stdout,
every human line to stderr, and nothing is ever asked. Colour only on a terminal and never with NO_COLOR.
While bars are live, every line is printed above them and a question takes the screen until it is answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from runner.clients import NoProgress, Progress


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _same_terminal(a: Any, b: Any) -> bool:
    """Both streams are the one terminal (stdout and stderr of a shell): lines must then go above the bars."""
    try:
        return _isatty(a) and _isatty(b) and os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (AttributeError, ValueError, OSError):
        return False


class Console:
    def __init__(self, stdout: TextIO, stderr: TextIO, stdin: TextIO | None, *, environ: Mapping[str, str],
                 output: str = "text"):
        self.stdout, self.stderr, self.stdin = stdout, stderr, stdin
        self.json_mode = output == "json"
        self.human = stderr if self.json_mode else stdout
        dumb = environ.get("TERM") == "dumb"
        no_color = "NO_COLOR" in environ or dumb
        self.color = _isatty(self.human) and not no_color
        self.err_color = _isatty(stderr) and not no_color
        self.can_prompt = not self.json_mode and stdin is not None and _isatty(stdin)
        self.progress_enabled = _isatty(stderr) and not self.json_mode and not dumb  # bars move the cursor
        self._live: LiveProgress | None = None  # one display for the whole command, made when first needed

    def _write(self, stream: TextIO, text: str) -> None:
        text = shown(text)
        live = self._live
        if live is not None and (stream is self.stderr or _same_terminal(stream, self.stderr)):
            live.print_above(stream, text)
        else:
            stream.write(text)
            stream.flush()

    def say(self, text: str = "") -> None:
        """A human line (stdout in text mode, stderr in JSON mode), above any live bars."""
        self._write(self.human, text if text.endswith("\n") else text + "\n")

    def error(self, text: str) -> None:
        self._write(self.stderr, (f"\x1b[31merror:\x1b[0m {text}" if self.err_color else f"error: {text}") + "\n")

    def warn(self, text: str) -> None:
        self._write(self.stderr, f"warning: {text}\n")

    def document(self, doc: Mapping[str, Any]) -> None:
        """The one JSON document of --output json."""
        self.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        self.stdout.flush()

    def confirm(self, question: str, *, details: str = "") -> bool:
        """Ask on stderr (details first), read a line; only y/yes is yes (an empty answer is no).

        Live bars leave the screen while the question waits, and come back after the answer."""
        if not self.can_prompt:
            return False
        with self._live.paused() if self._live is not None else contextlib.nullcontext():
            self.stderr.write(shown(f"{details}{question} [y/N] "))
            self.stderr.flush()
            answer = self.stdin.readline()
        return answer.strip().lower() in ("y", "yes")

    def close(self) -> None:
        """The command ends: no bar stays on the screen, whatever ended it."""
        if self._live is not None:
            self._live.done()

    def progress(self) -> Progress:
        if not self.progress_enabled:
            return NoProgress()
        if self._live is None:
            self._live = LiveProgress(self.stderr, color=self.err_color)
        return self._live


_ESCAPE = r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-~])"  # CSI, OSC, two-byte escapes
_SPIN = "|/-\\"
TICK_S = 0.2  # the display's clock: elapsed times, and a changed terminal width, are redrawn this often
MIN_DRAW_S = 0.05  # updates faster than this (a download's chunks) wait for the next tick


_NOT_COLOUR = r"(?!\x1b\[[0-9;]*m)" + _ESCAPE  # every escape sequence but a colour (SGR)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text as a terminal may be given it: names and messages from a server (or anywhere) lose every escape
    sequence but colours and every control character but newline and tab, so nothing they hold can move the
    cursor, clear the screen, retitle the window or write the clipboard."""
    if "\x1b" in text:
        text = re.sub(_NOT_COLOUR, "", text)
    return _CONTROL.sub("", text)


def clean(text: str) -> str:
    """A container's log line made safe to draw: no escape sequences, no control characters."""
    return "".join(c for c in re.sub(_ESCAPE, "", text) if c >= " " and c != "\x7f")  # re caches the pattern


def _cells(c: str) -> int:
    if unicodedata.combining(c):
        return 0
    return 2 if unicodedata.east_asian_width(c) in "WF" else 1


def fit(pieces: list[tuple[str, str]], width: int) -> str:
    """(text, SGR code or "") pieces cut to `width` terminal cells, each coloured piece reset after itself."""
    out, used = [], 0
    for text, sgr in pieces:
        kept = []
        for c in text:
            w = _cells(c)
            if used + w > width:
                break
            kept.append(c)
            used += w
        if kept:
            s = "".join(kept)
            out.append(f"\x1b[{sgr}m{s}\x1b[0m" if sgr else s)
        if used >= width or len(kept) < len(text):
            break
    return "".join(out)


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            break
        n /= 1024
    return f"{n:,.1f} {unit}" if 0 < n < 10 and unit != "B" else f"{n:,.0f} {unit}"


class _Bar:
    def __init__(self, label: str, started: float):
        self.label, self.started = label, started
        self.done: float = 0
        self.total: float | None = None  # None: a task whose length is unknown (a spinner and its last log line)
        self.info = ""

    def pieces(self, now: float, width: int, color: bool) -> list[tuple[str, str]]:
        secs = int(now - self.started)
        clock = f"{secs // 60}:{secs % 60:02d}"
        if self.total is None:
            head = [(f"{self.label}  {_SPIN[int(now / TICK_S) % len(_SPIN)]} {clock}  ", "")]
            return head + [(self.info, "2" if color else "")]
        tail = f" {clock}  {self.info}"
        cols = min(30, width - sum(map(_cells, self.label + tail)) - 2)  # the bar gives way to the words
        if cols < 6:
            return [(f"{self.label} ", ""), (tail, "")]
        filled = int(cols * min(1.0, self.done / self.total)) if self.total else 0
        return [(f"{self.label}  ", ""), ("━" * filled, "32" if color else ""),
                ("─" * (cols - filled), "2" if color else ""), (tail, "")]


class LiveProgress:
    """Progress bars at the bottom of the terminal (hashing, downloads, container tasks), drawn on `stream`.

    Lines printed while bars are live go above them (print_above); a finished task's bar is removed (end);
    a question pauses the display (paused). Each redraw re-reads the terminal's width and cuts every bar to one
    row; between redraws the cursor rests at the first bar, so erasing is "clear to the end of the screen" and a
    resize leaves no fragments, whether the terminal clips its rows (xterm) or re-wraps them (tmux)."""

    def __init__(self, stream: TextIO, *, color: bool = False, clock: Callable[[], float] = time.monotonic):
        self.stream, self.color, self.clock = stream, color, clock
        self._bars: dict[str, _Bar] = {}
        self._rows = 0  # rows of bars drawn; the cursor waits, hidden, at the start of the first of them
        self._shown: tuple = ()  # what was last drawn and at which width: a tick redraws only when it changed
        self._last = 0.0
        self._pause = 0
        self._ticker: threading.Thread | None = None
        self._stderr: Any = None  # sys.stderr while bars are live (a library's warning goes above them too)
        # --parallel model runs and the observer's hashing thread update bars from several threads
        self._lock = threading.RLock()

    # -- what the work reports (the Progress protocol) -----------------------------------------------------

    def hashing(self, name: str) -> Callable[[int, int], None]:
        state = {"shown": False, "start": self.clock(), "from": None}
        label = f"hashing {name}"

        def update(done: int, total: int) -> None:
            # Only show a bar for hashing that takes a while (a warm cache answers at once).
            now = self.clock()
            if state["from"] is None:
                state["from"] = (now, done)  # what a warm cache answered at once does not count in the rate
            final = getattr(total, "final", True)  # runner.hashing's total says when the walk found every file
            if done >= total and final:
                self.end(label)
                return
            if not state["shown"] and now - state["start"] < 0.3:
                return
            state["shown"] = True
            more = "" if final else "+"
            since, before = state["from"]
            rate = (done - before) / (now - since) if now > since else 0
            info = f"{size(done)}/{size(total)}{more}"
            if getattr(done, "files", None) is not None and getattr(total, "files", None) is not None:
                info = f"{done.files:,}/{total.files:,}{more} files, {info}"
            info += f", {size(rate)}/s"
            if final and rate > 0 and total > done:
                left = int((total - done) / rate)
                info += f", {left // 60}:{left % 60:02d} left"
            self._update(label, done, max(int(total), 1), info)

        return update

    def download(self, name: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            if total and done >= total:
                self.end(name)
            else:
                self._update(name, done, max(total, done, 1), f"{done / 1e6:.1f} of {max(total, done) / 1e6:.1f} MB")

        return update

    def task(self, name: str) -> Callable[[str], None]:
        self._update(name, 0, None, "")

        def line(text: str) -> None:
            self._update(name, 0, None, clean(text).strip())

        return line

    def end(self, name: str) -> None:
        """The work is over: its bar leaves the screen (the others stay)."""
        with self._lock:
            if self._bars.pop(name, None) is not None:
                self._draw(force=True)

    def done(self) -> None:
        """Every bar leaves the screen."""
        with self._lock:
            self._bars.clear()
            self._draw(force=True)

    # -- sharing the screen -----------------------------------------------------------------------------

    def print_above(self, stream: TextIO, text: str) -> None:
        """Write text (whole lines) where the bars are, then draw the bars again below it."""
        with self._lock:
            self._erase()
            stream.write(text)
            stream.flush()
            self._draw(force=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The bars leave the screen (and stay away, whatever is updated meanwhile) until the block ends."""
        with self._lock:
            self._pause += 1
            self._erase()
        try:
            yield
        finally:
            with self._lock:
                self._pause -= 1
                self._draw(force=True)

    # -- drawing ------------------------------------------------------------------------------------------

    def _update(self, name: str, done: float, total: float | None, info: str) -> None:
        with self._lock:
            bar = self._bars.get(name)
            if bar is None:
                bar = self._bars[name] = _Bar(name, self.clock())
                self._redirect(True)
            bar.done, bar.total, bar.info = done, total, info
            self._draw(force=False)
            if self._ticker is None and self._bars:
                self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
                self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(TICK_S)
            with self._lock:
                if not self._bars:
                    self._ticker = None
                    return
                self._draw(force=False, tick=True)

    def _width(self) -> tuple[int, int]:
        try:
            cols, lines = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, ValueError, OSError):
            cols, lines = 80, 24
        return max(cols, 20), max(lines, 3)

    def _erase(self) -> None:
        # The cursor is at the start of the first bar: clearing from there to the end of the screen removes every
        # bar without counting rows, which a terminal that re-wraps lines on a resize (tmux) would make wrong.
        if self._rows:
            self.stream.write("\r\x1b[J\x1b[?25h")  # and the cursor is shown again
            self.stream.flush()
            self._rows, self._shown = 0, ()

    def _draw(self, *, force: bool, tick: bool = False) -> None:
        now = self.clock()
        if self._pause or (not force and not tick and now - self._last < MIN_DRAW_S):
            return
        cols, lines = self._width()
        bars = list(self._bars.values())
        hidden = max(0, len(bars) - (lines - 2))  # the newest bars; never more rows than the screen has
        if hidden:
            bars = bars[-(lines - 3):]
            hidden = len(self._bars) - len(bars)
        rows = [fit(b.pieces(now, cols - 1, self.color), cols - 1) for b in bars]  # never the last column
        if hidden:
            rows.insert(0, fit([(f"... and {hidden} more", "")], cols - 1))
        shown = (cols, tuple(rows))
        if not force and shown == self._shown:
            return
        self._erase()
        if rows:  # drawn downwards (the screen scrolls as needed), then back up to the first bar, cursor hidden
            self.stream.write("\x1b[?25l" + "".join(f"{r}\n" for r in rows) + f"\x1b[{len(rows)}A")
            self.stream.flush()
        self._rows, self._shown, self._last = len(rows), shown, now
        if not self._bars:
            self._redirect(False)

    def _redirect(self, on: bool) -> None:
        """While bars are live, what is written to sys.stderr (runner.hashing's warnings) is printed above them."""
        if on and self._stderr is None and sys.stderr is self.stream:
            self._stderr, sys.stderr = sys.stderr, _Above(self)
        elif not on and self._stderr is not None:
            if isinstance(sys.stderr, _Above):
                sys.stderr.flush()
                sys.stderr = self._stderr
            self._stderr = None


class _Above:
    """sys.stderr while bars are live: whole lines go above the bars."""

    def __init__(self, live: LiveProgress):
        self._live, self._pending = live, ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self._live.print_above(self._live.stream, lines + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = self._pending, ""
            self._live.print_above(self._live.stream, text + "\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live.stream, name)
