"""Server hardening: every endpoint x every actor (extending tests/server/test_permissions.py's matrix to the
endpoints it does not cover, and checking together they cover every route), oversized bodies refused with the
JSON error shape, SQL injection attempts in every string field stored verbatim (SQLite and PostgreSQL).

Write endpoints are probed with an invalid body where a write would change the scene: a caller allowed to
write gets 400 (the body is checked after the permission), one who is not gets 403, anonymous 401.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from server.seed import demo_fields
from tests.server.test_permissions import ACTORS, EVERYONE, MATRIX, expect, statuses

_n = itertools.count(1)


def _uniq(prefix: str) -> str:
    return f"{prefix}-{next(_n)}"


def _mlcube_body(name):
    return {"name": name, "image_hash": "sha256:" + f"{next(_n):064x}",
            "container_config": {"container_type": "DockerImage", "image": f"example/{name}:1",
                                 "tasks": {"evaluate": {"input_volumes": {}, "output_volumes": {}}}}}


def _model_body(name):
    return {"name": name, "type": "CONTAINER", "container": {
        "name": name, "image_hash": "sha256:" + f"{next(_n):064x}",
        "container_config": {"container_type": "DockerImage", "image": f"example/{name}:1",
                             "tasks": {"infer": {"input_volumes": {}, "output_volumes": {}}}}}}


def _benchmark_body(name):
    return {"name": name, "description": "d", "data_preparation_mlcube": 1, "reference_model": 1,
            "data_evaluator_mlcube": 3, **demo_fields()}


def _dataset_body(name):
    return {"name": name, "description": "d", "location": "l", "input_data_hash": "a" * 64,
            "generated_uid": "b" * 64, "data_preparation_mlcube": 1, "split_seed": 0,
            "submitted_as_prepared": False}


PUBLIC = {a: 200 for a in ACTORS}
BOGUS = {"approval_status": "BOGUS"}

# (call, expected) for the routes the server suite's MATRIX leaves out.
EXTRA = {
    "GET /version/": (lambda c: c.get("/version/"), PUBLIC),
    "GET /schema/": (lambda c: c.get("/schema/"), PUBLIC),
    "GET /me/datasets/": (lambda c: c.get("/me/datasets/"), expect(EVERYONE)),
    "GET /me/benchmarks/": (lambda c: c.get("/me/benchmarks/"), expect(EVERYONE)),
    "GET /me/models/": (lambda c: c.get("/me/models/"), expect(EVERYONE)),
    "GET /me/mlcubes/": (lambda c: c.get("/me/mlcubes/"), expect(EVERYONE)),
    "GET /me/models/associations/": (lambda c: c.get("/me/models/associations/"), expect(EVERYONE)),
    "GET /mlcubes/": (lambda c: c.get("/mlcubes/"), expect(EVERYONE)),
    "GET /mlcubes/4/model/": (lambda c: c.get("/mlcubes/4/model/"), expect(EVERYONE)),
    "GET /models/": (lambda c: c.get("/models/"), expect(EVERYONE)),
    "GET /models/2/benchmarks/": (lambda c: c.get("/models/2/benchmarks/"), expect({"admin", "mo"})),
    "GET /models/2/benchmarks/1/": (lambda c: c.get("/models/2/benchmarks/1/"), expect({"admin", "bo", "mo"})),
    "POST /mlcubes/": (lambda c: c.post("/mlcubes/", _mlcube_body(_uniq("cube"))), expect(EVERYONE, ok=201)),
    "POST /models/": (lambda c: c.post("/models/", _model_body(_uniq("model"))), expect(EVERYONE, ok=201)),
    "POST /benchmarks/": (lambda c: c.post("/benchmarks/", _benchmark_body(_uniq("bench"))), expect(EVERYONE, ok=201)),
    "POST /datasets/": (lambda c: c.post("/datasets/", _dataset_body(_uniq("ds"))), expect(EVERYONE, ok=201)),
    "PUT /mlcubes/1/ (bo's)": (lambda c: c.put("/mlcubes/1/", {"user_metadata": {"k": 1}}), expect({"admin", "bo"})),
    "PUT /mlcubes/4/ (mo's)": (lambda c: c.put("/mlcubes/4/", {"user_metadata": {"k": 1}}), expect({"admin", "mo"})),
    "PUT /datasets/1/benchmarks/1/ (bogus status)": (lambda c: c.put("/datasets/1/benchmarks/1/", BOGUS),
                                                      expect({"admin", "bo", "do"}, ok=400)),
    # a valid body: the pair's latest request is APPROVED, so an allowed caller meets that rule (400)
    "POST /models/benchmarks/": (lambda c: c.post("/models/benchmarks/", {"model": 2, "benchmark": 1, "metadata": {}}),
                                 expect({"admin", "bo", "mo"}, ok=400)),
    "PUT /models/2/benchmarks/1/ (bogus status)": (lambda c: c.put("/models/2/benchmarks/1/", BOGUS),
                                                    expect({"admin", "bo", "mo"}, ok=400)),
}
# Destructive: admin only, and asked of the admin last so that the others meet the record.
DESTRUCTIVE = {
    "DELETE /datasets/1/benchmarks/1/": (lambda c: c.delete("/datasets/1/benchmarks/1/"), expect({"admin"}, ok=204)),
    "DELETE /datasets/1/": (lambda c: c.delete("/datasets/1/"), expect({"admin"}, ok=204)),
}


@pytest.fixture
def scene(world):
    ds = world.dataset(world.do)
    assert ds["id"] == 1
    world.associate(world.do, 1)
    assert world.result(world.do, 1, 1).status_code == 201
    return world


@pytest.mark.parametrize("endpoint", list(EXTRA))
def test_permission_matrix_beyond_the_server_suite(scene, endpoint):
    call, expected = EXTRA[endpoint]
    assert statuses(scene, call) == expected


@pytest.mark.parametrize("endpoint", list(DESTRUCTIVE))
def test_destructive_endpoints_are_admin_only(scene, endpoint):
    call, expected = DESTRUCTIVE[endpoint]
    order = [a for a in ACTORS if a != "admin"] + ["admin"]
    assert {a: call(scene.client(a)).status_code for a in order} == expected


def _route_key(label: str) -> tuple[str, str]:
    method, path = label.split(" ")[:2]
    return method, re.sub(r"/\d+/", "/{id}/", re.sub(r"/\d+/", "/{id}/", path))


def test_the_matrices_cover_every_api_route(scene):
    covered = {_route_key(k) for k in itertools.chain(MATRIX, EXTRA, DESTRUCTIVE)}
    covered.add(("POST", "/datasets/benchmarks/"))  # tests/server: test_dataset_association_post_permissions
    routes = {(r.method, re.sub(r"<[^>]+>", "{id}", r.rule[len("/api/v0"):])) for r in scene.app.routes
              if r.rule.startswith("/api/v0/") and r.rule.endswith("/")}
    assert routes - covered == set(), f"routes without a permission row: {sorted(routes - covered)}"


# -- oversized bodies ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,method", [("/datasets/", "post"), ("/datasets/1/", "put"), ("/results/", "post"),
                                         ("/results/1/", "put"), ("/mlcubes/", "post"), ("/benchmarks/", "post")])
def test_oversized_bodies_are_refused_with_the_json_error_shape(scene, path, method):
    limit = scene.settings.max_body_bytes
    body = json.dumps({"name": "x", "metadata": {"blob": "a" * (limit + 10)}}).encode()
    client = scene.do
    r = getattr(client.session, method)(client.api + path, data=body,
                                        headers={**client.headers, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["Content-Type"].startswith("application/json"), r.text[:200]
    assert set(r.json()) == {"detail"} and str(limit) in r.json()["detail"]
    small = getattr(client.session, method)(client.api + path, data=json.dumps({"metadata": {"blob": "a" * 1000}}),
                                            headers={**client.headers, "Content-Type": "application/json"})
    assert small.status_code != 413


def test_oversized_chunked_body_on_the_live_server():
    import requests

    from tests.support.server import TESTDO, live_server

    with live_server() as srv:
        limit = srv.settings.max_body_bytes

        def chunks():
            yield b'{"name": "x", "metadata": {"blob": "'
            for _ in range(limit // 65536 + 2):
                yield b"a" * 65536
            yield b'"}}'
        r = requests.post(srv.api + "/datasets/", data=chunks(), timeout=60,
                          headers={**srv.headers(TESTDO), "Content-Type": "application/json"})
        assert r.status_code == 413 and set(r.json()) == {"detail"}


# -- SQL injection: every string field stored verbatim ------------------------------------------------------

INJECTIONS = (
    "x'; DROP TABLE datasets; --",
    "\" OR 1=1 --",
    "'); DELETE FROM users; --",
    "Robert'); DROP TABLE results;--",
    "%' OR '1'='1",
    "1; SELECT pg_sleep(5); --",
    "$$; DROP TABLE tokens; $$",
    "\\'; UPDATE users SET is_admin=1; --",
    "ø 𝄞 \u202e' --",
)


def _string_fields(schema: dict) -> list[str]:
    return [k for k, v in schema["properties"].items() if v.get("type") == "string" and "enum" not in v]


def test_sql_injection_in_every_string_field_is_stored_verbatim(scene):
    import schemas

    w = scene
    created = 0
    for i, payload in enumerate(INJECTIONS):
        tag = f"{i}{payload}"[:100]
        ds = _dataset_body(tag)
        ds.update({"description": tag, "location": tag, "input_data_hash": tag, "generated_uid": tag})
        assert set(_string_fields(schemas.load("api-dataset"))) >= {"name", "description", "location"}
        r = w.do.post("/datasets/", ds)
        assert r.status_code == 201, r.text
        got = w.do.get(f"/datasets/{r.json()['id']}/").json()
        for f in ("name", "description", "location", "input_data_hash", "generated_uid"):
            assert got[f] == tag, (f, got[f])
        cube = _mlcube_body(f"c{tag}")
        cube["image_hash"] = tag[:100]
        cube["additional_files_tarball_hash"] = ""
        r = w.bo.post("/mlcubes/", cube)
        assert r.status_code == 201, r.text
        got = w.bo.get(f"/mlcubes/{r.json()['id']}/").json()
        assert (got["name"], got["image_hash"]) == (f"c{tag}", tag[:100])
        bench = _benchmark_body(f"b{tag}")
        bench.update({"description": tag, "docs_url": tag[:100], "demo_dataset_tarball_hash": tag[:100],
                      "demo_dataset_generated_uid": tag})
        r = w.bo.post("/benchmarks/", bench)
        assert r.status_code == 201, r.text
        # one pending benchmark per owner (MedPerf): the admin decides this one before the next
        assert w.admin.put(f"/benchmarks/{r.json()['id']}/", {"approval_status": "REJECTED"}).status_code == 200
        got = w.bo.get(f"/benchmarks/{r.json()['id']}/").json()
        assert (got["name"], got["description"], got["demo_dataset_generated_uid"]) == (f"b{tag}", tag, tag)
        r = w.do.post("/results/", {"name": tag, "benchmark": 1, "model": 1, "dataset": 1,
                                     "metadata": {tag: tag}, "user_metadata": {"k": [tag]}})
        assert r.status_code == 201, r.text
        got = w.do.get(f"/results/{r.json()['id']}/").json()
        assert got["name"] == tag and got["metadata"] == {tag: tag} and got["user_metadata"] == {"k": [tag]}
        # in query strings too: a filter value is a value, never SQL
        assert w.bo.get("/benchmarks/", name=payload).json()["count"] == 0
        assert w.admin.get("/results/", name=payload).json()["count"] == 0
        created += 1
    assert created == len(INJECTIONS)
    # the tables are all there and the users unchanged
    assert w.admin.get("/me/").status_code == 200 and w.admin.get("/results/").status_code == 200
    assert w.do.get("/me/datasets/").json()["count"] == len(INJECTIONS) + 1
    for actor in ("bo", "mo", "do", "do2"):
        me = w.client(actor).get("/me/")
        assert me.status_code == 200 and not me.json().get("is_admin", False), me.text


def test_a_nul_character_is_refused_not_a_server_error(scene):
    """PostgreSQL TEXT cannot hold NUL (it was a 500 there): 400 "Null characters are not allowed." as DRF says."""
    for field in ("name", "description", "location", "input_data_hash"):
        body = _dataset_body(_uniq("nul"))
        body[field] = "a\u0000b"
        r = scene.do.post("/datasets/", body)
        assert r.status_code == 400 and r.json() == {field: ["Null characters are not allowed."]}, r.text
    r = scene.bo.post("/mlcubes/", {**_mlcube_body(_uniq("cube")), "image_hash": "a\u0000b"})
    assert r.status_code == 400 and "image_hash" in r.json(), r.text
    r = scene.do.put("/datasets/1/", {"description": "a\u0000b"})
    assert r.status_code == 400, r.text
    r = scene.bo.get("/benchmarks/", name="a\u0000b")
    assert r.status_code == 400 and r.json() == {"name": ["Null characters are not allowed."]}, r.text


# -- odd requests: paging, nesting, headers, methods ---------------------------------------------------------

ODD_QUERIES = ("limit=99999999999999999999", "offset=99999999999999999999", "limit=-1", "offset=-5", "limit=1e3",
               "limit=%00", "owner=99999999999999999999", "owner=-99999999999999999999", "name=%00",
               "is_valid=%00", "limit=0&offset=0")
BAD_AUTH = ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a b c", "Bearer a\x00b",
            "Bearer " + "x" * 20000, "Bearer mpa_" + "0" * 40, "Bearer eyJhbGciOiJub25lIn0.e30.")


def test_odd_requests_are_answered_in_the_json_shape_never_500(scene):
    s, api, headers = scene.session, scene.API, scene.do.headers
    seen = []
    for q in ODD_QUERIES:
        for path in ("/benchmarks/", "/datasets/", "/me/results/", "/mlcubes/"):
            seen.append((f"GET {path}?{q}", s.get(f"{api}{path}?{q}", headers=headers)))
    for h in BAD_AUTH:
        seen.append((f"Authorization: {h[:24]!r}", s.get(f"{api}/me/", headers={"Authorization": h})))
    for method in ("PATCH", "DELETE", "POST", "PUT", "OPTIONS"):
        seen.append((f"{method} /benchmarks/1/models/", s.request(method, f"{api}/benchmarks/1/models/",
                                                                  headers=headers)))
    seen.append(("GET /nowhere/", s.get(f"{api}/nowhere/", headers=headers)))
    for name, body in {"deeply nested JSON": b"[" * 100_000 + b"]" * 100_000, "not UTF-8": b"\xff\xfe{}",
                       "NaN": b'{"name": NaN}', "a JSON string": b'"x"', "huge number": b'{"split_seed": 1e999}'
                       }.items():
        seen.append((f"POST /datasets/ {name}", s.post(f"{api}/datasets/", data=body,
                                                        headers={**headers, "Content-Type": "application/json"})))
    bad = [(what, r.status_code, r.text[:120]) for what, r in seen
           if r.status_code >= 500 or not r.headers.get("Content-Type", "").startswith("application/json")]
    assert bad == []
    assert {r.status_code for what, r in seen if what.startswith("Authorization")} == {401}


def test_a_number_that_overflows_is_refused_not_served_back_as_non_json(scene):
    r = scene.session.put(f"{scene.API}/datasets/1/", data=b'{"user_metadata": {"x": -1e999}}',
                          headers={**scene.do.headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and "out of range" in r.json()["detail"], r.text
    served = scene.do.get("/datasets/1/").text
    json.loads(served, parse_constant=lambda c: pytest.fail(f"non-JSON {c} served"))
