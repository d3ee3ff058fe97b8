"""The hashing progress line: files and bytes done, rate, and time left once the total is known."""

from __future__ import annotations

import io
import re
import time

from runner.console import LiveProgress
from runner.hashing import Amount


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def shown(stream: Terminal) -> list[str]:
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", stream.getvalue())
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def test_the_line_shows_files_bytes_rate_and_time_left():
    out = Terminal()
    progress = LiveProgress(out)
    update = progress.hashing("ds")
    update(Amount(0, 0), Amount(10 << 20, 100, final=False))
    time.sleep(0.35)
    update(Amount(300 << 20, 3000), Amount(900 << 20, 9000, final=False))  # still walking: no time left
    time.sleep(0.1)
    update(Amount(400 << 20, 4000), Amount(90 << 30, 900_000))
    time.sleep(0.1)
    progress.done()
    lines = shown(out)
    walking = next(line for line in lines if "3,000/9,000+ files" in line)
    assert "300 MiB/900 MiB+" in walking and "/s" in walking and "left" not in walking
    known = next(line for line in lines if "4,000/900,000 files" in line)
    assert re.search(r"400 MiB/90 GiB, [\d,.]+ [KMG]i?B/s, \d+:\d\d left", known), known


def test_a_quick_hash_shows_nothing():
    out = Terminal()
    progress = LiveProgress(out)
    update = progress.hashing("ds")
    update(Amount(5, 1), Amount(5, 1))
    progress.done()
    assert shown(out) == []


def test_plain_ints_still_work():
    out = Terminal()
    progress = LiveProgress(out)
    update = progress.hashing("ds")
    update(0, 100)
    time.sleep(0.35)
    update(50, 100)
    progress.done()
    assert any("50 B/100 B" in line for line in shown(out))
