"""The terminal as a person sees it: the CLI in a real pseudo-terminal, its output read through a terminal emulator,
assertions on the screen. Step lines are printed above the live bars and stay whole; a finished task's bar goes; a
resize leaves no fragments; a question is shown whole, with no bar drawn over it, and the run goes on after it."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.terminal.screen import ROOT, Term, plain

pytestmark = pytest.mark.timeout(120)

OUTCOMES = ("ok ", "changed ", "pending ", "failed ", "skipped ")
WARNING = "warning: a library's own warning, written to sys.stderr"
QUESTION = "Send this for dataset mytestdata? [y/N]"
CONSENT_BODY = ['dataset mytestdata: associate will send POST /datasets/benchmarks/:', '{', '  "dataset": 1,',
                '      "AUC": 0.8125,', '      "Accuracy": 0.75', '}',
                "(set consent.compatibility_results: true in the manifest to stop this question)"]


def whole(t: Term) -> str:
    """The screen's rows at full width, one after the other: a line the terminal wrapped reads on across rows, so
    a line printed whole is a substring (a line cut or drawn over is not)."""
    return "".join(t.screen.display)


def bar_rows(rows: list[str]) -> list[str]:
    """Rows drawn by the live display: they start with a task's name (step lines start with their outcome)."""
    return [r for r in rows if r.startswith(("mytestdata: ", "hashing ")) or "━" in r or "─" in r]


def last_row(rows: list[str]) -> str:
    return next((r for r in reversed(rows) if r), "")


def step_lines(root: Path) -> list[str]:
    """What the CLI printed as step lines (its stdout, copied by the driver), without colour."""
    return [ln for ln in plain((root / "stdout.txt").read_text()).splitlines() if ln.startswith(OUTCOMES)]


def shows_bar(name: str) -> callable:
    return lambda rows: any(r.startswith(name) for r in rows)


def test_apply_step_lines_stay_above_the_bars_and_the_consent_question_is_shown_whole(tmp_path):
    root = tmp_path / "ws"
    t = Term("apply", str(root), "apply", rows=60, cols=120, env={"HOLD": "prepare"})
    t.wait_for("Apply 5 steps? [y/N]")
    t.send("y\r")

    # prepare runs (held by the test): its bar is the last row, and the step before it is above it, whole
    rows = t.wait_for(shows_bar("mytestdata: prepare"))
    register = "changed  mytestdata: register             0.0s  dataset 1"
    assert register in rows
    assert last_row(rows).startswith("mytestdata: prepare") and "epoch 3/10" in last_row(rows)
    assert rows.index(register) < rows.index(last_row(rows))
    assert len(bar_rows(rows)) == 1 and len(last_row(rows)) <= 119  # one row, never the last column
    (root / "go-prepare").touch()

    # the consent question: whole, last on the screen, no bar over or under it, and it stays so while it waits
    rows = t.wait_for(QUESTION)
    assert last_row(rows) == QUESTION
    for text in CONSENT_BODY:
        assert text in rows, text
    assert bar_rows(rows) == []
    still = rows
    deadline = time.monotonic() + 1.0  # five ticks of the display's clock: nothing is drawn over the question
    while time.monotonic() < deadline:
        t.pump()
    assert t.rows() == still

    t.send("y\r")
    assert t.finish() == 3  # the association waits for the benchmark owner
    rows, shown = t.rows(), whole(t)
    printed = step_lines(root)
    assert len(printed) == 8
    for line in printed:  # every step line, whole
        assert line in shown, f"{line!r} is not on the screen:\n{t.text()}"
    assert [shown.index(line) for line in printed] == sorted(shown.index(line) for line in printed)  # in order
    assert f"{QUESTION} y" in rows  # the answer, echoed after the question
    assert any(r.startswith("Recap: 1 ok, 4 changed, 3 pending, 0 failed, 0 skipped") for r in rows)
    assert bar_rows(rows) == [] and "epoch 3/10" not in t.text()  # no stale bar, no log line left behind


