"""Names and messages that come from a server reach the terminal as text: no escape sequence but a colour and no
control character but newline and tab survive, so a hostile registry cannot move the cursor, clear the screen,
retitle the window or write the clipboard (OSC 52) through a model's name or a date."""

from __future__ import annotations

import io
import re

from runner.console import Console
from tests.runner.conftest import participating
from tests.runner.fakes import model_record

HOSTILE = "evil\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[1;1H\r\x9b2Jname"
ESCAPE_OR_CONTROL = re.compile(r"\x1b(?!\[[0-9;]*m)|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_the_console_keeps_colours_and_drops_every_other_escape_and_control():
    out = io.StringIO()
    console = Console(out, io.StringIO(), None, environ={})
    console.say(f"model {HOSTILE} \x1b[32mok\x1b[0m\ttabbed")
    assert out.getvalue() == "model evil2Jname \x1b[32mok\x1b[0m\ttabbed\n"  # C1 CSI dropped: "2J" is text


def test_hostile_text_from_the_registry_is_printed_as_text(ws):
    participating(ws)
    ws.api.world["models"][2] = model_record(2, HOSTILE, 102, "example/linear:1")
    ws.api.world["model_assocs"].append({"model": 2, "benchmark": 1, "priority": 0, "approval_status": "APPROVED",
                                         "created_at": "2026-11-22T00:00:02Z"})
    shown = ""
    assert ws.run("apply", str(ws.manifest), "--yes").code == 3  # requested: waits for the benchmark owner
    ws.api.approve(1)
    ws.api.world["dataset_assocs"][-1]["approved_at"] = f"2026-11-23T10:00:00Z {HOSTILE}"  # shown as the plan's date
    for command in (("plan",), ("apply", "--yes"), ("status",), ("results",)):
        r = ws.run(*command, str(ws.manifest))
        shown += r.out + r.err
    assert "evil2Jname" in shown, shown  # the name is there, as text
    assert ESCAPE_OR_CONTROL.search(shown) is None, repr(shown)
