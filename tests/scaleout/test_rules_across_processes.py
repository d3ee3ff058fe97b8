"""Data owners and benchmark owners racing through nginx to three registry processes on one PostgreSQL: every rule
holds across processes, nothing is duplicated (the database is queried directly afterwards), and a race is always
served by more than one process (nginx round-robins over two upstreams; X-Medperf-Worker names the pid)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from server.rules import MSG_DUPLICATE_UID, MSG_FINALIZED, MSG_NOT_PENDING, MSG_ONLY_IF_REJECTED
from server.seed import TESTBO, TESTDO, TESTDO2, TESTMO
from server.wsgi import WORKER_HEADER

AT_ONCE = 16  # concurrent requests per race (the bench's client count)
TIMEOUT_S = 60


def refusal(message: str) -> dict:
    return {"non_field_errors": [message]}


class Caller:
    def __init__(self, deployment, token: str):
        self.api, self.headers = deployment.api, {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body=None) -> requests.Response:
        # a connection per request: every request of a race is its own client, as distinct sites are
        return requests.request(method, self.api + path, json=body, headers=self.headers, timeout=TIMEOUT_S)

    def ok(self, method: str, path: str, body=None, status: int = 200) -> dict:
        r = self.call(method, path, body)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


def race(calls) -> list[requests.Response]:
    """Run the zero-argument `calls` at the same moment (a barrier), one thread each; their responses in order."""
    start = threading.Barrier(len(calls))

    def run(call):
        start.wait(timeout=TIMEOUT_S)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        responses = list(pool.map(run, calls))
    served_by = {r.headers.get(WORKER_HEADER) for r in responses}
    assert len(served_by - {None}) >= 2, f"one process served the whole race: {served_by}"
    return responses


def statuses(responses) -> Counter:
    return Counter(r.status_code for r in responses)


@pytest.fixture(scope="module")
def db(deployment):
    with psycopg.connect(deployment.db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="module")
def do(deployment):
    return Caller(deployment, deployment.tokens[TESTDO])


@pytest.fixture(scope="module")
def do2(deployment):
    return Caller(deployment, deployment.tokens[TESTDO2])


@pytest.fixture(scope="module")
def bo(deployment):
    return Caller(deployment, deployment.tokens[TESTBO])


def new_dataset(owner: Caller, *, operational: bool) -> dict:
    uid = uuid.uuid4().hex
    ds = owner.ok("POST", "/datasets/", {"name": uid[:20], "input_data_hash": uid, "generated_uid": uid,
                                         "split_seed": 0, "data_preparation_mlcube": 1,
                                         "submitted_as_prepared": False}, 201)
    if operational:
        ds = owner.ok("PUT", f"/datasets/{ds['id']}/", {"generated_uid": "prep-" + uid, "state": "OPERATION"})
    return ds


def request_association(owner: Caller, dataset_id: int) -> dict:
    return owner.ok("POST", "/datasets/benchmarks/", {"dataset": dataset_id, "benchmark": 1, "metadata": {}}, 201)


def test_the_same_association_request_posted_at_once_makes_one_row(do, db):
    ds = new_dataset(do, operational=True)
    body = {"dataset": ds["id"], "benchmark": 1, "metadata": {}}
    responses = race([lambda: do.call("POST", "/datasets/benchmarks/", body)] * AT_ONCE)
    assert statuses(responses) == {201: 1, 400: AT_ONCE - 1}
    assert all(r.json() == refusal(MSG_ONLY_IF_REJECTED) for r in responses if r.status_code == 400)
    rows = db.execute("SELECT id, approval_status FROM benchmark_datasets WHERE dataset = %s", (ds["id"],)).fetchall()
    created = next(r.json() for r in responses if r.status_code == 201)
    assert rows == [{"id": created["id"], "approval_status": "PENDING"}]


def test_approvals_racing_decide_once(do, bo, db):
    ds = new_dataset(do, operational=True)
    request_association(do, ds["id"])
    path = f"/datasets/{ds['id']}/benchmarks/1/"
    decisions = ["APPROVED", "REJECTED"] * (AT_ONCE // 2)
    responses = race([lambda d=d: bo.call("PUT", path, {"approval_status": d}) for d in decisions])
    assert statuses(responses) == {200: 1, 400: AT_ONCE - 1}
    assert all(r.json() == refusal(MSG_NOT_PENDING) for r in responses if r.status_code == 400)
    winner = next(d for d, r in zip(decisions, responses, strict=True) if r.status_code == 200)
    rows = db.execute("SELECT approval_status, approved_at FROM benchmark_datasets WHERE dataset = %s",
                      (ds["id"],)).fetchall()
    assert [r["approval_status"] for r in rows] == [winner] and rows[0]["approved_at"] is not None


def test_one_dataset_set_operational_at_once_by_many_requests(do, db):
    ds = new_dataset(do, operational=False)
    uid = "prep-" + uuid.uuid4().hex
    body = {"generated_uid": uid, "state": "OPERATION"}
    responses = race([lambda: do.call("PUT", f"/datasets/{ds['id']}/", body)] * AT_ONCE)
    assert statuses(responses) == {200: AT_ONCE}  # the same change again is no change: MedPerf answers 200
    assert {(r.json()["state"], r.json()["generated_uid"]) for r in responses} == {("OPERATION", uid)}
    rows = db.execute("SELECT id, state FROM datasets WHERE generated_uid = %s", (uid,)).fetchall()
    assert rows == [{"id": ds["id"], "state": "OPERATION"}]


def test_datasets_racing_to_one_generated_uid_leave_one_operational(do, do2, db):
    owners = [do, do2] * (AT_ONCE // 4)
    datasets = [new_dataset(owner, operational=False) for owner in owners]
    uid = "prep-" + uuid.uuid4().hex
    body = {"generated_uid": uid, "state": "OPERATION"}
    responses = race([lambda o=o, d=d: o.call("PUT", f"/datasets/{d['id']}/", body)
                      for o, d in zip(owners, datasets, strict=True)])
    assert statuses(responses) == {200: 1, 400: len(datasets) - 1}
    assert all(r.json() == refusal(MSG_DUPLICATE_UID) for r in responses if r.status_code == 400)
    winner = next(d["id"] for d, r in zip(datasets, responses, strict=True) if r.status_code == 200)
    ids = [d["id"] for d in datasets]
    states = db.execute("SELECT id, state FROM datasets WHERE id = ANY(%s)", (ids,)).fetchall()
    assert {r["id"]: r["state"] for r in states} == {i: "OPERATION" if i == winner else "DEVELOPMENT" for i in ids}


def test_a_result_is_finalized_once(do, db):
    ds = new_dataset(do, operational=True)
    result = do.ok("POST", "/results/", {"name": "r", "benchmark": 1, "model": 1, "dataset": ds["id"]}, 201)
    bodies = [{"results": {"AUC": i / AT_ONCE}} for i in range(AT_ONCE)]
    responses = race([lambda b=b: do.call("PUT", f"/results/{result['id']}/", b) for b in bodies])
    assert statuses(responses) == {200: 1, 400: AT_ONCE - 1}
    assert all(r.json() == refusal(MSG_FINALIZED) for r in responses if r.status_code == 400)
    winner = next(r.json() for r in responses if r.status_code == 200)
    row = db.execute("SELECT results, finalized, finalized_at FROM results WHERE id = %s", (result["id"],)).fetchone()
    assert (row["finalized"], row["finalized_at"]) == (1, winner["finalized_at"])
    assert json.loads(row["results"]) == winner["results"]


def test_identical_results_posted_at_once_are_each_one_row(do, bo, db):
    """MedPerf keeps every execution record (a re-run is a new result), so 16 POSTs are 16 rows: each once."""
    ds = new_dataset(do, operational=True)
    request_association(do, ds["id"])
    bo.ok("PUT", f"/datasets/{ds['id']}/benchmarks/1/", {"approval_status": "APPROVED"})
    body = {"name": "same", "benchmark": 1, "model": 2, "dataset": ds["id"]}
    responses = race([lambda: do.call("POST", "/results/", body)] * AT_ONCE)
    assert statuses(responses) == {201: AT_ONCE}
    rows = db.execute("SELECT id FROM results WHERE dataset = %s ORDER BY id", (ds["id"],)).fetchall()
    assert [r["id"] for r in rows] == sorted(r.json()["id"] for r in responses)


def test_the_same_container_posted_at_once_is_registered_once(deployment, db):
    mo = Caller(deployment, deployment.tokens[TESTMO])
    config = mo.ok("GET", "/mlcubes/1/")["container_config"]
    name = "c-" + uuid.uuid4().hex[:12]
    body = {"name": name, "container_config": config, "image_hash": "sha256:" + uuid.uuid4().hex * 2}
    responses = race([lambda: mo.call("POST", "/mlcubes/", body)] * AT_ONCE)
    assert statuses(responses) == {201: 1, 400: AT_ONCE - 1}
    assert all(r.json() == {"name": ["mlcube with this name already exists."]}
               for r in responses if r.status_code == 400)
    assert db.execute("SELECT count(*) AS n FROM mlcubes WHERE name = %s", (name,)).fetchone()["n"] == 1


def test_first_requests_of_a_new_sign_in_create_one_user(deployment, db):
    sub, email = f"oidc|{uuid.uuid4().hex}", f"{uuid.uuid4().hex[:8]}@hospital.example"
    claims = {"sub": sub, "https://medperf.org/email": email, "exp": int(time.time()) + 600}
    caller = Caller(deployment, jwt.encode(claims, deployment.jwt_key, algorithm="RS256"))
    responses = race([lambda: caller.call("GET", "/me/")] * AT_ONCE)
    assert statuses(responses) == {200: AT_ONCE}
    rows = db.execute("SELECT id FROM users WHERE username = %s OR email = %s", (sub, email)).fetchall()
    assert len(rows) == 1 and {r.json()["id"] for r in responses} == {rows[0]["id"]}


def test_a_writer_that_skips_the_lock_is_stopped_by_the_index_with_a_400(do, db, deployment):
    """The rules are checked under the database's write lock; the unique index holds one of them (one open request
    per pair) even for a writer that does not take it (here a raw transaction): the API answers the rule's 400."""
    ds = new_dataset(do, operational=True)
    with psycopg.connect(deployment.db_url, row_factory=dict_row) as raw:  # one transaction, not committed yet
        next_id = raw.execute("UPDATE id_counters SET value = value + 1 WHERE name = 'benchmark_datasets' "
                              "RETURNING value").fetchone()["value"]
        raw.execute("INSERT INTO benchmark_datasets (id, dataset, benchmark, initiated_by, approval_status, created_at,"
                    " modified_at) VALUES (%s, %s, 1, %s, 'PENDING', 'now', 'now')",
                    (next_id, ds["id"], ds["owner"]))
        posted: dict = {}
        thread = threading.Thread(target=lambda: posted.update(
            r=do.call("POST", "/datasets/benchmarks/", {"dataset": ds["id"], "benchmark": 1, "metadata": {}})))
        thread.start()
        deadline = time.monotonic() + TIMEOUT_S
        # the API's insert waits on the raw transaction's locks: its rule check (no request yet) has passed
        while not db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'").fetchone():
            assert thread.is_alive() and time.monotonic() < deadline, posted
            time.sleep(0.02)
        raw.commit()
        thread.join(TIMEOUT_S)
    assert posted["r"].status_code == 400 and posted["r"].json() == refusal(MSG_ONLY_IF_REJECTED)
    assert db.execute("SELECT count(*) AS n FROM benchmark_datasets WHERE dataset = %s",
                      (ds["id"],)).fetchone()["n"] == 1


