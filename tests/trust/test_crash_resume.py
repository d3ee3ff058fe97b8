"""Crash resume: `medperf-apply apply` SIGKILLed at every step boundary and inside every long step,
then applied again: the run converges, no server record exists twice, no state-dir file is half-written.

Kill points are black-box: the event log (a step started or ended), the Docker engine (a task's container
is running), the runner's open files (it is reading the raw data: hashing), and the recording proxy holding
the server's answer to a write (the server has the record; the runner never learnt of it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.proxy import FaultProxy
from tests.trust.conftest import (
    cli_command,
    manifest_text,
    no_traceback,
    reap_containers,
    require_images,
    running_containers,
)

pytestmark = [pytest.mark.docker]

KILLED: list[str] = []  # every kill point tried in this session (the closing figures)
ORPHANS: list[int] = []  # task containers a killed run left behind
CHAOS: list[str] = []  # what the chaos run went through


def _lock_holder(trial, proc):
    def held() -> bool:
        try:
            return f'"pid": {proc.pid}' in (trial.state_dir / "lock").read_text()
        except OSError:
            return False
    return held


def _reading_under(folder: Path, proc):
    """True while the process has a file under `folder` open (the hasher reads the raw data)."""
    def reading() -> bool:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith(str(folder)):
                    return True
            except OSError:
                continue
        return False
    return reading


def _check_invariants(trial, where: str) -> None:
    assert trial.half_written() == [], f"after the kill at {where}: half-written files"
    assert trial.duplicates() == [], f"after the kill at {where}: duplicated server records"


def _converged(trial, where: str, *, expect: int = 0, took_over: bool | None = True) -> None:
    r = trial.run("apply")
    assert r.code == expect, f"resume after the kill at {where} did not converge:\n{r.out}\n{r.err}"
    assert no_traceback(r.out + r.err)
    if took_over is not None:  # None: killed after its last step, maybe after it released the lock
        assert ("took over the lock of a run that died" in r.err) is took_over, r.err
    from runner.journal import Journal

    assert Journal(trial.state_dir / "journal.jsonl").unfinished() == [], "an unfinished step was left open"
    if expect == 0:
        again = trial.run("plan")
        assert again.code == 0 and "No changes." in again.out, again.out + again.err
    _check_invariants(trial, where)


# The dataset half: each point -> how to arm it (a condition to kill at). Two chains: every resumed run is
# killed at the next point, and the last one converges. Each chain's points are ordered so that each is
# reached by the run after the previous kill, whatever that kill interrupted.
def _arm(point: str, trial, proxy, docker_client):
    if point == "observing (lock held, before the plan)":
        return lambda proc: _lock_holder(trial, proc)
    if point.startswith("step start: ") or point.startswith("step end: "):
        kind, action = point.split(": ")
        ev = "step_start" if kind == "step start" else "step_end"
        return lambda proc: trial.event_seen(ev, key=f"/{action}")
    if point.startswith("container: "):
        task = point.split(": ")[1]
        return lambda proc: lambda: bool(running_containers(docker_client, trial.root, task))
    if point.startswith("answer held: "):
        method, path, body = {
            "answer held: POST /datasets/ (register)": ("POST", r"/api/v0/datasets/", None),
            "answer held: PUT report started": ("PUT", r"/api/v0/datasets/\d+/", rb'"started"'),
            "answer held: PUT set operational": ("PUT", r"/api/v0/datasets/\d+/", rb'"OPERATION"'),
        }[point]
        hold = proxy.hold(method, path, body)
        return lambda proc: hold.reached.is_set
    raise AssertionError(point)


CHAINS = {
    "holds-and-containers": (
        "observing (lock held, before the plan)",
        "answer held: POST /datasets/ (register)",
        "answer held: PUT report started",
        "container: prepare",
        "container: sanity_check",
        "container: statistics",
        "answer held: PUT set operational",
    ),
    "step-boundaries": (
        "step start: register",
        "step end: register",
        "step start: prepare",
        "step end: prepare",
        "step start: set_operational",
        "step end: set_operational",
    ),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_dataset_half_killed_at_every_point_then_converges(chain, trial_factory, registry, docker_client):
    require_images()
    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=16)
        killed = True
        previous = None
        for point in CHAINS[chain]:
            proc = trial.spawn("apply")
            last = point == CHAINS[chain][-1]
            # A step's start follows the previous step's end at once: the SIGKILL aimed at that end can land after
            # the next step (one PUT) is done, and then this run has nothing left to do before this point.
            adjacent = point.startswith("step start:") and (previous or "").startswith("step end:")
            previous = point
            killed = trial.kill_when(proc, _arm(point, trial, proxy, docker_client)(proc), point,
                                     may_finish=last or adjacent)
            if not killed:
                continue  # the run ended (converged) before this event could be caught
            KILLED.append(point)
            proxy.release_all()
            ORPHANS.append(reap_containers(docker_client, trial.root))
            _check_invariants(trial, point)
            assert trial.counts()["datasets"] <= 1
        _converged(trial, chain, took_over=None if CHAINS[chain][-1].startswith("step end") else killed)
        (ds,) = trial.srv_datasets()
        assert ds["state"] == "OPERATION" and ds["generated_metadata"]["num_cases"] == 16


def test_killed_while_hashing_a_large_folder(trial_factory, registry):
    """SIGKILL while the hasher reads the raw data; the resumed run registers MedPerf's exact hash."""
    from tests.runner.test_cli import independent_hash

    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=4, text=manifest_text(state="registered"))
        images = trial.root / "raw" / "images"
        for i in range(128):  # 128 MB: long enough to be caught reading it (it is polled every 10 ms)
            (images / f"big{i:04d}.png").write_bytes(os.urandom(1 << 20))
        proc = trial.spawn("apply")
        trial.kill_when(proc, _reading_under(trial.root / "raw", proc), "hashing the raw data", timeout=60)
        KILLED.append("inside hashing (raw data)")
        _check_invariants(trial, "hashing")
        assert trial.counts()["datasets"] == 0  # nothing was registered with a partial hash
        _converged(trial, "hashing")
        (ds,) = trial.srv_datasets()
        expected = independent_hash(images, trial.root / "raw" / "labels")
        assert ds["input_data_hash"] == expected == ds["generated_uid"]


