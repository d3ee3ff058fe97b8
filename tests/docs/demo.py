"""A throw-away copy of the repository in which `make demo` and scripts/demo.sh can run without touching
the real tree: the files the demo reads, the real .venv linked in, a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as stopped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class DemoCopy:
    root: Path
    port: int

    @property
    def demo_dir(self) -> Path:
        return self.root / ".demo"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MEDPERF_SERVER", "MEDPERF_TOKEN", "MEDPERF_APPLY", "MEDPERF_DEMO", "MAKE"))}
        env.update(MEDPERF_DEMO_PORT=str(self.port), NO_COLOR="1", **extra)
        return env

    def run(self, *argv: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=self.root, env=self.env(**extra), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def server_pid(self) -> int | None:
        try:
            return int((self.demo_dir / "server.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def make_copy(dest: Path, *, with_examples: bool = True) -> DemoCopy:
    """Copy what the demo reads into dest; link the real virtualenv without letting make reinstall it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Makefile", "setup.cfg", "pyproject.toml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "scripts", dest / "scripts")
    shutil.copytree(REPO / ".ci", dest / ".ci", ignore=shutil.ignore_patterns("node_modules"))  # the engine's start
    shutil.copytree(REPO / "manifests", dest / "manifests")
    if with_examples:
        shutil.copytree(REPO / "examples", dest / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / ".venv").symlink_to(REPO / ".venv")
    stamp = REPO / ".venv" / ".installed-stamp"
    if stamp.exists():  # the shared venv is installed: the copy's make must not rebuild it
        older = stamp.stat().st_mtime - 3600
        for name in ("setup.cfg", "pyproject.toml"):
            os.utime(dest / name, (older, older))
    return DemoCopy(dest, free_port())
