"""Fixtures of the terminal tests: tmux, whose windows re-wrap their lines on a resize (as many terminals do, and
as the pyte emulator does not)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import _unavailable


@pytest.fixture
def tmux(tmp_path):
    """`tmux(*args)` runs tmux on a server of this test's own (its socket under tmp_path), killed at the end."""
    if shutil.which("tmux") is None:
        _unavailable("tmux", "MEDPERF_REQUIRE_TMUX", "no tmux on PATH (Debian's tmux; .ci/services.sh install)")
    socket = tmp_path / "tmux.sock"

    def run(*args: str) -> str:
        return subprocess.run(["tmux", "-S", str(socket), *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout

    yield run
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, timeout=30)