def _workers_answering(port: int, tries: int = AT_ONCE) -> set[str]:
    url = f"http://127.0.0.1:{port}/api/v0/benchmarks/1/"

    def one(_):
        return requests.get(url, timeout=TIMEOUT_S).headers[WORKER_HEADER]  # a new connection each

    with ThreadPoolExecutor(tries) as pool:
        return set(pool.map(one, range(tries)))


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_prefork_workers_share_one_port_and_a_dead_worker_is_replaced(deployment):
    prefork = deployment.backends[0]
    workers = _workers_answering(prefork.port)
    assert len(workers) == 2 and {_parent(int(w)) for w in workers} == {prefork.pid}
    victim = int(min(workers))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # the supervisor starts another; until then the survivor serves every new connection
        try:
            now = _workers_answering(prefork.port)
        except requests.ConnectionError:  # one queued on the killed worker's socket when it died: reset
            now = set()
        if len(now) == 2 and str(victim) not in now:
            break
        assert time.monotonic() < deadline, f"no worker replaced {victim}: {now}"
        time.sleep(0.1)
    assert f"worker {victim} ended (killed by SIGKILL); starting another" in prefork.log.read_text()


def test_nginx_spread_the_module_over_every_process(deployment):
    """Last: the access log (upstream and worker per request) shows all three processes served the races."""
    lines = deployment.lb.access_log.read_text().splitlines()
    upstreams = Counter(line.split()[-3] for line in lines)
    assert set(upstreams) == {b.address for b in deployment.backends}
    workers = {line.split()[-2] for line in lines}
    assert len(workers) >= 2 and "worker=-" not in workers, workers
