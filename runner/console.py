"""The terminal: where human text and JSON go, colour, prompts, progress bars (rich, imported lazily).

Text mode: the plan, step lines and recap go to stdout. JSON mode: only the JSON document goes to stdout,
every human line to stderr, and nothing is ever asked. Colour only on a terminal and never with NO_COLOR.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from runner.clients import NoProgress, Progress


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Console:
    def __init__(self, stdout: TextIO, stderr: TextIO, stdin: TextIO | None, *, environ: Mapping[str, str],
                 output: str = "text"):
        self.stdout, self.stderr, self.stdin = stdout, stderr, stdin
        self.json_mode = output == "json"
        self.human = stderr if self.json_mode else stdout
        no_color = "NO_COLOR" in environ or environ.get("TERM") == "dumb"
        self.color = _isatty(self.human) and not no_color
        self.err_color = _isatty(stderr) and not no_color
        self.can_prompt = not self.json_mode and stdin is not None and _isatty(stdin)
        self.progress_enabled = _isatty(stderr) and not self.json_mode

    def say(self, text: str = "") -> None:
        """A human line (stdout in text mode, stderr in JSON mode)."""
        self.human.write(text if text.endswith("\n") else text + "\n")
        self.human.flush()

    def error(self, text: str) -> None:
        msg = f"\x1b[31merror:\x1b[0m {text}" if self.err_color else f"error: {text}"
        self.stderr.write(msg + "\n")
        self.stderr.flush()

    def warn(self, text: str) -> None:
        self.stderr.write(f"warning: {text}\n")
        self.stderr.flush()

    def document(self, doc: Mapping[str, Any]) -> None:
        """The one JSON document of --output json."""
        self.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        self.stdout.flush()

    def confirm(self, question: str) -> bool:
        """Ask on stderr, read a line; only y/yes is yes (an empty answer is no)."""
        if not self.can_prompt:
            return False
        self.stderr.write(f"{question} [y/N] ")
        self.stderr.flush()
        answer = self.stdin.readline()
        return answer.strip().lower() in ("y", "yes")

    def progress(self) -> Progress:
        return RichProgress(self.stderr) if self.progress_enabled else NoProgress()


class RichProgress:
    """Progress bars for hashing and container tasks: elapsed time and the container's last log line."""

    def __init__(self, stream: TextIO):
        import threading

        self._stream = stream
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()  # --parallel model runs start their bars from several threads

    def _bar(self):
        with self._lock:
            return self._make_bar()

    def _make_bar(self):
        if self._progress is None:
            from rich.console import Console as RichConsole
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                      TextColumn("{task.fields[line]}"),
                                      console=RichConsole(file=self._stream), transient=True)
            self._progress.start()
        return self._progress

    def hashing(self, name: str) -> Callable[[int, int], None]:
        state = {"shown": False, "start": time.monotonic(), "from": None}

        def size(n: float) -> str:
            for unit in ("B", "KiB", "MiB", "GiB"):
                if n < 1024 or unit == "GiB":
                    break
                n /= 1024
            return f"{n:,.1f} {unit}" if 0 < n < 10 and unit != "B" else f"{n:,.0f} {unit}"

        def update(done: int, total: int) -> None:
            # Only show a bar for hashing that takes a while (a warm cache answers at once).
            now = time.monotonic()
            if state["from"] is None:
                state["from"] = (now, done)  # what a warm cache answered at once does not count in the rate
            if not state["shown"] and (done >= total or now - state["start"] < 0.3):
                return
            # done and total are bytes; runner.hashing's also carry .files, and total .final once the
            # walk has found every file (before that, no time left can be told)
            final = getattr(total, "final", True)
            more = "" if final else "+"
            since, before = state["from"]
            rate = (done - before) / (now - since) if now > since else 0
            line = f"{size(done)}/{size(total)}{more}"
            if getattr(done, "files", None) is not None and getattr(total, "files", None) is not None:
                line = f"{done.files:,}/{total.files:,}{more} files, {line}"
            line += f", {size(rate)}/s"
            if final and rate > 0 and total > done:
                left = int((total - done) / rate)
                line += f", {left // 60}:{left % 60:02d} left"
            bar = self._bar()
            if not state["shown"]:
                state["shown"] = True
                self._tasks[name] = bar.add_task(f"hashing {name}", total=max(total, 1), line=line)
            bar.update(self._tasks[name], completed=done, total=max(total, 1), line=line)

        return update

    def task(self, name: str) -> Callable[[str], None]:
        bar = self._bar()
        tid = bar.add_task(name, total=None, line="")

        def line(text: str) -> None:
            bar.update(tid, line=text.strip()[-60:])

        return line

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()
