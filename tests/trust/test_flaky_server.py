"""A flaky registry (retries): the fault proxy breaks a share of the API requests (5xx before and
after the server acted, 429, resets before and after, stalls past the read timeout, slow answers); apply
converges with bounded retries and creates nothing twice. A registry that stays down: exit 1, one clear
message after the bounded retries, no traceback.
"""

from __future__ import annotations

import io
import os
from collections import Counter

import pytest
import requests

from runner.cli import main
from tests.support.clients import Pauses, real_clients_pausing
from tests.support.proxy import FAULTS, FaultProxy
from tests.trust.conftest import manifest_text, no_traceback, require_images

# TRUST_SEEDS=1,2,3 runs the whole tutorial through the flaky proxy once per seed (CI: two seeds).
SEEDS = [int(s) for s in os.environ.get("TRUST_SEEDS", "3,11").split(",") if s.strip()]
INJECTED: Counter = Counter()
RUNS: list[int] = []


def short_timeouts(env, pauses=None):
    """The CLI's real clients with a read timeout under the proxy's stall (1.5 s); the back-off between retries
    is the real policy's, recorded in `pauses` instead of slept."""
    return real_clients_pausing(env, Pauses() if pauses is None else pauses, timeout=(2.0, 1.0))


def within_policy(pauses, attempts: int = 5, base: float = 0.5, cap: float = 10.0) -> bool:
    """Each failed request's pauses are the real client's: capped, jittered doubling (between half the ceiling and
    the ceiling) before attempts 2..N."""
    ceilings = [min(cap, base * 2 ** (k - 1)) for k in range(1, attempts)]
    return all(any(c / 2 <= p <= c for c in ceilings) for p in pauses)


def apply_until(trial, wanted: int, runs: int = 6) -> int:
    """Apply (in-process, real clients) until the exit code is `wanted`; return the number of runs."""
    outputs = []
    for n in range(1, runs + 1):
        r = trial.run_inprocess("apply", clients=short_timeouts(trial.env))
        assert no_traceback(r.out + r.err), r.out + r.err
        assert r.code in (wanted, 1), r.out + r.err
        outputs.append(r.err[-600:])
        if r.code == wanted:
            return n
    pytest.fail(f"no convergence to exit {wanted} in {runs} runs:\n" + "\n---\n".join(outputs))


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_tutorial_converges_through_a_flaky_proxy_without_duplicates(seed, trial_factory, registry, docker_client):
    require_images()
    from tests.support.server import TESTBO

    with FaultProxy(registry.url, rate=0.3, seed=seed, stall=1.5, slow=0.2) as proxy:
        trial = trial_factory(proxy, cases=16, text=manifest_text(benchmarks=True))
        first = apply_until(trial, 3)  # up to the approval gate
        assert trial.duplicates() == []
        r = requests.put(f"{registry.api}/datasets/{trial.srv_datasets()[0]['id']}/benchmarks/1/",
                         json={"approval_status": "APPROVED"}, headers=registry.headers(TESTBO), timeout=10)
        assert r.status_code == 200, r.text
        second = apply_until(trial, 0)
        RUNS.extend([first, second])
        INJECTED.update(proxy.injected)
        assert sum(proxy.injected.values()) >= 5, proxy.injected  # the faults really happened
        assert trial.duplicates() == [] and trial.half_written() == []
        with trial.db() as conn:
            rows = conn.execute("SELECT model, finalized FROM results ORDER BY model").fetchall()
            (state,) = conn.execute("SELECT state FROM datasets").fetchone()
        assert rows == [(1, 1), (2, 1)] and state == "OPERATION"
        # every body the server received went through the ledger first
        sent = [e for e in proxy.exchanges if e.method in ("POST", "PUT") and e.forwarded]
        assert len(trial.ledger_bodies()) >= len({(e.method, e.path, e.body) for e in sent})


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("registry", ["postgresql"], indirect=True)
def test_tutorial_through_a_flaky_proxy_on_postgresql(registry, trial_factory, docker_client):
    """The same, in front of a PostgreSQL-backed registry (its write lock meets retried, overlapping writes)."""
    test_tutorial_converges_through_a_flaky_proxy_without_duplicates(SEEDS[0], trial_factory, registry, docker_client)


