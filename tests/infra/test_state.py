"""The state dir: layout, atomic writes, the lock between runs, the journal and the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import runner.state as state_mod
from runner.errors import LockHeld, StateError
from runner.journal import read_yaml, write_atomic, write_yaml_atomic
from runner.state import StateDir, root_for, server_dir_name

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- layout --------------------------------------------------------------------------------------------

def test_default_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDPERF_APPLY_HOME", raising=False)
    url = "http://127.0.0.1:8000"
    assert root_for(url) == tmp_path / "home" / ".medperf_apply" / "127.0.0.1_8000"
    monkeypatch.setenv("MEDPERF_APPLY_HOME", str(tmp_path / "env"))
    assert root_for(url) == tmp_path / "env"
    assert root_for(url, tmp_path / "flag") == tmp_path / "flag"


@pytest.mark.parametrize("url, name", [
    ("http://127.0.0.1:8000", "127.0.0.1_8000"),
    ("https://api.medperf.org", "api.medperf.org"),
    ("https://api.medperf.org/", "api.medperf.org"),
    ("http://[::1]:8000/x", "__1_8000"),
    ("localhost:9000", "localhost_9000"),
])
def test_server_dir_name(url, name):
    assert server_dir_name(url) == name


def test_layout(tmp_path):
    s = StateDir(tmp_path / "state")
    assert s.dataset_dir(3) == tmp_path / "state" / "datasets" / "3"
    assert s.result_dir(12) == tmp_path / "state" / "results" / "12"
    cache = s.hash_cache()
    cache.close()
    assert (tmp_path / "state" / "hash-cache.sqlite").exists()


def test_unwritable_state_dir_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StateError) as e:
        StateDir(blocker / "state")
    assert str(blocker) in str(e.value)


# -- atomic writes ----------------------------------------------------------------------------------------

def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_and_yaml_roundtrip(tmp_path):
    p = tmp_path / "sub" / "statistics.yaml"
    write_yaml_atomic(p, {"num_cases": 3, "labels_count": {"a": 1}})
    assert read_yaml(p) == {"num_cases": 3, "labels_count": {"a": 1}}
    write_atomic(p, b"x: 1\n")
    assert read_yaml(p) == {"x": 1}
    assert read_yaml(tmp_path / "absent.yaml", default={}) == {}
    assert leftovers(p.parent) == []


def test_failure_mid_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    p = tmp_path / "results.yaml"
    write_atomic(p, "old: true\n")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_mod.os, "fsync", no_space)
    with pytest.raises(StateError) as e:
        write_atomic(p, "new: true\n" * 10000)
    assert "No space left" in str(e.value) and str(p) in str(e.value)
    monkeypatch.undo()
    assert p.read_text() == "old: true\n"
    assert leftovers(tmp_path) == []


def test_interrupt_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "new.yaml"
    real_replace = os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(state_mod.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(p, "a: 1\n")
    monkeypatch.setattr(state_mod.os, "replace", real_replace)
    assert not p.exists() and leftovers(tmp_path) == []


def test_process_killed_mid_write_never_exposes_a_partial_file(tmp_path):
    """A real crash: the writer dies between writing the temp file and renaming it."""
    p = tmp_path / "raw.yaml"
    write_atomic(p, "data_path: /old\n")
    code = textwrap.dedent(f"""
        import os, runner.state as s
        os.replace = lambda a, b: os._exit(9)
        s.write_atomic({str(p)!r}, "data_path: /new\\n" * 1000)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30)
    assert r.returncode == 9
    assert p.read_text() == "data_path: /old\n"


def test_corrupt_yaml_is_a_state_error_naming_the_file(tmp_path):
    p = tmp_path / "statistics.yaml"
    p.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(StateError) as e:
        read_yaml(p)
    assert str(p) in str(e.value) and "delete the file" in str(e.value)


# -- the lock --------------------------------------------------------------------------------------------

HOLDER = """
import sys
from runner.state import StateDir
with StateDir(sys.argv[1]).lock() as lock:
    print("locked", flush=True)
    if sys.argv[2] == "die":
        import os
        os._exit(0)           # dies holding the lock, without releasing it
    sys.stdin.readline()      # holds it until told to release it (or until its stdin closes)
"""


def hold(state, mode="hold"):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), mode], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def release(proc) -> None:
    proc.stdin.write("release\n")
    proc.stdin.close()
    proc.wait(30)


