"""The data owner's workflow and MedPerf's rules through the API (in-process), on SQLite and PostgreSQL."""

from __future__ import annotations

from server.seed import demo_fields


def latest(rows):
    return max(rows, key=lambda r: (r["created_at"], r["id"]))


def test_seeded_world_has_medperf_ids(world):
    bench = world.do.get("/benchmarks/1/").json()
    assert (bench["name"], bench["approval_status"], bench["state"]) == ("chestxray", "APPROVED", "OPERATION")
    assert bench["dataset_auto_approval_mode"] == "NEVER"
    assert world.do.get("/models/1/").json()["name"] == "chestxray_cnn"
    assert bench["reference_model"] == 1
    second = world.do.get("/models/2/").json()
    assert second["name"] == "chestxray_linear" and second["owner"] == world.mo.get("/me/").json()["id"]
    rows = world.bo.get("/models/2/benchmarks/1/").json()
    assert [r["approval_status"] for r in rows] == ["APPROVED"]
    prep = world.do.get(f"/mlcubes/{bench['data_preparation_mlcube']}/").json()
    assert prep["name"] == "chestxray_prep" and set(prep["container_config"]["tasks"]) == {
        "prepare", "sanity_check", "statistics"}
    assert world.admin.get("/me/").json()["is_admin"] is True


def test_data_owner_tutorial_flow(world):
    do, bo = world.do, world.bo
    ds = world.dataset(do, operational=False)
    assert (ds["id"], ds["state"], ds["owner"]) == (1, "DEVELOPMENT", do.get("/me/").json()["id"])
    r = do.put("/datasets/1/", {"report": {"execution_status": "started", "progress": {}}})
    assert r.status_code == 200 and r.json()["report"]["execution_status"] == "started"
    r = do.put("/datasets/1/", {"input_data_hash": "h-raw", "generated_uid": "h-prep",
                                "generated_metadata": {"num_cases": 3}, "state": "OPERATION"})
    assert r.status_code == 200 and r.json()["state"] == "OPERATION"

    # before approval: reference model result allowed, other models not, benchmark models refused
    r = world.result(do, 1, 1)
    assert (r.status_code, r.json()["id"], r.json()["name"], r.json()["finalized"]) == (201, 1, "b1m1d1", False)
    assert world.result(do, 1, 2).json() == {"non_field_errors": ["Dataset-Benchmark association must be approved"]}
    a = world.associate(do, 1)
    assert a["approval_status"] == "PENDING" and a["initiated_by"] == ds["owner"] and a["approved_at"] is None
    assert do.get("/benchmarks/1/models/").status_code == 403
    assert world.result(do, 1, 2).status_code == 400

    r = bo.put("/datasets/1/benchmarks/1/", {"approval_status": "APPROVED"})
    assert r.status_code == 200 and r.json()["approval_status"] == "APPROVED" and r.json()["approved_at"]
    models = do.get("/benchmarks/1/models/").json()
    assert models["count"] == 1 and models["results"][0]["model"] == 2
    assert models["results"][0]["approval_status"] == "APPROVED"

    r = world.result(do, 1, 2)
    assert r.status_code == 201 and r.json()["id"] == 2
    for report in ("model_report", "evaluation_report"):
        assert do.put("/results/2/", {report: {"execution_status": "finished"}}).status_code == 200
    r = do.put("/results/2/", {"results": {"AUC": 0.9, "Accuracy": 0.8}, "metadata": {"partial": False}})
    body = r.json()
    assert r.status_code == 200 and body["finalized"] is True and body["finalized_at"]
    assert body["results"] == {"AUC": 0.9, "Accuracy": 0.8}
    assert body["model_report"] == {"execution_status": "finished"}
    # finalized is immutable: every PUT is refused, status reports included
    for put in ({"results": {"AUC": 0}}, {"model_report": {"execution_status": "failed"}}, {}):
        r = do.put("/results/2/", put)
        assert r.status_code == 400
        assert r.json() == {"non_field_errors": ["User cannot update a result object after it's been finalized."]}
    mine = do.get("/me/results/").json()
    assert [(x["id"], x["model"], x["finalized"]) for x in mine["results"]] == [(1, 1, False), (2, 2, True)]
    assert [x["id"] for x in bo.get("/benchmarks/1/results/").json()["results"]] == [1, 2]