def test_a_resize_leaves_no_bar_fragments_and_no_colour_with_no_color(tmp_path):
    root = tmp_path / "ws"
    t = Term("apply", str(root), "apply", rows=50, cols=120, env={"HOLD": "prepare", "NO_COLOR": "1"})
    t.wait_for("Apply 5 steps? [y/N]")
    t.send("y\r")
    rows = t.wait_for(lambda rows: any(r.startswith("mytestdata: prepare") and len(r) > 100 for r in rows))

    t.resize(50, 60)  # narrower: the bar is drawn again within the new width, in one row
    rows = t.wait_for(lambda rows: any(r.startswith("mytestdata: prepare") and len(r) <= 59 for r in rows))
    assert len(bar_rows(rows)) == 1 and last_row(rows).startswith("mytestdata: prepare")

    t.resize(50, 100)  # wider again: one row, as wide as the window now allows
    rows = t.wait_for(lambda rows: any(r.startswith("mytestdata: prepare") and 60 < len(r) <= 99 for r in rows))
    assert len(bar_rows(rows)) == 1 and last_row(rows).startswith("mytestdata: prepare")
    assert "changed  mytestdata: register             0.0s  dataset 1" in rows

    (root / "go-prepare").touch()
    t.wait_for(QUESTION)
    t.send("y\r")
    assert t.finish() == 3
    rows = t.rows()
    assert bar_rows(rows) == [] and "epoch 3/10" not in t.text()
    shown = whole(t)
    for line in step_lines(root)[1:]:  # printed after the resizes: whole (the first was clipped by the 60)
        assert line in shown, f"{line!r} is not on the screen:\n{t.text()}"
    assert re.search(rb"\x1b\[[0-9;]*m", t.raw) is None  # NO_COLOR: no colour at all, bars included


def test_a_question_stops_the_live_display_until_it_is_answered(tmp_path):
    root = tmp_path / "console"
    t = Term("console", str(root), rows=20, cols=80)
    rows = t.wait_for(lambda rows: last_row(rows).startswith("mytestdata: model 2: infer") and "epoch" in last_row(rows))
    rows = t.wait_for(lambda rows: WARNING in rows and last_row(rows).startswith("mytestdata: model 2"))
    done_line = "changed  mytestdata / benchmark chestxray: run model 1      0.0s  result 1"
    assert rows.index(done_line) == rows.index(WARNING) - 1  # the lines above the bar, whole
    assert rows.index(WARNING) == rows.index(last_row(rows)) - 1

    (root / "go-bar-shown").touch()  # the question, while the task keeps logging from its thread
    rows = t.wait_for(lambda rows: last_row(rows) == QUESTION)
    assert bar_rows(rows) == [] and "epoch" not in "\n".join(rows)
    assert rows[rows.index(QUESTION) - 4:rows.index(QUESTION)] == ["will send:", "{", '  "results": {"AUC": 0.8}', "}"]
    still = rows
    deadline = time.monotonic() + 1.0  # the task logs every 0.1 s and the display ticks every 0.2 s meanwhile
    while time.monotonic() < deadline:
        t.pump()
    assert t.rows() == still

    t.send("y\r")  # answered: the display comes back, below the answer
    rows = t.wait_for(lambda rows: "answered yes" in rows and last_row(rows).startswith("mytestdata: model 2"))
    assert rows.index("answered yes") > rows.index(f"{QUESTION} y")

    (root / "go-infer").touch()  # the task ends: its bar goes, the step line takes its place
    assert t.finish() == 0
    rows = t.rows()
    assert last_row(rows) == "changed  mytestdata / benchmark chestxray: run model 2      0.0s  result 2"
    assert bar_rows(rows) == [] and "epoch" not in t.text()