# -- the participation half: one chain of kills, each resumed run killed at the next point ---------------------

@pytest.mark.slow
def test_participation_killed_at_every_point_then_converges(trial_factory, registry, docker_client):
    require_images()
    from tests.support.server import TESTBO

    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=16, text=manifest_text(benchmarks=True))

        def kill(label: str, condition) -> None:
            proc = trial.spawn("apply")
            trial.kill_when(proc, condition(proc), label)
            KILLED.append(label)
            proxy.release_all()
            ORPHANS.append(reap_containers(docker_client, trial.root))
            _check_invariants(trial, label)

        def held(method, path, body=None):
            h = proxy.hold(method, path, body)
            return lambda proc: h.reached.is_set

        def container(task):
            return lambda proc: lambda: bool(running_containers(docker_client, trial.root, task))

        kill("answer held: POST /results/ (reference model record)", held("POST", r"/api/v0/results/"))
        kill("container: infer (reference model, association test)", container("infer"))
        kill("container: evaluate (association test)", container("evaluate"))
        kill("answer held: POST /datasets/benchmarks/ (association request)",
             held("POST", r"/api/v0/datasets/benchmarks/"))
        r = trial.run("apply")
        assert r.code == 3 and no_traceback(r.out + r.err), r.out + r.err  # waits at the approval gate
        _check_invariants(trial, "gate")

        approve = subprocess.run(
            [*cli_command(), "association", "approve", "--benchmark", "chestxray", "--dataset", "mytestdata",
             "--server", trial.url, "--state-dir", str(trial.root / "bo-state")], env={**trial.env, "MEDPERF_TOKEN": trial.srv.tokens[TESTBO]},
            capture_output=True, text=True, timeout=60)
        assert approve.returncode == 0, approve.stdout + approve.stderr

        # the record first: a kill at the step's start may land after its POST (the event and the POST are ms apart)
        kill("answer held: POST /results/ (model record)", held("POST", r"/api/v0/results/"))
        kill("step start: run_model (after approval)", lambda proc: trial.event_seen("step_start", key="run_model"))
        kill("container: infer (model run)", container("infer"))
        kill("answer held: PUT /results/N/ (submission)", held("PUT", r"/api/v0/results/\d+/", rb'"partial"'))
        _converged(trial, "submission")
        with trial.db() as conn:
            rows = conn.execute("SELECT model, finalized FROM results ORDER BY model").fetchall()
        assert rows == [(1, 1), (2, 1)], rows  # one record per model, each submitted once