def test_dataset_states_and_unique_operational_uid(world):
    do, do2 = world.do, world.do2
    # state is read-only at creation
    r = do.post("/datasets/", {"name": "x", "input_data_hash": "a", "generated_uid": "a", "split_seed": 0,
                               "data_preparation_mlcube": 1, "submitted_as_prepared": False, "state": "OPERATION"})
    assert r.status_code == 201 and r.json()["state"] == "DEVELOPMENT"
    # development datasets may share hashes, across owners too
    a = world.dataset(do, uid="same", operational=False)
    b = world.dataset(do2, uid="same", operational=False)
    body = {"generated_uid": "same", "state": "OPERATION"}
    assert do.put(f"/datasets/{a['id']}/", body).status_code == 200
    r = do2.put(f"/datasets/{b['id']}/", body)
    assert r.status_code == 400
    assert r.json() == {"non_field_errors": ["An Operational dataset with the same generated UID already exists"]}
    assert do2.get(f"/datasets/{b['id']}/").json()["state"] == "DEVELOPMENT"
    # once operational: only is_valid / user_metadata; re-sending current values is accepted; never back
    current = do.get(f"/datasets/{a['id']}/").json()
    r = do.put(f"/datasets/{a['id']}/", {**current, "user_metadata": {"site": "x"}, "is_valid": False})
    assert r.status_code == 200 and r.json()["user_metadata"] == {"site": "x"} and r.json()["is_valid"] is False
    for change in ({"name": "renamed"}, {"generated_uid": "other"}, {"report": {"x": 1}},
                   {"generated_metadata": {"n": 2}}):
        r = do.put(f"/datasets/{a['id']}/", change)
        assert r.status_code == 400 and "non_field_errors" in r.json(), change
    assert do.put(f"/datasets/{a['id']}/", {"state": "DEVELOPMENT"}).status_code == 400
    assert do.get(f"/datasets/{a['id']}/").json()["name"] == "mytestdata"