def test_parallel_model_runs_each_bar_goes_when_its_model_ends(tmp_path):
    root = tmp_path / "ws"
    hold = "chestxray-linear:infer,model11:infer,model12:infer"
    t = Term("parallel", str(root), "apply", "--yes", "--parallel", "3", rows=60, cols=120, env={"HOLD": hold})
    names = [f"mytestdata: model {m}: infer" for m in (12, 11, 2)]
    rows = t.wait_for(lambda rows: all(shows_bar(n)(rows) for n in names))
    assert len(bar_rows(rows)) == 3
    associate = [r for r in rows if r.startswith("changed  mytestdata / benchmark chestxray: associate")]
    assert len(associate) == 1 and rows.index(associate[0]) < min(rows.index(r) for r in bar_rows(rows))

    (root / "go-model11-infer").touch()  # one model ends: its bars go, the two others stay, each on one row
    rows = t.wait_for(lambda rows: not shows_bar("mytestdata: model 11")(rows) and len(bar_rows(rows)) == 2)
    assert shows_bar(names[0])(rows) and shows_bar(names[2])(rows)

    for name in ("go-model12-infer", "go-chestxray-linear-infer"):
        (root / name).touch()
    assert t.finish() == 0
    rows, shown = t.rows(), whole(t)
    assert bar_rows(rows) == [] and "epoch 3/10" not in t.text()
    printed = step_lines(root)
    assert len([ln for ln in printed if ": run model " in ln]) == 4  # 12, 11, 2 and the reference model
    for line in printed:
        assert line in shown, f"{line!r} is not on the screen:\n{t.text()}"


def test_in_tmux_a_narrower_window_leaves_no_fragment_of_the_wider_bar(tmp_path, tmux):
    """tmux re-wraps a row that no longer fits: a bar drawn at 120 columns becomes two rows at 60. The display
    must clear both (counting the rows it drew would leave the first one behind)."""
    root = tmp_path / "ws"
    command = f"cd {ROOT} && PYTHONPATH=. HOLD=prepare {sys.executable} -m tests.terminal.driver apply {root} apply; " \
              f"echo exit=$?; sleep 600"
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "120", "-y", "50", "-e", f"TERM={env.get('TERM', 'xterm')}",
         command)

    def pane(joined: bool = False) -> list[str]:
        return [r.rstrip() for r in tmux("capture-pane", "-p", *(["-J"] if joined else []), "-t", "t").splitlines()]

    def wait(test, what: str) -> list[str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = pane()
            if test(rows):
                return rows
            time.sleep(0.05)  # polling the pane: tmux has no event to wait on
        raise AssertionError(f"tmux never showed {what}:\n" + "\n".join(pane()))

    wait(lambda rows: "Apply 5 steps? [y/N]" in rows, "the confirmation")
    tmux("send-keys", "-t", "t", "y", "Enter")
    wait(lambda rows: any(r.startswith("mytestdata: prepare") and len(r) > 100 for r in rows), "the wide bar")
    tmux("resize-window", "-t", "t", "-x", "60", "-y", "50")
    rows = wait(lambda rows: any(r.startswith("mytestdata: prepare") and len(r) <= 59 for r in rows), "the new bar")
    assert len(bar_rows(rows)) == 1 and last_row(rows).startswith("mytestdata: prepare")
    assert [r for r in rows if "loss 0." in r] == [last_row(rows)], "a fragment of the wider bar is left"

    (root / "go-prepare").touch()
    wait(lambda rows: last_row(rows) == QUESTION, "the consent question")
    tmux("send-keys", "-t", "t", "y", "Enter")
    wait(lambda rows: "exit=3" in rows, "the end of the run")
    rows, joined = pane(), pane(joined=True)
    assert bar_rows(rows) == [] and not [r for r in rows if "loss 0." in r]
    for line in step_lines(root)[1:]:  # printed after the resize: whole (tmux joins the rows it wrapped)
        assert line in joined, f"{line!r} is not in the pane:\n" + "\n".join(joined)