def test_the_next_run_removes_the_containers_a_killed_run_left(trial_factory, registry, docker_client):
    """SIGKILL cannot stop a task's container: the next run (holding the lock) removes it before its own tasks."""
    require_images()
    trial = trial_factory(None, cases=16)
    proc = trial.spawn("apply")
    trial.kill_when(proc, lambda: bool(running_containers(docker_client, trial.root, "sanity_check")),
                    "container: sanity_check (left behind)")
    KILLED.append("container: sanity_check (orphan left for the next run)")
    left = running_containers(docker_client, trial.root)
    assert left, "the killed run's container should still exist (running or exited, never removed)"
    ORPHANS.append(len(left))
    _converged(trial, "orphaned container")
    assert running_containers(docker_client, trial.root) == []


# -- a polite stop: Ctrl-C (SIGINT) or a service manager's SIGTERM inside a container task --------------------

@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_inside_a_container_stops_it_exits_130_and_resumes(sig, trial_factory, registry, docker_client):
    import signal
    import time

    require_images()
    trial = trial_factory(None, cases=16)
    proc = trial.spawn("apply")
    deadline = time.monotonic() + 120
    while not running_containers(docker_client, trial.root, "prepare"):
        assert proc.poll() is None and time.monotonic() < deadline, "prepare's container never ran"
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    r = trial.finish(proc, timeout=60)
    KILLED.append(f"{sig} inside container: prepare")
    assert r.code == 130, (r.code, r.out, r.err)
    assert no_traceback(r.out + r.err) and "run again" in r.err, r.err
    assert "Recap (interrupted)" in r.out, r.out
    assert [c for c in running_containers(docker_client, trial.root)] == []  # stopped and removed, not orphaned
    _check_invariants(trial, sig)
    from runner.journal import Journal

    assert [e.outcome for e in Journal(trial.state_dir / "journal.jsonl").entries()][-1] == "interrupted"
    (ds,) = trial.srv_datasets()
    assert ds["report"]["execution_status"] == "interrupted"  # MedPerf's status report for a stopped prepare
    _converged(trial, sig, took_over=False)  # released cleanly: nothing to take over


# -- chaos: random SIGKILLs while the registry is flaky -----------------------------------------------------

@pytest.mark.slow
def test_random_kills_on_a_flaky_registry_still_converge(trial_factory, registry, docker_client):
    """Seeded: each run is SIGKILLed once it has sent a random number of requests (or left alone), 20% of the
    requests fail; the tutorial still reaches the gate, then (approved) submitted results, with nothing twice.
    The kill points count the run's requests, not seconds: a slow machine meets the same points."""
    import random
    import time

    require_images()
    from tests.support.server import TESTBO

    rng = random.Random(7)
    faults = ("503_before", "500_after", "429", "reset_before", "reset_after", "slow")  # stalls: 30 s read timeouts
    with FaultProxy(registry.url, rate=0.2, seed=7, faults=faults) as proxy:
        trial = trial_factory(proxy, cases=16, text=manifest_text(benchmarks=True))
        approved = False
        for n in range(1, 16):
            sent_before = len(proxy.exchanges)
            proc = trial.spawn("apply")
            after = rng.randint(1, 40) if rng.random() < 0.6 else None  # the run's n-th request, or never
            deadline = time.monotonic() + 240  # a guard against a hang, not a kill point
            while proc.poll() is None and (after is None or len(proxy.exchanges) - sent_before < after):
                assert time.monotonic() < deadline, f"chaos run {n} hung"
                time.sleep(0.01)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
                KILLED.append(f"chaos: at request {after} of run {n}")
                ORPHANS.append(len(running_containers(docker_client, trial.root)))
                _check_invariants(trial, f"chaos run {n}")
                continue
            r = trial.finish(proc)
            assert no_traceback(r.out + r.err), r.out + r.err
            assert r.code in (0, 1, 3), r.out + r.err
            _check_invariants(trial, f"chaos run {n}")
            if r.code == 3 and not approved:
                ds_id = trial.srv_datasets()[0]["id"]
                resp = requests.put(f"{registry.api}/datasets/{ds_id}/benchmarks/1/",
                                    json={"approval_status": "APPROVED"}, headers=registry.headers(TESTBO), timeout=10)
                assert resp.status_code == 200, resp.text
                approved = True
            elif r.code == 0 and approved:
                break
        else:
            pytest.fail("the chaos run did not converge in 15 runs")
        with trial.db() as conn:
            rows = conn.execute("SELECT model, finalized FROM results ORDER BY model").fetchall()
        assert rows == [(1, 1), (2, 1)] and trial.duplicates() == []
        CHAOS.append(f"{n} runs, {sum(proxy.injected.values())} faults {dict(proxy.injected)}")
