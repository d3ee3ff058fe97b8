"""Every endpoint against every actor (anonymous, admin, benchmark owner, model owner, two data owners).

The world: the seeded tutorial, plus testdo's operational dataset 1 with a PENDING association to
benchmark 1 and a reference-model result 1.
"""

from __future__ import annotations

import pytest

ACTORS = ("anonymous", "admin", "bo", "mo", "do", "do2")


@pytest.fixture
def scene(world):
    ds = world.dataset(world.do)
    assert ds["id"] == 1
    world.associate(world.do, 1)
    r = world.result(world.do, 1, 1)
    assert r.status_code == 201 and r.json()["id"] == 1
    return world


def statuses(world, call) -> dict[str, int]:
    return {actor: call(world.client(actor)).status_code for actor in ACTORS}


def expect(allowed: set[str], ok: int = 200, denied: int = 403) -> dict[str, int]:
    return {a: 401 if a == "anonymous" else (ok if a in allowed else denied) for a in ACTORS}


EVERYONE = {"admin", "bo", "mo", "do", "do2"}

MATRIX = {
    "GET /me/": (lambda c: c.get("/me/"), expect(EVERYONE)),
    "GET /benchmarks/": (lambda c: c.get("/benchmarks/"), expect(EVERYONE)),
    "GET /benchmarks/1/": (lambda c: c.get("/benchmarks/1/"), expect(EVERYONE)),
    "GET /benchmarks/1/models/ (do pending)": (lambda c: c.get("/benchmarks/1/models/"), expect({"admin", "bo"})),
    "GET /benchmarks/1/datasets/": (lambda c: c.get("/benchmarks/1/datasets/"), expect({"admin", "bo", "mo"})),
    "GET /benchmarks/1/results/": (lambda c: c.get("/benchmarks/1/results/"), expect({"admin", "bo"})),
    "GET /mlcubes/1/": (lambda c: c.get("/mlcubes/1/"), expect(EVERYONE)),
    "GET /mlcubes/1/datasets/": (lambda c: c.get("/mlcubes/1/datasets/"), expect({"admin", "bo"})),
    "GET /models/2/": (lambda c: c.get("/models/2/"), expect(EVERYONE)),
    "PUT /models/2/": (lambda c: c.put("/models/2/", {"user_metadata": {"k": 1}}), expect({"admin", "mo"})),
    "GET /datasets/": (lambda c: c.get("/datasets/"), expect(EVERYONE)),
    "GET /datasets/1/": (lambda c: c.get("/datasets/1/"), expect(EVERYONE)),
    "PUT /datasets/1/": (lambda c: c.put("/datasets/1/", {"user_metadata": {"k": 1}}), expect({"admin", "do"})),
    "GET /datasets/1/benchmarks/": (lambda c: c.get("/datasets/1/benchmarks/"), expect({"admin", "do"})),
    "GET /datasets/1/benchmarks/1/": (lambda c: c.get("/datasets/1/benchmarks/1/"), expect({"admin", "bo", "do"})),
    "PUT /benchmarks/1/": (lambda c: c.put("/benchmarks/1/", {"user_metadata": {"k": 1}}), expect({"admin", "bo"})),
    "GET /results/": (lambda c: c.get("/results/"), expect({"admin"})),
    "GET /results/1/": (lambda c: c.get("/results/1/"), expect({"admin", "bo", "do"})),
    "PUT /results/1/": (lambda c: c.put("/results/1/", {"model_report": {"execution_status": "started"}}),
                        expect({"admin", "do"})),
    "POST /results/ (reference model)": (
        lambda c: c.post("/results/", {"benchmark": 1, "model": 1, "dataset": 1}), expect({"admin", "do"}, ok=201)),
    "GET /users/4/ (testdo)": (lambda c: c.get("/users/4/"), expect({"admin", "bo", "do"})),
    "GET /me/results/": (lambda c: c.get("/me/results/"), expect(EVERYONE)),
    "GET /me/datasets/associations/": (lambda c: c.get("/me/datasets/associations/"), expect(EVERYONE)),
}


@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(scene, endpoint):
    call, expected = MATRIX[endpoint]
    assert statuses(scene, call) == expected


def test_dataset_association_post_permissions(world):
    """Admin, the dataset owner and the benchmark owner may request; the model owner and others may not."""
    world.dataset(world.do)
    body = {"dataset": 1, "benchmark": 1, "approval_status": "PENDING", "metadata": {}}
    assert world.mo.post("/datasets/benchmarks/", body).status_code == 403
    assert world.do2.post("/datasets/benchmarks/", body).status_code == 403
    assert world.anon.post("/datasets/benchmarks/", body).status_code == 401
    assert world.do.post("/datasets/benchmarks/", body).status_code == 201


def test_who_sees_what_of_a_dataset_and_a_benchmark(scene):
    # `report` only for admin, owner, and the preparation container's owner (testbo)
    for actor, sees in {"admin": True, "bo": True, "do": True, "mo": False, "do2": False}.items():
        assert ("report" in scene.client(actor).get("/datasets/1/").json()) is sees, actor
    assert all("report" not in d for d in scene.bo.get("/datasets/").json()["results"])
    # auto-approval allow lists only for admin and the benchmark owner
    for actor, sees in {"admin": True, "bo": True, "do": False, "mo": False}.items():
        assert ("dataset_auto_approval_allow_list" in scene.client(actor).get("/benchmarks/1/").json()) is sees


def test_me_lists_are_the_callers_own(scene):
    assert [d["id"] for d in scene.do.get("/me/datasets/").json()["results"]] == [1]
    assert scene.do2.get("/me/datasets/").json()["count"] == 0
    assert [r["id"] for r in scene.do.get("/me/results/").json()["results"]] == [1]
    assert scene.do2.get("/me/results/").json()["count"] == 0
    assert [b["id"] for b in scene.bo.get("/me/benchmarks/").json()["results"]] == [1]
    assert [m["id"] for m in scene.mo.get("/me/models/").json()["results"]] == [2]
    # associations: the data owner's and the benchmark owner's, not the others'
    assert scene.do.get("/me/datasets/associations/").json()["count"] == 1
    assert scene.bo.get("/me/datasets/associations/").json()["results"][0]["metadata"] == {"test_result": {"AUC": 0.5}}
    assert scene.do2.get("/me/datasets/associations/").json()["count"] == 0
    assert scene.mo.get("/me/datasets/associations/").json()["count"] == 0
