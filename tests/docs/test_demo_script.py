"""scripts/demo.sh without a Docker engine: it stops at once with one line saying how to start one, and
`clean` stops only the demo's own server (by its pid, never a process that merely reuses the number)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.docs.demo import make_copy, pid_alive


@pytest.fixture
def copy(tmp_path):
    return make_copy(tmp_path / "repo", with_examples=False)


def test_an_engine_named_by_docker_host_that_does_not_answer_stops_first_with_one_line(copy):
    p = copy.run("bash", "scripts/demo.sh", DOCKER_HOST="unix:///nonexistent/docker.sock", timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "no Docker engine answers at unix:///nonexistent/docker.sock" in lines[0]
    assert "unset DOCKER_HOST and make demo starts its own" in lines[0]
    assert not (copy.root / "medperf_tutorial").exists(), "nothing is built before the engine answers"


def test_make_demo_runs_the_script_and_fails_the_same_way(copy):
    p = copy.run("make", "--no-print-directory", "demo", DOCKER_HOST="unix:///nonexistent/docker.sock", timeout=60)
    assert p.returncode != 0
    assert "no Docker engine answers at unix:///nonexistent/docker.sock" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_without_root_or_sudo_it_says_in_one_line_what_to_install():
    with tempfile.TemporaryDirectory() as tmp:  # a folder the unprivileged user can enter (pytest's tmp is 0700)
        os.chmod(tmp, 0o755)
        copy = make_copy(Path(tmp) / "repo", with_examples=False)
        subprocess.run(["chown", "-R", "-h", "65534:65534", str(copy.root)], check=True)
        env = copy.env()
        env.pop("DOCKER_HOST", None)
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "scripts/demo.sh"],
                           cwd=copy.root, env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "starting one needs root (no sudo here)" in lines[0]
    assert "apt-get install docker.io mmdebstrap docker-registry" in lines[0]


def test_clean_removes_only_what_the_demo_made_and_leaves_an_unrelated_process_alive(copy):
    demo = copy.demo_dir
    (demo / "state" / "datasets" / "1").mkdir(parents=True)
    (demo / "server.sqlite3").write_text("x")
    (demo / "tokens.json").write_text("{}")
    generated = copy.root / "medperf_tutorial" / "sample_raw_data" / "images"
    generated.mkdir(parents=True)
    theirs = copy.root / "medperf_tutorial" / "sites" / "north" / "chest-2024" / "images"  # the user's own data
    theirs.mkdir(parents=True)
    (theirs / "case1.png").write_text("x")
    (demo / "created").write_text("medperf_tutorial/sample_raw_data\n")  # what the demo generated
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (demo / "server.pid").write_text(f"{stranger.pid}\n")  # a stale pid now used by another program
        p = copy.run("make", "--no-print-directory", "demo-clean", timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert pid_alive(stranger.pid), "demo-clean killed a process that is not the demo server"
        assert "stale pid file" in p.stdout
        assert not demo.exists() and not (copy.root / "medperf_tutorial" / "sample_raw_data").exists()
        assert (theirs / "case1.png").is_file(), "demo-clean removed data the demo did not generate"
        assert (copy.root / "manifests").is_dir() and (copy.root / "scripts").is_dir()
    finally:
        stranger.kill()
        stranger.wait()


def test_clean_removes_the_parents_it_emptied(copy):
    (copy.root / "medperf_tutorial" / "sites" / "north" / "chest-2025" / "labels").mkdir(parents=True)
    copy.demo_dir.mkdir()
    (copy.demo_dir / "created").write_text("medperf_tutorial/sites/north/chest-2025\n")
    p = copy.run("bash", "scripts/demo.sh", "clean", timeout=60)
    assert p.returncode == 0, p.stderr
    assert not (copy.root / "medperf_tutorial").exists()


def test_clean_with_nothing_to_clean_succeeds(copy):
    p = copy.run("bash", "scripts/demo.sh", "clean", timeout=60)
    assert p.returncode == 0, p.stderr
    p = copy.run("bash", "scripts/demo.sh", "frobnicate", timeout=60)
    assert p.returncode == 64 and "usage" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="starting dockerd needs root")
def test_no_engine_at_all_starts_a_private_one_that_clean_stops():
    if not shutil.which("dockerd"):
        if os.environ.get("MEDPERF_REQUIRE_DOCKER") == "1":
            pytest.fail("dockerd is not installed (MEDPERF_REQUIRE_DOCKER=1)")
        pytest.skip("dockerd is not installed")
    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:  # short: a unix socket path has at most 107 bytes
        copy = make_copy(Path(tmp) / "r", with_examples=False)
        env = {k: v for k, v in copy.env().items() if k != "DOCKER_HOST"}
        p = subprocess.run(["bash", "scripts/demo.sh", "engine"], cwd=copy.root, env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        sock = copy.demo_dir / "services" / "docker" / "docker.sock"
        assert p.stdout.strip() == f"export DOCKER_HOST=unix://{sock}"
        assert "starting a private Docker engine" in p.stderr
        pid = int((copy.demo_dir / "services" / "docker" / "dockerd.pid").read_text())
        try:
            info = subprocess.run(["docker", "info", "--format", "{{.DockerRootDir}}"], capture_output=True,
                                  text=True, env={**env, "DOCKER_HOST": f"unix://{sock}"}, timeout=30)
            assert info.returncode == 0 and info.stdout.strip().startswith(str(copy.demo_dir)), info.stderr
            clean = subprocess.run(["bash", "scripts/demo.sh", "clean"], cwd=copy.root, env=env, capture_output=True,
                                   text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert clean.returncode == 0, clean.stderr
            assert f"stopping dockerd {pid}" in clean.stdout
            assert not pid_alive(pid) and not copy.demo_dir.exists()
        finally:
            if pid_alive(pid):
                os.kill(pid, 15)