@pytest.mark.parametrize("methods", [("GET",), ("POST", "PUT")], ids=["reads", "writes"])
def test_every_fault_kind_alone_is_retried_then_converges(methods, trial_factory, registry):
    """Registration only (no container): each fault kind hits the first two reads (or writes) of a run."""
    for kind in FAULTS:
        with FaultProxy(registry.url, rate=1.0, faults=(kind,), stall=1.5, slow=0.2, max_faults=2,
                        methods=methods) as proxy:
            text = manifest_text(state="registered").replace("name: mytestdata", f"name: ds-{kind}")
            trial = trial_factory(proxy, cases=3, text=text, name=f"w-{kind}")
            apply_until(trial, 0)
            INJECTED.update({f"{k} ({'/'.join(methods)})": n for k, n in proxy.injected.items()})
            assert proxy.injected[kind] >= 1, kind
        assert trial.duplicates() == [], kind
    with trial.db() as conn:
        assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == len(FAULTS)  # one each


def test_a_server_that_stays_down_fails_clearly_after_bounded_retries(trial_factory, registry):
    """The real CLI, its real clients and retry policy: every answer is 503 (the pauses are recorded, not slept)."""
    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3)
        proxy.down = True
        pauses = Pauses()
        r = trial.run_inprocess("apply", clients=real_clients_pausing(trial.env, pauses))
        assert r.code == 1, r.out + r.err
        assert no_traceback(r.out + r.err)
        assert "failed 5 times" in r.err and "HTTP 503" in r.err, r.err
        assert "check that the server is running" in r.err
        per_path = Counter(e.path.split("?")[0] for e in proxy.exchanges)
        assert max(per_path.values()) == 5, per_path  # bounded: 5 attempts, not more
        # four pauses before the four retries of each request, as the policy grows them, and no other wait
        assert len(pauses) == 4 * len(per_path) and within_policy(pauses), pauses
        assert trial.ledger_bodies() == [] and trial.counts()["datasets"] == 0
        INJECTED["down (503 every time)"] += len(proxy.exchanges)


def test_nothing_listens_fails_clearly(trial_factory, registry):
    from tests.infra.fault_server import free_port

    trial = trial_factory(None, cases=3)
    trial.env["MEDPERF_SERVER"] = f"http://127.0.0.1:{free_port()}"
    pauses = Pauses()
    r = trial.run_inprocess("plan", clients=real_clients_pausing(trial.env, pauses))
    assert r.code == 1 and no_traceback(r.out + r.err)
    assert "cannot connect" in r.err and "check that the server is running" in r.err, r.err
    # each request the plan sent (two at once) retried with the real back-off, four pauses each, then given up
    assert pauses and len(pauses) % 4 == 0 and within_policy(pauses), pauses


def test_every_command_facing_a_down_server_fails_clearly(trial_factory, registry):
    """plan, apply, status, results and association approve: exit 1 after the bounded retries, no traceback."""
    from tests.support.server import TESTBO

    with FaultProxy(registry.url) as proxy:
        trial = trial_factory(proxy, cases=3, text=manifest_text(benchmarks=True))
        proxy.down = True
        for command in ("plan", "apply", "status", "results"):
            r = trial.run_inprocess(command, clients=short_timeouts(trial.env))
            assert r.code == 1 and no_traceback(r.out + r.err), (command, r.out, r.err)
            assert "HTTP 503" in r.err and "failed 5 times" in r.err, (command, r.err)
        err = io.StringIO()
        code = main(["association", "approve", "--benchmark", "chestxray", "--dataset", "mytestdata", "--server",
                     trial.url, "--state-dir", str(trial.root / "bo")], stdout=io.StringIO(), stderr=err,
                    stdin=io.StringIO(""), environ={**trial.env, "MEDPERF_TOKEN": registry.tokens[TESTBO]},
                    clients=short_timeouts(trial.env))
        assert code == 1 and no_traceback(err.getvalue()) and "503" in err.getvalue(), err.getvalue()
        INJECTED["down (503 every time)"] += len(proxy.exchanges)
