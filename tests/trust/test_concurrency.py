"""Two applies on one state dir (the lock): the second fails fast naming the holder's pid, or waits with
--lock-timeout and then finds the work done; a stale lock of a dead process is taken over. Real processes,
the real registry; the first run is held mid-write by the proxy so that the overlap is certain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.proxy import FaultProxy
from tests.trust.conftest import manifest_text, no_traceback


def _held_first_run(trial, proxy):
    hold = proxy.hold("POST", r"/api/v0/datasets/")
    first = trial.spawn("apply")
    assert hold.reached.wait(60), "the first run never reached its POST"
    return first, hold


def _waiting_for_the_lock(trial, proc, timeout: float = 60) -> bool:
    """Wait until `proc` has opened the state dir's lock file (it then polls for the lock); False if it ended."""
    lock = os.path.realpath(trial.state_dir / "lock")
    deadline = time.monotonic() + timeout  # a guard against a hang, not a measure
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == lock:
                    return True
            except OSError:
                continue
        time.sleep(0.01)
    return False


def test_second_apply_fails_fast_with_the_holders_pid(trial_factory, registry):
    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3, text=manifest_text(state="registered"))
        first, hold = _held_first_run(trial, proxy)
        second = trial.run("apply")
        assert first.poll() is None  # it failed while the first run still held the lock: it did not wait
        assert "after waiting" not in second.err  # refused at once, not after a wait
        assert second.code == 1 and no_traceback(second.out + second.err), second.out + second.err
        assert f"locked by pid {first.pid}" in second.err and "lock-timeout" in second.err, second.err
        plan = trial.run("plan")  # read-only: no lock needed, and it sees the truth (the POST landed)
        assert plan.code in (0, 2) and no_traceback(plan.out + plan.err), plan.out + plan.err
        hold.release()
        done = trial.finish(first)
        assert done.code == 0, done.out + done.err
        assert trial.counts()["datasets"] == 1 and trial.duplicates() == []


def test_second_apply_waits_with_lock_timeout_then_finds_it_done(trial_factory, registry):
    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3, text=manifest_text(state="registered"))
        first, hold = _held_first_run(trial, proxy)
        second = trial.spawn("apply", "--lock-timeout", "60")
        waiting = _waiting_for_the_lock(trial, second)
        assert waiting and second.poll() is None, "the second run did not wait for the lock"
        hold.release()  # the first run goes on, finishes and releases the lock to the waiting second
        r1, r2 = trial.finish(first), trial.finish(second)
        assert r1.code == 0 and r2.code == 0, r1.err + r2.err
        assert "Recap: 1 ok, 0 changed" in r2.out, r2.out  # the work was done by the first: nothing twice
        assert "took over" not in r2.err  # a released lock is not a stale one
        assert trial.counts()["datasets"] == 1 and trial.duplicates() == []


def test_lock_timeout_expires_with_a_clear_message(trial_factory, registry):
    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3, text=manifest_text(state="registered"))
        first, hold = _held_first_run(trial, proxy)
        start = time.monotonic()
        second = trial.run("apply", "--lock-timeout", "0.5")
        waited = time.monotonic() - start
        assert second.code == 1 and waited >= 0.5, (waited, second.err)  # it waited the timeout out...
        assert first.poll() is None  # ...and gave up while the first run still held the lock
        assert f"pid {first.pid}" in second.err and "after waiting 0.5 s" in second.err, second.err
        hold.release()
        assert trial.finish(first).code == 0


def test_a_stale_lock_of_a_dead_process_is_taken_over(trial_factory, registry):
    trial = trial_factory(None, cases=3, text=manifest_text(state="registered"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial.state_dir.mkdir(parents=True)
    (trial.state_dir / "lock").write_text(json.dumps({"pid": dead.pid, "host": "vm", "started": "2026-01-01T00:00:00Z",
                                                      "run_id": "deadbeef"}))
    r = trial.run("apply")
    assert r.code == 0 and no_traceback(r.out + r.err), r.out + r.err
    assert f"took over the lock of a run that died (pid {dead.pid}" in r.err, r.err
    again = trial.run("apply")
    assert again.code == 0 and "took over" not in again.err  # released cleanly this time


def test_another_data_owner_with_the_same_manifest_never_touches_the_first_ones_records(trial_factory, registry,
                                                                                          docker_client):
    """Two hospitals, one manifest, the same toy data: each has its own dataset; the second cannot take the first's
    operational generated_uid (the server refuses, the run says so) and nothing of the first changes."""
    from tests.support.server import TESTDO2
    from tests.trust.conftest import require_images

    require_images()
    first = trial_factory(None, cases=6, name="hospital-a")
    assert first.run("apply").code == 0
    (mine,) = first.srv_datasets()
    second = trial_factory(None, cases=6, name="hospital-b")
    second.env["MEDPERF_TOKEN"] = registry.tokens[TESTDO2]
    r = second.run("apply")
    assert r.code == 1 and no_traceback(r.out + r.err), r.out + r.err
    failed = [line for line in r.out.splitlines() if line.startswith("failed")]
    assert failed and "set operational" in failed[0] and "same generated uid" in failed[0].lower(), r.out
    (theirs,) = second.srv_datasets()
    assert theirs["id"] != mine["id"] and theirs["state"] == "DEVELOPMENT"
    (again,) = first.srv_datasets()
    assert again == mine  # not a field of the first hospital's dataset changed
    assert first.run("plan").code == 0
