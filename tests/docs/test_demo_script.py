"""scripts/demo.sh without a Docker engine: it stops at once with one line saying how to start one, and
`clean` stops only the demo's own server (by its pid, never a process that merely reuses the number)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.docs.demo import make_copy, pid_alive


@pytest.fixture
def copy(tmp_path):
    return make_copy(tmp_path / "repo", with_examples=False)


def test_no_engine_stops_first_with_one_line_that_says_how_to_start_one(copy):
    p = copy.run("bash", "scripts/demo.sh", DOCKER_HOST="unix:///nonexistent/docker.sock", timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "services.sh" in lines[0] and "DEVELOPERS.md" in lines[0]
    if "no docker command" not in lines[0]:
        assert "no Docker engine answers at unix:///nonexistent/docker.sock" in lines[0]
    assert not (copy.root / "medperf_tutorial").exists(), "nothing is built before the engine answers"


def test_make_demo_runs_the_script_and_fails_the_same_way(copy):
    p = copy.run("make", "--no-print-directory", "demo", DOCKER_HOST="unix:///nonexistent/docker.sock", timeout=60)
    assert p.returncode != 0
    assert "DEVELOPERS.md" in p.stderr


def test_clean_removes_the_demo_files_and_leaves_an_unrelated_process_alive(copy):
    demo = copy.demo_dir
    (demo / "state" / "datasets" / "1").mkdir(parents=True)
    (demo / "server.sqlite3").write_text("x")
    (demo / "tokens.json").write_text("{}")
    (copy.root / "medperf_tutorial" / "sample_raw_data" / "images").mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (demo / "server.pid").write_text(f"{stranger.pid}\n")  # a stale pid now used by another program
        p = copy.run("make", "--no-print-directory", "demo-clean", timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert pid_alive(stranger.pid), "demo-clean killed a process that is not the demo server"
        assert "stale pid file" in p.stdout
        assert not demo.exists() and not (copy.root / "medperf_tutorial").exists()
        assert (copy.root / "manifests").is_dir() and (copy.root / "scripts").is_dir()
    finally:
        stranger.kill()
        stranger.wait()


def test_clean_with_nothing_to_clean_succeeds(copy):
    p = copy.run("bash", "scripts/demo.sh", "clean", timeout=60)
    assert p.returncode == 0, p.stderr
    p = copy.run("bash", "scripts/demo.sh", "frobnicate", timeout=60)
    assert p.returncode == 64 and "usage" in p.stderr
