"""The registry client against the real server on loopback: pagination and error translation."""

from __future__ import annotations

import importlib.util

import pytest

from runner.clients.api import ApiClient
from runner.errors import PrivacyViolation, ServerError, ServerUnavailable
from runner.privacy import check_body

if importlib.util.find_spec("tests.support.server") is None:  # built in parallel by the server's area
    pytest.skip("tests/support/server.py is not there yet", allow_module_level=True)

from tests.support.server import TESTDO, live_server  # noqa: E402


@pytest.fixture(scope="module")
def srv():
    with live_server() as s:
        yield s


def register_body(i: int, prep: int) -> dict:
    return {"name": f"live-{i}", "description": "", "location": "here", "input_data_hash": f"{i:064x}",
            "generated_uid": f"{i:064x}", "data_preparation_mlcube": prep, "split_seed": 0,
            "submitted_as_prepared": False, "for_test": False, "generated_metadata": {}, "user_metadata": {}}


def test_pagination_and_writes_against_the_real_server(srv):
    with ApiClient(srv.url, srv.tokens[TESTDO], before_send=check_body, page_size=3) as api:
        bench = api.get("benchmarks/1/")
        made = [api.create("datasets/", register_body(i, bench["data_preparation_mlcube"]))["id"]
                for i in range(1, 8)]
        before = api.request_count
        mine = api.list("me/datasets/")
        pages = api.request_count - before
        assert [d["id"] for d in mine if d["name"].startswith("live-")] == made
        assert pages == -(-len(mine) // 3)  # every page, one request each, then next is null
        updated = api.update(f"datasets/{made[0]}/", {"report": {"execution_status": "started", "progress": {}}})
        assert updated["report"]["execution_status"] == "started"
    with ApiClient(srv.url, srv.tokens[TESTDO]) as api:
        before = api.request_count
        assert len(api.list("me/datasets/")) == len(mine)
        assert api.request_count - before == 1  # the default page size takes it in one request


def test_errors_are_translated(srv):
    with ApiClient(srv.url, srv.tokens[TESTDO], before_send=check_body) as api:
        with pytest.raises(ServerError) as e:
            api.get("benchmarks/9999/")
        assert e.value.status == 404 and "/api/v0/benchmarks/9999/ does not exist" in str(e.value)
        with pytest.raises(ServerError) as e:
            api.get("benchmarks/1/results/")  # benchmark owner or admin only
        assert e.value.status == 403 and "not allowed to GET /api/v0/benchmarks/1/results/" in str(e.value)
        with pytest.raises(ServerError) as e:
            body = register_body(99, 1)
            del body["split_seed"]
            api.create("datasets/", body)
        assert e.value.status == 400 and "split_seed:" in str(e.value) and "\n" not in str(e.value)
        assert not isinstance(e.value, ServerUnavailable)
        with pytest.raises(PrivacyViolation):
            api.create("datasets/", {**register_body(98, 1), "data_path": "/home/someone/data"})
    with ApiClient(srv.url, "not-a-token") as api, pytest.raises(ServerError) as e:
        api.get("me/")
    assert e.value.status == 401 and "token_env" in str(e.value)
