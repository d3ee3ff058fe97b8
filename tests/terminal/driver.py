"""What the pseudo-terminal tests run as a process: the real CLI (main, its real Console on the pty) against the
fake registry and a fake container runner whose tasks take as long as the test says.

    python -m tests.terminal.driver apply ROOT [CLI ARGS...]      the tutorial's second half in workspace ROOT
    python -m tests.terminal.driver parallel ROOT [CLI ARGS...]   the same, approved at once, three more models
    python -m tests.terminal.driver console ROOT                  a live bar, a question, an answer

A task named in $HOLD (comma-separated: a task, or IMAGE:TASK with the image's short name, e.g. model11:infer)
prints a long log line and runs until the file ROOT/go-<the name, ':' as '-'> exists (the test's go-ahead);
every other task ends at once. Everything the CLI writes to stdout is also copied to
ROOT/stdout.txt: the lines the screen must show whole.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from runner.cli import main
from runner.console import Console
from tests.runner.conftest import Workspace, participating
from tests.runner.fakes import FakeRunner, model_record

LOG_LINE = "epoch 3/10 " + "loss 0.4231 accuracy 0.8812 " * 6  # longer than any terminal row here
POLL_S = 0.02


def wait_for_go(root: Path, task: str, on_line=None) -> None:
    go = root / f"go-{task}"
    n = 0
    while not go.exists():
        if on_line is not None and n % 5 == 0:  # a container that keeps logging, as a real one does
            on_line(f"{LOG_LINE}[{n // 5}]")
        n += 1
        time.sleep(POLL_S)


class PacedRunner(FakeRunner):
    """The fake runner, with the tasks named in $HOLD running until the test lets them end."""

    def __init__(self, root: Path):
        super().__init__()
        self.root = root
        self.hold = {t for t in os.environ.get("HOLD", "").split(",") if t}

    def run_task(self, spec, task, volumes, *, log_path, on_line=None, inactivity_timeout=None, timeout=None):
        image = spec.image.rsplit("/", 1)[-1].split(":")[0]
        for name in (task, f"{image}:{task}"):
            if name in self.hold:
                wait_for_go(self.root, name.replace(":", "-"), on_line)
        return super().run_task(spec, task, volumes, log_path=log_path, on_line=on_line,
                                inactivity_timeout=inactivity_timeout, timeout=timeout)


class Tee:
    """The pty's stdout, with a copy of every write in a file."""

    def __init__(self, stream, copy: Path):
        self.stream, self.copy = stream, open(copy, "w", encoding="utf-8")  # noqa: SIM115 - lives as the process

    def write(self, text: str) -> int:
        self.copy.write(text)
        self.copy.flush()
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def apply(root: Path, argv: list[str], *, parallel: bool = False) -> int:
    if parallel:  # every consent given, the association approved at once, models 2, 11 and 12 to run
        ws = participating(Workspace(root))
        ws.api.world["benchmarks"][1]["dataset_auto_approval_mode"] = "ALWAYS"
        for mid in (11, 12):
            ws.api.world["models"][mid] = model_record(mid, f"model{mid}", 100 + mid, f"medperf-apply/model{mid}:latest")
            ws.api.world["model_assocs"].append({"model": mid, "benchmark": 1, "priority": mid,
                                                 "approval_status": "APPROVED", "created_at": "2026-11-22T00:00:00Z"})
    else:
        ws = participating(Workspace(root), **{"      compatibility_results: true\n": ""})  # asked in the terminal
    ws.runner = PacedRunner(root)
    stdout = Tee(sys.stdout, root / "stdout.txt")
    return main([*argv, str(ws.manifest), "--state-dir", str(ws.state_dir)], stdout=stdout, stderr=sys.stderr,
                stdin=sys.stdin, environ={**os.environ, **ws.environ}, clients=ws.clients())


def console(root: Path) -> int:
    """A bar whose task keeps logging from another thread (as a --parallel model run's does) while a question is
    asked: ROOT/go-bar-shown asks it, ROOT/go-infer ends the task."""
    root.mkdir(parents=True, exist_ok=True)
    c = Console(sys.stdout, sys.stderr, sys.stdin, environ=os.environ)
    progress = c.progress()
    name = "mytestdata: model 2: infer"
    line = progress.task(name)
    worker = threading.Thread(target=wait_for_go, args=(root, "infer", line))
    worker.start()
    c.say("changed  mytestdata / benchmark chestxray: run model 1      0.0s  result 1")
    print("warning: a library's own warning, written to sys.stderr", file=sys.stderr)  # as runner.hashing's
    wait_for_go(root, "bar-shown")
    answer = c.confirm("Send this for dataset mytestdata?", details='will send:\n{\n  "results": {"AUC": 0.8}\n}\n')
    c.say(f"answered {'yes' if answer else 'no'}")
    worker.join()
    progress.end(name)
    c.say("changed  mytestdata / benchmark chestxray: run model 2      0.0s  result 2")
    progress.done()
    return 0


if __name__ == "__main__":
    mode, where, *rest = sys.argv[1:]
    sys.exit(console(Path(where)) if mode == "console" else apply(Path(where), rest, parallel=mode == "parallel"))