def test_association_history_latest_wins(world):
    do, bo = world.do, world.bo
    world.dataset(do)
    world.associate(do, 1)
    r = do.post("/datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "metadata": {}})
    assert r.status_code == 400
    assert r.json() == {"non_field_errors": ["User can create a new request only if prior request is rejected"]}
    # never approved by the requester; the requester may withdraw (reject)
    r = do.put("/datasets/1/benchmarks/1/", {"approval_status": "APPROVED"})
    assert r.status_code == 400 and r.json() == {"non_field_errors": ["Same user cannot approve the association request"]}
    assert bo.put("/datasets/1/benchmarks/1/", {"approval_status": "REJECTED"}).status_code == 200
    # a rejected row cannot be re-decided; a new request is allowed
    assert bo.put("/datasets/1/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 400
    world.associate(do, 1, approve_with=bo)
    rows = do.get("/datasets/1/benchmarks/1/").json()
    assert isinstance(rows, list) and [r["approval_status"] for r in rows] == ["REJECTED", "APPROVED"]
    assert latest(rows)["approval_status"] == "APPROVED"
    # approving an approved association fails; setting PENDING fails; revoking is a new REJECTED row
    assert bo.put("/datasets/1/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 400
    assert bo.put("/datasets/1/benchmarks/1/", {"approval_status": "PENDING"}).status_code == 400
    r = bo.post("/datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "approval_status": "REJECTED", "metadata": {}})
    assert r.status_code == 201 and r.json()["approval_status"] == "REJECTED"
    assert latest(do.get("/datasets/1/benchmarks/1/").json())["approval_status"] == "REJECTED"
    assert do.get("/benchmarks/1/models/").status_code == 403  # the latest row decides
    assert world.result(do, 1, 2).status_code == 400
    assert do.get("/datasets/1/benchmarks/").json()["count"] == 3


def test_auto_approval_modes(world):
    do, do2, bo = world.do, world.do2, world.bo
    d1 = world.dataset(do)
    d2 = world.dataset(do2)
    assert bo.put("/benchmarks/1/", {"dataset_auto_approval_mode": "ALLOWLIST",
                                     "dataset_auto_approval_allow_list": ["testdo@example.com"]}).status_code == 200
    assert world.associate(do, d1["id"])["approval_status"] == "APPROVED"
    assert world.associate(do2, d2["id"])["approval_status"] == "PENDING"
    assert bo.put("/benchmarks/1/", {"dataset_auto_approval_mode": "ALWAYS"}).status_code == 200
    d3 = world.dataset(do2, name="third")
    assert world.associate(do2, d3["id"])["approval_status"] == "APPROVED"
    # started by the benchmark owner: never auto-approved, even in ALWAYS; the data owner approves
    d4 = world.dataset(do2, name="fourth")
    r = bo.post("/datasets/benchmarks/", {"dataset": d4["id"], "benchmark": 1, "metadata": {}})
    assert r.json()["approval_status"] == "PENDING"
    assert bo.put(f"/datasets/{d4['id']}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 400
    assert do2.put(f"/datasets/{d4['id']}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 200
    # dataset owner == benchmark owner: approved at once, in NEVER mode
    assert bo.put("/benchmarks/1/", {"dataset_auto_approval_mode": "NEVER"}).status_code == 200
    d5 = world.dataset(bo, name="bo-data")
    assert world.associate(bo, d5["id"])["approval_status"] == "APPROVED"


def test_association_needs_approved_benchmark_operational_dataset(world):
    do = world.do
    dev = world.dataset(do, operational=False)
    r = do.post("/datasets/benchmarks/", {"dataset": dev["id"], "benchmark": 1, "metadata": {}})
    assert r.status_code == 400 and r.json() == {
        "non_field_errors": ["Association requests can be made only on an operational dataset"]}
    op = world.dataset(do, name="op")
    # a second benchmark, pending approval
    r = world.bo.post("/benchmarks/", {"name": "pending-one", "data_preparation_mlcube": 1, "reference_model": 1,
                                       "data_evaluator_mlcube": 3, **demo_fields()})
    assert r.status_code == 201 and r.json()["approval_status"] == "PENDING"
    r = do.post("/datasets/benchmarks/", {"dataset": op["id"], "benchmark": r.json()["id"], "metadata": {}})
    assert r.status_code == 400 and r.json() == {
        "non_field_errors": ["Association requests can be made only on an approved benchmark"]}
    r = do.post("/datasets/benchmarks/", {"dataset": op["id"], "benchmark": 99, "metadata": {}})
    assert r.status_code == 400 and r.json() == {"benchmark": ['Invalid pk "99" - object does not exist.']}


def test_benchmark_approval_is_admin_only(world):
    bo, admin = world.bo, world.admin
    r = bo.post("/benchmarks/", {"name": "b2", "data_preparation_mlcube": 1, "reference_model": 1,
                                 "data_evaluator_mlcube": 3, "approval_status": "APPROVED", **demo_fields()})
    assert r.status_code == 201 and r.json()["approval_status"] == "PENDING" and r.json()["approved_at"] is None
    bid = r.json()["id"]
    r = bo.post("/benchmarks/", {"name": "b3", "data_preparation_mlcube": 1, "reference_model": 1,
                                 "data_evaluator_mlcube": 3, **demo_fields()})
    assert r.status_code == 400 and r.json() == {"non_field_errors": ["User can own at most one pending benchmark"]}
    assert bo.put(f"/benchmarks/{bid}/", {"approval_status": "APPROVED"}).status_code == 403
    # any PUT carrying approval_status is admin-only, even with the unchanged value
    assert bo.put("/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 403
    r = admin.put(f"/benchmarks/{bid}/", {"approval_status": "APPROVED"})
    assert r.status_code == 200 and r.json()["approval_status"] == "APPROVED" and r.json()["approved_at"]
    # operational benchmark: components are locked
    r = bo.put("/benchmarks/1/", {"data_evaluator_mlcube": 1})
    assert r.status_code == 400 and "non_field_errors" in r.json()


def test_model_associations_priority_and_listing(world):
    bo, mo, do = world.bo, world.mo, world.do
    container = {"name": "third-c", "container_config": {"image": "x"}, "image_hash": "sha256:" + "1" * 64}
    r = mo.post("/models/", {"name": "third", "type": "CONTAINER", "state": "OPERATION", "container": container})
    assert r.status_code == 201
    third = r.json()
    assert third["container"]["id"] and third["container"]["state"] == "OPERATION"
    assert third["container"]["owner"] == third["owner"]
    r = mo.post("/models/benchmarks/", {"model": third["id"], "benchmark": 1, "metadata": {}})
    assert r.status_code == 201 and r.json()["approval_status"] == "PENDING"
    assert mo.put(f"/models/{third['id']}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 400
    assert bo.put(f"/models/{third['id']}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 200
    assert mo.put(f"/models/{third['id']}/benchmarks/1/", {"priority": 5}).status_code == 403
    r = bo.put(f"/models/{third['id']}/benchmarks/1/", {"priority": 5})
    assert r.status_code == 200 and r.json()["priority"] == 5
    listed = bo.get("/benchmarks/1/models/").json()["results"]
    assert [m["model"] for m in listed] == [third["id"], 2]  # priority desc
    # a development model cannot be associated
    dev = mo.post("/models/", {"name": "dev", "type": "CONTAINER",
                               "container": {**container, "name": "dev-c", "image_hash": "sha256:" + "2" * 64}})
    r = mo.post("/models/benchmarks/", {"model": dev.json()["id"], "benchmark": 1, "metadata": {}})
    assert r.status_code == 400
    # a data owner cannot associate someone's model
    assert do.post("/models/benchmarks/", {"model": dev.json()["id"], "benchmark": 1, "metadata": {}}).status_code == 403


def test_models_nest_their_container(world):
    mo = world.mo
    body = {"name": "m", "type": "CONTAINER", "container": {
        "name": "m-c", "container_config": {"image": "img"}, "parameters_config": {"a": 1},
        "image_hash": "sha256:" + "3" * 64, "additional_files_tarball_url": "file:///w.tar.gz",
        "additional_files_tarball_hash": "ab" * 32}}
    r = mo.post("/models/", body)
    assert r.status_code == 201
    model = r.json()
    assert model["state"] == "DEVELOPMENT" and model["asset"] is None
    got = mo.get(f"/models/{model['id']}/").json()
    assert got["container"]["id"] == model["container"]["id"]
    assert got["container"]["parameters_config"] == {"a": 1}
    assert world.do.get(f"/mlcubes/{got['container']['id']}/model/").json()["id"] == model["id"]
    # state propagates to the container; then the model is locked
    r = mo.put(f"/models/{model['id']}/", {"state": "OPERATION"})
    assert r.status_code == 200 and r.json()["container"]["state"] == "OPERATION"
    assert mo.put(f"/models/{model['id']}/", {"name": "renamed"}).status_code == 400
    # nested state must agree; name unique; duplicate container content refused
    bad = {**body, "name": "m2", "state": "OPERATION", "container": {**body["container"], "name": "x",
                                                                      "state": "DEVELOPMENT"}}
    assert mo.post("/models/", bad).status_code == 400
    r = mo.post("/models/", {**body, "name": "m3", "container": {**body["container"], "name": "y"}})
    assert r.status_code == 400 and list(r.json()) == ["container"]  # same content as m-c
    r = mo.post("/models/", {**body, "name": "m4", "container": {**body["container"], "image_hash": "sha256:7"}})
    assert r.json() == {"container": {"name": ["mlcube with this name already exists."]}}
    r = mo.post("/models/", body)
    assert r.status_code == 400 and r.json() == {"name": ["model with this name already exists."]}
    r = mo.post("/models/", {"name": "n", "type": "CONTAINER", "container": {"name": "z"}})
    assert r.status_code == 400 and r.json() == {"container": {"container_config": ["This field is required."],
                                                               "image_hash": ["This field is required."]}}


def test_result_rules(world):
    do, do2, bo = world.do, world.do2, world.bo
    world.dataset(do)
    world.associate(do, 1, approve_with=bo)
    assert world.result(do2, 1, 1).status_code == 403       # not the dataset's owner
    assert world.result(do, 1, 99).json() == {"model": ['Invalid pk "99" - object does not exist.']}
    r = world.result(do, 1, 2)
    assert r.status_code == 201
    rid = r.json()["id"]
    r = do.put(f"/results/{rid}/", {"model": 1})  # read-only in MedPerf's detail serializer: ignored
    assert r.status_code == 200 and r.json()["model"] == 2
    # the model association decides too: revoke model 2 and a new result is refused
    assert bo.post("/models/benchmarks/", {"model": 2, "benchmark": 1, "approval_status": "REJECTED",
                                           "metadata": {}}).status_code == 201
    assert world.result(do, 1, 2).json() == {"non_field_errors": ["Model-Benchmark association must be approved"]}
    # missing ids answer 403 to non-admins (permission looks the object up first), 404 to admins
    assert do.get("/results/999/").status_code == 403
    assert world.admin.get("/results/999/").status_code == 404
    assert do.put("/datasets/999/", {}).status_code == 403
    assert world.admin.put("/datasets/999/", {}).status_code == 404
    assert do.get("/datasets/999/").status_code == 404


def test_containers_rules(world):
    bo, mo = world.bo, world.mo
    base = {"name": "c", "container_config": {"image": "i"}, "image_hash": "sha256:" + "4" * 64}
    r = mo.post("/mlcubes/", {**base, "additional_files_tarball_url": "file:///x.tar.gz"})
    assert r.status_code == 400 and "non_field_errors" in r.json()  # url without hash
    assert mo.post("/mlcubes/", {**base, "image_hash": ""}).json() == {"image_hash": ["This field may not be blank."]}
    c = mo.post("/mlcubes/", base).json()
    assert mo.post("/mlcubes/", base).json() == {"name": ["mlcube with this name already exists."]}
    assert bo.put(f"/mlcubes/{c['id']}/", {"user_metadata": {}}).status_code == 403
    assert mo.put(f"/mlcubes/{c['id']}/", {"state": "OPERATION"}).json()["state"] == "OPERATION"
    assert mo.put(f"/mlcubes/{c['id']}/", {"image_hash": "sha256:" + "5" * 64}).status_code == 400
    r = mo.put(f"/mlcubes/{c['id']}/", {"is_valid": False, "image_hash": base["image_hash"]})
    assert r.status_code == 200 and r.json()["is_valid"] is False
    assert mo.get("/me/mlcubes/").json()["count"] == 2  # the second model's container and this one


def test_benchmark_components_and_model_lists(world):
    bo, mo = world.bo, world.mo
    dev = bo.post("/mlcubes/", {"name": "dev-metrics", "container_config": {"x": 1}, "image_hash": "sha256:9"}).json()
    r = bo.post("/benchmarks/", {"name": "b2", "data_preparation_mlcube": 1, "reference_model": 1,
                                 "data_evaluator_mlcube": dev["id"], "state": "OPERATION", **demo_fields()})
    assert r.status_code == 400 and r.json() == {
        "non_field_errors": ["Benchmark cannot be in OPERATION while any of its components is in DEVELOPMENT"]}
    r = bo.post("/benchmarks/", {"name": "b2", "data_preparation_mlcube": 1, "reference_model": 1,
                                 "data_evaluator_mlcube": dev["id"], **demo_fields()})
    assert r.status_code == 201
    assert bo.put(f"/benchmarks/{r.json()['id']}/", {"state": "OPERATION"}).status_code == 400
    assert mo.get("/me/models/associations/").json()["count"] == 1
    assert mo.get("/models/2/benchmarks/").json()["results"][0]["approval_status"] == "APPROVED"
    assert world.do.get("/models/2/benchmarks/").status_code == 403
    assert bo.get("/me/models/associations/").json()["count"] == 1
    assert world.do.get("/users/99/").status_code == 404
    assert world.do.get("/users/4/").json()["email"] == "testdo@example.com"


def test_model_allowlist_and_benchmark_owner_initiated_model_association(world):
    bo, mo = world.bo, world.mo
    container = {"container_config": {"image": "x"}}

    def model(name, n):
        return mo.post("/models/", {"name": name, "type": "CONTAINER", "state": "OPERATION", "container": {
            **container, "name": name + "-c", "image_hash": "sha256:" + str(n) * 64}}).json()["id"]

    assert bo.put("/benchmarks/1/", {"model_auto_approval_mode": "ALLOWLIST",
                                     "model_auto_approval_allow_list": ["testmo@example.com"]}).status_code == 200
    m = model("allowed", 6)
    r = mo.post("/models/benchmarks/", {"model": m, "benchmark": 1, "metadata": {}})
    assert r.json()["approval_status"] == "APPROVED"
    m2 = model("invited", 7)
    r = bo.post("/models/benchmarks/", {"model": m2, "benchmark": 1, "metadata": {}})
    assert r.json()["approval_status"] == "PENDING"  # started by the benchmark owner: the model owner approves
    assert bo.put(f"/models/{m2}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 400
    assert mo.put(f"/models/{m2}/benchmarks/1/", {"approval_status": "APPROVED"}).status_code == 200


def test_admin_deletes_a_dataset(world):
    ds = world.dataset(world.do)
    world.associate(world.do, ds["id"])
    assert world.do.delete(f"/datasets/{ds['id']}/").status_code == 403
    assert world.admin.delete(f"/datasets/{ds['id']}/").status_code == 204
    assert world.do.get(f"/datasets/{ds['id']}/").status_code == 404