def has_open(pid: int, path) -> bool:
    """Whether process `pid` holds a file descriptor on `path` (its lock attempt has begun)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(path):
                return True
        except OSError:
            continue
    return False


def test_second_run_fails_fast_naming_the_holder(tmp_path):
    s = StateDir(tmp_path)
    proc = hold(tmp_path)
    try:
        with pytest.raises(LockHeld) as e:
            with s.lock():
                pass
        assert proc.poll() is None  # refused while the holder holds it: it did not wait for the holder
        text = str(e.value)
        assert f"pid {proc.pid}" in text and "--lock-timeout" in text and str(s.lock_path) in text
        assert "after waiting" not in text  # no timeout given: refused at once, not after a wait
    finally:
        release(proc)


def test_second_run_waits_with_a_timeout(tmp_path):
    import threading

    s = StateDir(tmp_path)
    proc = hold(tmp_path)
    got: list = []

    def second_run():
        with s.lock(timeout=60, poll_interval=0.01) as lock:
            got.append((lock.took_over, json.loads(s.lock_path.read_text())["pid"]))

    waiter = threading.Thread(target=second_run, daemon=True)
    try:
        waiter.start()
        for _ in range(3000):  # until the second run has opened the lock file (it then polls flock)
            if has_open(os.getpid(), s.lock_path) or not waiter.is_alive():
                break
            time.sleep(0.01)
        assert waiter.is_alive() and got == [], "the second run did not wait for the holder"
        release(proc)  # the holder finishes: the waiting run takes the lock
        waiter.join(30)
        # the holder released it properly (nothing taken over), and the lock now names this process
        assert got == [(None, os.getpid())]
    finally:
        if proc.poll() is None:
            release(proc)


def test_timeout_expires_with_lock_held(tmp_path):
    s = StateDir(tmp_path)
    proc = hold(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld) as e:
            with s.lock(timeout=0.5, poll_interval=0.05):
                pass
        assert time.monotonic() - started >= 0.5  # it did wait the timeout out
        assert proc.poll() is None  # and gave up while the holder still held it
        assert "after waiting 0.5 s" in str(e.value)
    finally:
        release(proc)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    s = StateDir(tmp_path)
    proc = hold(tmp_path, "die")
    proc.wait(10)
    holder = json.loads(s.lock_path.read_text())
    assert holder["pid"] == proc.pid  # it left its record behind
    with s.lock() as lock:
        assert lock.took_over is not None and lock.took_over.pid == proc.pid
        assert json.loads(s.lock_path.read_text())["run_id"] == lock.run_id


def test_lock_in_the_same_process_is_exclusive_and_released(tmp_path):
    s = StateDir(tmp_path)
    with s.lock(run_id="first") as first:
        assert first.run_id == "first"
        with pytest.raises(LockHeld) as e:
            with StateDir(tmp_path).lock():
                pass
        assert "run first" in str(e.value)
    with s.lock() as again:  # released on exit, nothing taken over
        assert again.took_over is None


def test_lock_released_when_the_body_raises(tmp_path):
    s = StateDir(tmp_path)
    with pytest.raises(RuntimeError):
        with s.lock():
            raise RuntimeError("boom")
    with s.lock() as lock:
        assert lock.took_over is None


# -- journal and ledger ----------------------------------------------------------------------------------

def test_journal_unfinished_steps(tmp_path):
    s = StateDir(tmp_path)
    a = s.journal.begin("dataset/mytestdata/register", body_name="mytestdata")
    b = s.journal.begin("dataset/mytestdata/prepare")
    s.journal.end(a, "changed", server_id=1)
    unfinished = s.journal.unfinished()
    assert [e.id for e in unfinished] == [b]
    assert unfinished[0].step == "dataset/mytestdata/prepare"
    # a fresh reader (the next run) sees the same
    again = StateDir(tmp_path).journal
    assert [e.step for e in again.unfinished()] == ["dataset/mytestdata/prepare"]
    done = [e for e in again.entries() if e.id == a][0]
    assert done.outcome == "changed" and done.info == {"body_name": "mytestdata"}


def test_journal_tolerates_a_torn_last_line(tmp_path):
    s = StateDir(tmp_path)
    a = s.journal.begin("dataset/x/register")
    with open(s.journal.path, "ab") as f:  # a crash in the middle of writing the next record
        f.write(b'{"event": "end", "id": "' + a.encode()[:5])
    assert [e.id for e in s.journal.unfinished()] == [a]
    s.journal.end(a, "resolved")  # the next record starts on its own line
    assert s.journal.unfinished() == []
    lines = s.journal.path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["outcome"] == "resolved"


def test_journal_is_safe_from_threads(tmp_path):
    import threading

    s = StateDir(tmp_path)
    ids = []

    def work():
        for _ in range(25):
            ids.append(s.journal.begin("step"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.id for e in s.journal.unfinished()) == sorted(ids)
    assert len(ids) == 100


def test_ledger_records_what_was_sent(tmp_path):
    s = StateDir(tmp_path)
    s.ledger.record("http://127.0.0.1:8000", "POST", "datasets/", {"name": "d"})
    s.ledger.record("http://127.0.0.1:8000", "PUT", "datasets/1/", {"report": {"execution_status": "started"}})
    entries = StateDir(tmp_path).ledger.entries()
    assert [(e["method"], e["path"]) for e in entries] == [("POST", "datasets/"), ("PUT", "datasets/1/")]
    assert entries[0]["body"] == {"name": "d"} and entries[0]["server"] == "http://127.0.0.1:8000"
    assert entries[0]["time"].endswith("Z")


def test_journal_compaction_keeps_only_unfinished_steps(tmp_path):
    s = StateDir(tmp_path)
    for i in range(50):
        s.journal.end(s.journal.begin(f"done/{i}", n=i), "changed")
    open_one = s.journal.begin("dataset/x/prepare", dataset_id=3)
    assert s.journal.compact(max_bytes=1 << 20) is False  # small: left alone
    assert s.journal.compact(max_bytes=100) is True
    assert len(s.journal.path.read_text().splitlines()) == 1
    [entry] = s.journal.unfinished()
    assert entry.id == open_one and entry.info == {"dataset_id": 3}
    s.journal.end(open_one, "resolved")
    assert s.journal.unfinished() == []
