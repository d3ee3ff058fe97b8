"""The wire contract: the one JSON error shape, 401 header, pagination, trailing slashes, validation messages."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from bottle import Bottle

from server.app import make_app
from server.settings import Settings
from tests.support.server import inprocess_session


def test_401_without_or_with_a_bad_token(world):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Token abc"},
                    {"Authorization": "Bearer a.b.c"}):
        r = world.session.get(world.API + "/me/", headers=headers)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert r.headers["Content-Type"].startswith("application/json")
        assert set(r.json()) == {"detail"}
    assert world.anon.get("/version").json() == {"version": "v0"}
    assert world.session.get("http://testserver/version").json() == {"version": "v0"}


def test_error_shape_is_pinned(world):
    """Every error is JSON: 400 {field: [msgs]} / non_field_errors, else {"detail": msg}."""
    r = world.do.post("/datasets/", {"name": 5, "split_seed": "x", "data_preparation_mlcube": 1})
    assert r.status_code == 400
    assert r.json() == {
        "name": ["Not a valid string."],
        "split_seed": ["A valid integer is required."],
        "input_data_hash": ["This field is required."],
        "generated_uid": ["This field is required."],
        "submitted_as_prepared": ["This field is required."],
    }
    r = world.do.put("/benchmarks/1/", {"dataset_auto_approval_mode": "SOMETIMES"})
    assert r.status_code == 403  # permission before validation
    r = world.bo.put("/benchmarks/1/", {"dataset_auto_approval_mode": "SOMETIMES"})
    assert r.json() == {"dataset_auto_approval_mode": ['"SOMETIMES" is not a valid choice.']}
    r = world.do.post("/datasets/", ["not", "an", "object"])
    assert r.json() == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}
    r = world.session.post(world.API + "/datasets/", data=b"{not json", headers=world.do.headers)
    assert r.status_code == 400 and r.json()["detail"].startswith("JSON parse error")
    expected = {404: {"detail": "Not found."}, 403: {"detail": "You do not have permission to perform this action."}}
    assert world.do.get("/nowhere/").json() == expected[404]
    assert world.do.get("/benchmarks/42/").json() == expected[404]
    assert world.do.get("/results/").json() == expected[403]
    r = world.do.delete("/benchmarks/1/")
    assert r.status_code == 405 and r.json() == {"detail": "Method not allowed."}


def test_unhandled_errors_are_json_500(tmp_path, monkeypatch):
    from server import store

    app = make_app(Settings(db_url=str(tmp_path / "s.db")))

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "list_benchmarks", boom)
    from server import auth

    with app.config["medperf.db"].connection() as conn:
        _u, token = auth.create_user_with_token(conn, "a@b.c")
    r = inprocess_session(app).get("http://x/api/v0/benchmarks/", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500 and r.json() == {"detail": "A server error occurred."}
    assert isinstance(app, Bottle)


def test_pagination_limit_offset_and_absolute_links(world):
    mo = world.mo
    for i in range(5):
        r = mo.post("/mlcubes/", {"name": f"c{i}", "container_config": {"i": i}, "image_hash": "sha256:x"})
        assert r.status_code == 201
    total = mo.get("/mlcubes/").json()["count"]
    assert total == 9  # 4 seeded + 5
    page = mo.get("/mlcubes/", limit=2).json()
    assert page["previous"] is None and len(page["results"]) == 2
    nxt = urlsplit(page["next"])
    assert (nxt.scheme, nxt.netloc, nxt.path) == ("http", "testserver", "/api/v0/mlcubes/")
    assert parse_qs(nxt.query) == {"limit": ["2"], "offset": ["2"]}
    # previous of offset <= limit carries no offset parameter
    page = mo.get("/mlcubes/", limit=2, offset=1).json()
    assert parse_qs(urlsplit(page["previous"]).query) == {"limit": ["2"]}
    page = mo.get("/mlcubes/", limit=2, offset=6).json()
    assert parse_qs(urlsplit(page["previous"]).query) == {"limit": ["2"], "offset": ["4"]}
    last = mo.get("/mlcubes/", limit=2, offset=8).json()
    assert last["next"] is None and len(last["results"]) == 1
    # walking `next` visits every record once
    seen, url = [], world.API + "/mlcubes/?limit=4"
    while url:
        body = world.session.get(url, headers=mo.headers).json()
        seen += [c["id"] for c in body["results"]]
        url = body["next"]
    assert sorted(seen) == list(range(1, 10))
    # invalid limit falls back to the default page size (32); filters apply before paging
    assert len(mo.get("/mlcubes/", limit="zero").json()["results"]) == 9
    assert mo.get("/mlcubes/", name="c3").json()["count"] == 1
    assert mo.get("/benchmarks/", state="OPERATION", is_valid="True").json()["count"] == 1


def test_default_page_size_is_32(world):
    for i in range(34):
        world.do.post("/datasets/", {"name": f"d{i}", "input_data_hash": "a", "generated_uid": str(i),
                                     "split_seed": 0, "data_preparation_mlcube": 1, "submitted_as_prepared": False})
    page = world.do.get("/me/datasets/").json()
    assert page["count"] == 34 and len(page["results"]) == 32
    assert parse_qs(urlsplit(page["next"]).query) == {"limit": ["32"], "offset": ["32"]}


@pytest.mark.parametrize("path", ["/benchmarks/1/", "/benchmarks/1"])
def test_trailing_slash_is_optional(world, path):
    assert world.do.get(path).json()["id"] == 1


def test_nan_is_refused_not_stored(world):
    ds = world.dataset(world.do)
    rid = world.result(world.do, ds["id"], 1).json()["id"]
    r = world.session.put(f"{world.API}/results/{rid}/", data=b'{"results": {"AUC": NaN}}',
                          headers={**world.do.headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and "NaN" in r.json()["detail"]
    assert world.do.get(f"/results/{rid}/").json()["finalized"] is False
