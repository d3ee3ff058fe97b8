"""`medperf-apply association approve|reject` against the real server on loopback, with the real clients: the
benchmark owner decides; a wrong token, a user who may not decide, a request nobody made and the data owner's
own request are refused with a message saying what to do, exit 1, and change nothing; a decision already taken
exits 0 and sends nothing; rejecting an approval revokes it (a new REJECTED row), approving a rejection cannot."""

from __future__ import annotations

import io

import pytest

from runner.apply.execution import result_body
from runner.cli import main
from runner.clients.api import ApiClient
from tests.support.server import TESTBO, TESTDO, TESTDO2, live_server


def _dataset(api: ApiClient, name: str, prep: int, uid: str) -> int:
    """As the data owner: an operational dataset (as register and set operational leave it)."""
    ds = api.create("datasets/", {"name": name, "description": "", "location": "here", "input_data_hash": uid,
                                  "generated_uid": uid, "data_preparation_mlcube": prep, "split_seed": 0,
                                  "submitted_as_prepared": False, "for_test": False, "generated_metadata": {},
                                  "user_metadata": {}})
    api.update(f"datasets/{ds['id']}/", {"state": "OPERATION"})
    return ds["id"]


@pytest.fixture
def registry():
    """The seeded server; the data owner has two operational datasets, the first of which asked to join chestxray."""
    with live_server() as srv, ApiClient(srv.url, srv.tokens[TESTDO]) as do:
        bench = do.get("benchmarks/1/")
        asked = _dataset(do, "asked", bench["data_preparation_mlcube"], "1" * 64)
        never = _dataset(do, "never-asked", bench["data_preparation_mlcube"], "2" * 64)
        do.create("results/", result_body(f"b1m1d{asked}", 1, bench["reference_model"], asked))
        do.create("datasets/benchmarks/", {"dataset": asked, "benchmark": 1, "approval_status": "PENDING",
                                           "metadata": {"test_result": {"AUC": 0.8}}})
        yield srv, asked, never


def _decide(srv, tmp_path, decision: str, dataset, token: str):
    out, err = io.StringIO(), io.StringIO()
    code = main(["association", decision, "--benchmark", "chestxray", "--dataset", str(dataset), "--server", srv.url,
                 "--state-dir", str(tmp_path / "state")], stdout=out, stderr=err, stdin=io.StringIO(""),
                environ={"MEDPERF_TOKEN": token})
    return code, out.getvalue(), err.getvalue()


def _latest(srv, dataset: int) -> str:
    with ApiClient(srv.url, srv.tokens[TESTBO]) as bo:
        return bo.get(f"datasets/{dataset}/benchmarks/1/")[-1]["approval_status"]


def test_a_wrong_token_is_refused_clearly(registry, tmp_path):
    srv, asked, _ = registry
    code, out, err = _decide(srv, tmp_path, "approve", asked, "not-a-token")
    assert code == 1 and out == "", err
    assert "does not accept the token" in err and "MEDPERF_TOKEN" in err, err
    assert "Traceback" not in err and "internal error" not in err
    assert _latest(srv, asked) == "PENDING"


def test_a_user_who_may_not_decide_is_refused_clearly(registry, tmp_path):
    srv, asked, _ = registry
    code, out, err = _decide(srv, tmp_path, "approve", asked, srv.tokens[TESTDO2])
    assert code == 1 and "not allowed to approve the association of dataset asked" in err, err
    assert "only the benchmark owner" in err and "check the token" in err
    assert _latest(srv, asked) == "PENDING"


def test_a_request_nobody_made_is_refused_clearly(registry, tmp_path):
    srv, _, never = registry
    code, out, err = _decide(srv, tmp_path, "approve", never, srv.tokens[TESTBO])
    assert code == 1 and "there is no association request of dataset never-asked" in err, err
    assert "the data owner requests it first" in err
    code, out, err = _decide(srv, tmp_path, "reject", "never-asked", srv.tokens[TESTBO])
    assert code == 1 and "no dataset named 'never-asked' has asked to join benchmark 1" in err, err


def test_the_owner_decides_once_and_the_data_owner_never(registry, tmp_path):
    srv, asked, _ = registry
    code, out, err = _decide(srv, tmp_path, "approve", asked, srv.tokens[TESTDO])
    assert code == 1 and "Same user cannot approve the association request" in err, err
    assert _latest(srv, asked) == "PENDING"
    code, out, err = _decide(srv, tmp_path, "approve", "asked", srv.tokens[TESTBO])
    assert code == 0, err
    assert f"association of dataset asked ({asked}) with benchmark chestxray (1): APPROVED" in out
    code, out, err = _decide(srv, tmp_path, "approve", asked, srv.tokens[TESTBO])  # idempotent: a re-run passes
    assert code == 0 and "already APPROVED" in out and "nothing sent" in out, err
    assert _latest(srv, asked) == "APPROVED"
    code, out, err = _decide(srv, tmp_path, "reject", asked, srv.tokens[TESTBO])  # revoked as MedPerf allows
    assert code == 0 and "REJECTED (the approval of" in out, err
    assert _latest(srv, asked) == "REJECTED"
    code, out, err = _decide(srv, tmp_path, "approve", asked, srv.tokens[TESTBO])
    assert code == 1 and "MedPerf approves only a pending request" in err, err
    assert _latest(srv, asked) == "REJECTED"
