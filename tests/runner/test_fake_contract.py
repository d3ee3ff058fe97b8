"""The fake registry answers as the real server does: one table of requests, the data owner's workflow and the
refusals around it, run against FakeApi and against the real server (on loopback, through the real ApiClient).

Each row says who sends what and the answer both must give: a status, and for a success the fields that
matter; for a refusal the error body itself. A fake that lets through what the server refuses, or answers
another status, fails here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from runner.apply.execution import result_body
from runner.clients.api import ApiClient
from runner.errors import ServerError
from server import rules
from server.errors import NotFound
from tests.runner.fakes import BENCHMARK_OWNER, DATA_OWNER_2, FakeApi, model_record
from tests.support.server import TESTBO, TESTDO, TESTDO2, TESTMO, live_server

DO, DO2, BO = "data owner", "second data owner", "benchmark owner"
RAW, PREPARED = "a" * 64, "b" * 64
METRICS = {"Accuracy": 0.75, "AUC": 0.8125}


class FakeBackend:
    """FakeApi, one view per actor, and a model whose association the benchmark owner has not approved."""

    def __init__(self):
        self.registry = FakeApi()
        self.apis = {DO: self.registry, DO2: self.registry.as_user(DATA_OWNER_2), BO: self.registry.as_user(
            BENCHMARK_OWNER)}

    def pending_model(self) -> int:
        mid = max(self.registry.world["models"]) + 1
        self.registry.world["models"][mid] = model_record(mid, "unapproved", 90 + mid, "medperf-apply/x:latest")
        self.registry.world["model_assocs"].append({"model": mid, "benchmark": 1, "approval_status": "PENDING",
                                                    "priority": 0, "created_at": "2026-11-24T00:00:00Z"})
        return mid

    def close(self):
        pass


class ServerBackend:
    """The seeded real server on a loopback port, one real ApiClient per actor."""

    def __init__(self):
        self._server = live_server()
        self.srv = self._server.__enter__()
        self.apis = {who: ApiClient(self.srv.url, self.srv.tokens[email])
                     for who, email in ((DO, TESTDO), (DO2, TESTDO2), (BO, TESTBO))}

    def pending_model(self) -> int:
        """As the model owner: a model and its association request, which nobody approves."""
        with ApiClient(self.srv.url, self.srv.tokens[TESTMO]) as mo:
            reference = mo.get("models/1/")["container"]
            container = {k: reference[k] for k in ("container_config", "image_hash", "additional_files_tarball_url",
                                                   "additional_files_tarball_hash")}
            container["parameters_config"] = {"variant": "unapproved"}  # the server wants a distinct container
            model = mo.create("models/", {"name": "unapproved", "type": "CONTAINER", "state": "OPERATION",
                                          "container": {**container, "name": "unapproved", "state": "OPERATION"}})
            mo.create("models/benchmarks/", {"model": model["id"], "benchmark": 1, "approval_status": "PENDING",
                                             "metadata": {}})
        return model["id"]

    def close(self):
        for api in self.apis.values():
            api.close()
        self._server.__exit__(None, None, None)


@dataclass(frozen=True)
class Row:
    """One request and the answer it must get: `status`, and `check(answer)` for a success, `error` (a rule's
    message in the body) for a refusal."""

    what: str
    who: str
    method: str
    path: Callable[[dict], str]
    body: Callable[[dict], Any] | None
    status: int
    check: Callable[[Any, dict], None] | None = None
    error: str | None = None
    keep: str | None = None  # remember the answer's id under this name


def _register(ids):
    return {"name": "contract", "description": "", "location": "here", "input_data_hash": RAW, "generated_uid": RAW,
            "data_preparation_mlcube": ids["prep"], "split_seed": 0, "submitted_as_prepared": False,
            "for_test": False, "generated_metadata": {}, "user_metadata": {}}


def _association(ids):
    return {"dataset": ids["dataset"], "benchmark": 1, "approval_status": "PENDING",
            "metadata": {"test_result": METRICS}}


def _result(model: str):
    return lambda ids: result_body(f"b1m{ids[model]}d{ids['dataset']}", 1, ids[model], ids["dataset"])


def _assoc_path(dataset: str = "dataset"):
    return lambda ids: f"datasets/{ids[dataset]}/benchmarks/1/"


def _statuses(*expected):
    def check(answer, ids):
        assert [r["approval_status"] for r in answer] == list(expected), answer
    return check


def _field(**expected):
    def check(answer, ids):
        assert {k: answer[k] for k in expected} == expected, answer
    return check


def _revocation(ids):
    return {"dataset": ids["dataset"], "benchmark": 1, "approval_status": "REJECTED", "metadata": {}}


def _ids_are(rows, expected):
    assert sorted(r["id"] for r in rows) == expected, rows


ROWS = [
    Row("register", DO, "POST", lambda ids: "datasets/", _register, 201, _field(state="DEVELOPMENT"), keep="dataset"),
    Row("no association yet: an empty history", DO, "GET", _assoc_path(), None, 200, _statuses()),
    Row("association of a dataset that does not exist", DO, "GET", _assoc_path("missing"), None, 404),
    Row("approve a request nobody made", BO, "PUT", _assoc_path(), lambda ids: {"approval_status": "APPROVED"}, 404),
    Row("request before the dataset is operational", DO, "POST", lambda ids: "datasets/benchmarks/", _association,
        400, error=rules.MSG_DATASET_NOT_OPERATIONAL),
    Row("set operational", DO, "PUT", lambda ids: f"datasets/{ids['dataset']}/",
        lambda ids: {"state": "OPERATION", "generated_uid": PREPARED, "generated_metadata": {"num_cases": 3}}, 200,
        _field(state="OPERATION", generated_uid=PREPARED)),
    Row("a locked field of an operational dataset", DO, "PUT", lambda ids: f"datasets/{ids['dataset']}/",
        lambda ids: {"generated_uid": RAW}, 400, error=rules.MSG_OPERATION_LOCKED),
    Row("another data owner's dataset", DO2, "PUT", lambda ids: f"datasets/{ids['dataset']}/",
        lambda ids: {"user_metadata": {"x": 1}}, 403),
    Row("the models list before approval", DO, "LIST", lambda ids: "benchmarks/1/models/", None, 403),
    Row("a model's result before approval", DO, "POST", lambda ids: "results/", _result("model2"), 400,
        error=rules.MSG_DATASET_ASSOC),
    Row("the reference model's result (the compatibility test)", DO, "POST", lambda ids: "results/",
        _result("reference"), 201, _field(finalized=False), keep="reference_result"),
    Row("a result for someone else's dataset", DO2, "POST", lambda ids: "results/", _result("reference"), 403),
    Row("request the association", DO, "POST", lambda ids: "datasets/benchmarks/", _association, 201,
        _field(approval_status="PENDING")),
    Row("request it twice", DO, "POST", lambda ids: "datasets/benchmarks/", _association, 400,
        error=rules.MSG_ONLY_IF_REJECTED),
    Row("the data owner approves their own request", DO, "PUT", _assoc_path(),
        lambda ids: {"approval_status": "APPROVED"}, 400, error=rules.MSG_SELF_APPROVE),
    Row("a stranger approves it", DO2, "PUT", _assoc_path(), lambda ids: {"approval_status": "APPROVED"}, 403),
    Row("set it back to pending", BO, "PUT", _assoc_path(), lambda ids: {"approval_status": "PENDING"}, 400,
        error=rules.MSG_SET_PENDING),
    Row("the benchmark owner approves", BO, "PUT", _assoc_path(), lambda ids: {"approval_status": "APPROVED"}, 200,
        _field(approval_status="APPROVED")),
    Row("decide again", BO, "PUT", _assoc_path(), lambda ids: {"approval_status": "REJECTED"}, 400,
        error=rules.MSG_NOT_PENDING),
    Row("the history: one row, approved", DO, "GET", _assoc_path(), None, 200, _statuses("APPROVED")),
    Row("a stranger reads the history", DO2, "GET", _assoc_path(), None, 403),
    Row("the models list once approved", DO, "LIST", lambda ids: "benchmarks/1/models/", None, 200,
        lambda answer, ids: _has_models(answer, ids)),
    Row("a model whose own association is pending", DO, "POST", lambda ids: "results/", _result("pending_model"),
        400, error=rules.MSG_MODEL_ASSOC),
    Row("an approved model's result", DO, "POST", lambda ids: "results/", _result("model2"), 201,
        _field(finalized=False), keep="result"),
    Row("submit it", DO, "PUT", lambda ids: f"results/{ids['result']}/",
        lambda ids: {"results": METRICS, "metadata": {"partial": False}}, 200, _field(finalized=True)),
    Row("submit it again", DO, "PUT", lambda ids: f"results/{ids['result']}/",
        lambda ids: {"results": METRICS, "metadata": {"partial": False}}, 400, error=rules.MSG_FINALIZED),
    Row("read it back", DO, "GET", lambda ids: f"results/{ids['result']}/", None, 200,
        _field(finalized=True, results=METRICS)),
    Row("someone else's result", DO2, "GET", lambda ids: f"results/{ids['result']}/", None, 403),
    Row("a result that does not exist", DO, "GET", lambda ids: "results/987654/", None, 403),
    Row("the benchmark owner sees the dataset's result", BO, "GET", lambda ids: f"results/{ids['result']}/", None,
        200, _field(finalized=True)),
    # the benchmark owner's side: their benchmarks, who asked, and revoking an approval (a new REJECTED row)
    Row("who am I", DO, "GET", lambda ids: "me/", None, 200, _field(email=TESTDO), keep="do_user"),
    Row("my benchmarks", BO, "LIST", lambda ids: "me/benchmarks/", None, 200,
        lambda answer, ids: _ids_are(answer, [1])),
    Row("a data owner owns no benchmark", DO, "LIST", lambda ids: "me/benchmarks/", None, 200,
        lambda answer, ids: _ids_are(answer, [])),
    Row("the benchmark owner sees who asked (their preparation container)", BO, "GET",
        lambda ids: f"users/{ids['do_user']}/", None, 200, _field(email=TESTDO)),
    Row("a stranger does not", DO2, "GET", lambda ids: f"users/{ids['do_user']}/", None, 403),
    Row("a stranger revokes it", DO2, "POST", lambda ids: "datasets/benchmarks/", _revocation, 403),
    Row("the benchmark owner revokes the approval", BO, "POST", lambda ids: "datasets/benchmarks/", _revocation,
        201, _field(approval_status="REJECTED")),
    Row("revoke it twice", BO, "POST", lambda ids: "datasets/benchmarks/", _revocation, 400,
        error=rules.MSG_REJECT_ONLY_APPROVED),
    Row("the history: approved, then rejected", BO, "GET", _assoc_path(), None, 200,
        _statuses("APPROVED", "REJECTED")),
]



def _has_models(rows, ids):
    assert {r["model"] for r in rows} >= {ids["model2"], ids["pending_model"]}
    assert all(set(r) >= {"model", "approval_status", "priority"} for r in rows)


def _call(api, row: Row, ids: dict):
    path, body = row.path(ids), row.body(ids) if row.body else None
    if row.method == "GET":
        return api.get(path)
    if row.method == "LIST":
        return api.list(path)
    if row.method == "POST":
        return api.create(path, body)
    return api.update(path, body)


def _run(backend) -> list[str]:
    """Every row against `backend`; return the rows whose answer differs from the table."""
    first = backend.apis[DO].get("benchmarks/1/")
    ids = {"prep": first["data_preparation_mlcube"], "reference": first["reference_model"], "missing": 987654,
           "model2": next(m for m in (2, 1) if m != first["reference_model"])}
    ids["pending_model"] = backend.pending_model()
    wrong = []
    for row in ROWS:
        try:
            answer, status, body = _call(backend.apis[row.who], row, ids), 201 if row.method == "POST" else 200, None
        except ServerError as e:
            answer, status, body = None, e.status, e.body
        except KeyError as e:  # it names a record an earlier row should have made
            wrong.append(f"{row.what}: no {e} (an earlier row failed)")
            continue
        if status != row.status:
            wrong.append(f"{row.what}: HTTP {status} {body or ''}, expected {row.status}")
            continue
        if answer is not None:
            try:
                if row.check:
                    row.check(copy.deepcopy(answer), ids)
            except AssertionError as e:
                wrong.append(f"{row.what}: {e}")
            if row.keep:
                ids[row.keep] = answer["id"]
        elif row.error and row.error not in str(body):
            wrong.append(f"{row.what}: refused with {body}, expected {row.error!r}")
    return wrong


@pytest.mark.parametrize("make", [FakeBackend, ServerBackend], ids=["fake", "server"])
def test_the_fake_and_the_server_answer_the_same(make):
    backend = make()
    try:
        assert _run(backend) == []
    finally:
        backend.close()


class _Lenient(FakeApi):
    """The fake as it once was: any user's decision lands on the latest row, no rule asked."""

    def _decide(self, dataset_id, benchmark_id, body):
        rows = self._history(dataset_id, benchmark_id)
        if not rows:
            raise NotFound()
        rows[-1]["approval_status"] = body["approval_status"]
        return rows[-1]


def test_the_contract_can_fail():
    """A fake that lets the data owner approve their own request is caught."""
    backend = FakeBackend()
    lenient = _Lenient(backend.registry.world)
    backend.registry = lenient
    backend.apis = {DO: lenient, DO2: lenient.as_user(DATA_OWNER_2), BO: lenient.as_user(BENCHMARK_OWNER)}
    wrong = _run(backend)
    assert wrong and wrong[0].startswith("the data owner approves their own request: HTTP 200"), wrong
