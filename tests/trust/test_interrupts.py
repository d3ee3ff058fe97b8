"""SIGINT and SIGTERM take one path at every moment of a real apply (the real registry, the real Docker engine):
the running container is stopped and removed, nothing is sent after the signal but the status report that marks the
stopped task `interrupted`, no result is submitted, the recap says what was done, exit 130; the next run resumes."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime

import pytest
import requests

from tests.support.server import TESTBO
from tests.trust.conftest import manifest_text, no_traceback, require_images, running_containers
from tests.trust.test_crash_resume import _check_invariants

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _sent_after(trial, when: datetime) -> list[dict]:
    """The bodies the run recorded in its ledger (written before each send) after `when`."""
    path = trial.state_dir / "ledger.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [e for e in entries if datetime.fromisoformat(e["time"].replace("Z", "+00:00")) > when]


def _only_interrupted_reports(entries: list[dict]) -> bool:
    for e in entries:
        (key, value), = e["body"].items()
        if e["method"] != "PUT" or value.get("execution_status") != "interrupted":
            return False
    return True


def _signal_when(proc, reached, what: str, sig: str, timeout: float = 180) -> datetime:
    deadline = time.monotonic() + timeout
    while not reached():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        time.sleep(0.01)
    when = datetime.now(UTC)
    proc.send_signal(getattr(signal, sig))
    return when


def _interrupted(trial, proc, when: datetime, what: str, docker_client):
    r = trial.finish(proc, timeout=90)
    assert r.code == 130, (what, r.code, r.out, r.err)
    assert no_traceback(r.out + r.err), r.err
    assert "Recap (interrupted)" in r.out and "run again" in r.err, (r.out, r.err)
    assert "failed" not in [line.split()[0] for line in r.out.splitlines() if line.split()], r.out
    after = _sent_after(trial, when)
    assert _only_interrupted_reports(after), f"sent after the signal at {what}: {after}"
    assert running_containers(docker_client, trial.root) == [], "a task container was left behind"
    _check_invariants(trial, what)
    return r, after


def _submitted(trial) -> int:
    with trial.db() as conn:
        return conn.execute("SELECT count(*) FROM results WHERE finalized = 1").fetchone()[0]


def _approve(trial, registry) -> None:
    ds_id = trial.srv_datasets()[0]["id"]
    resp = requests.put(f"{registry.api}/datasets/{ds_id}/benchmarks/1/", json={"approval_status": "APPROVED"},
                        headers=registry.headers(TESTBO), timeout=10)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_interrupted_during_the_compatibility_test_sends_no_association_request(sig, trial_factory, registry,
                                                                                docker_client):
    require_images()
    trial = trial_factory(None, cases=16, text=manifest_text(benchmarks=True))
    proc = trial.spawn("apply")
    when = _signal_when(proc, lambda: running_containers(docker_client, trial.root, "infer"),
                        "the reference model's infer", sig)
    _, after = _interrupted(trial, proc, when, "compatibility test", docker_client)
    assert [e["body"] for e in after] == [{"model_report": {"execution_status": "interrupted"}}]
    with trial.db() as conn:
        assert conn.execute("SELECT count(*) FROM benchmark_datasets").fetchone()[0] == 0
    r = trial.run("apply")
    assert r.code == 3, r.out + r.err  # resumed: the test ran again and the request waits for approval
    _check_invariants(trial, "after the compatibility test's interrupt")


@pytest.mark.parametrize(("task", "sig"), [("infer", "SIGINT"), ("evaluate", "SIGTERM")])
def test_interrupted_during_a_model_run_is_not_a_failure_and_nothing_is_submitted(task, sig, trial_factory, registry,
                                                                                  docker_client):
    require_images()
    trial = trial_factory(None, cases=16, text=manifest_text(benchmarks=True))
    assert trial.run("apply").code == 3
    _approve(trial, registry)
    submitted = _submitted(trial)
    proc = trial.spawn("apply")
    when = _signal_when(proc, lambda: running_containers(docker_client, trial.root, task), f"model 2's {task}", sig)
    r, after = _interrupted(trial, proc, when, f"model run: {task}", docker_client)
    assert _submitted(trial) == submitted == 0, "a result was submitted after the interrupt"
    which = "model_report" if task == "infer" else "evaluation_report"
    assert [e["body"] for e in after] == [{which: {"execution_status": "interrupted"}}]
    r = trial.run("apply")
    assert r.code == 0, r.out + r.err
    assert _submitted(trial) == 2
    _check_invariants(trial, f"after the {task} interrupt")


def test_interrupted_while_waiting_for_approval_sends_nothing(trial_factory, registry, docker_client):
    require_images()
    trial = trial_factory(None, cases=16, text=manifest_text(benchmarks=True))
    assert trial.run("apply").code == 3
    proc = trial.spawn("apply", "--wait", "--timeout", "10m")
    out = trial.root / f"run{trial.runs}.out"
    when = _signal_when(proc, lambda: "waiting for the benchmark owner" in out.read_text(), "the approval wait",
                        "SIGINT")
    _, after = _interrupted(trial, proc, when, "approval wait", docker_client)
    assert after == []
