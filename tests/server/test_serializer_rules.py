"""MedPerf's serializer rules, field by field, for what the three flows send (data owner, benchmark owner, model
owner): required, blank (whitespace is blank: DRF strips text), lengths, null, and read-only fields ignored rather
than refused, in a POST and in a PUT. One row per rule; the expected answer is MedPerf's (DRF's messages)."""

from __future__ import annotations

import pytest

from server.seed import demo_fields

MISSING = object()
REQUIRED = ["This field is required."]
BLANK = ["This field may not be blank."]
NULL = ["This field may not be null."]


def longer(n: int) -> list[str]:
    return [f"Ensure this field has no more than {n} characters."]


def _dataset():
    return {"name": "mytestdata", "description": "A tutorial dataset", "location": "My machine",
            "input_data_hash": "a" * 64, "generated_uid": "a" * 64, "data_preparation_mlcube": 1, "split_seed": 0,
            "submitted_as_prepared": False, "for_test": False, "generated_metadata": {}, "user_metadata": {}}


def _mlcube():
    return {"name": "new-cube", "container_config": {"image": "x/y:1", "tasks": {}}, "parameters_config": None,
            "image_hash": "sha256:" + "c" * 64, "additional_files_tarball_url": "",
            "additional_files_tarball_hash": ""}


def _benchmark():
    return {"name": "b2", "description": "d", "docs_url": "", "data_preparation_mlcube": 1, "reference_model": 1,
            "data_evaluator_mlcube": 3, **demo_fields()}


def _model():
    return {"name": "new-model", "type": "CONTAINER", "container": _mlcube()}


def _result():
    return {"name": "b1m1d1", "benchmark": 1, "model": 1, "dataset": None, "results": {}, "metadata": {},
            "user_metadata": {}, "model_report": {}, "evaluation_report": {}}


def _association():
    return {"dataset": None, "benchmark": 1, "approval_status": "PENDING", "metadata": {"test_result": {}}}


# (flow, actor, method, path, body, field, value) -> (status, errors or the stored value)
POSTS = {
    "dataset": ("do", "/datasets/", _dataset),
    "mlcube": ("bo", "/mlcubes/", _mlcube),
    "benchmark": ("bo", "/benchmarks/", _benchmark),
    "model": ("mo", "/models/", _model),
    "result": ("do", "/results/", _result),
    "association": ("do", "/datasets/benchmarks/", _association),
}

RULES = [
    # the data owner: POST /datasets/
    ("dataset", "name", MISSING, 400, REQUIRED), ("dataset", "name", "", 400, BLANK),
    ("dataset", "name", "  \t", 400, BLANK), ("dataset", "name", "n" * 129, 400, longer(128)),
    ("dataset", "name", None, 400, NULL), ("dataset", "name", "  padded  ", 201, "padded"),
    ("dataset", "description", "", 201, ""), ("dataset", "description", MISSING, 201, ""),
    ("dataset", "description", "d" * 257, 400, longer(256)),
    ("dataset", "location", "", 201, ""), ("dataset", "location", "l" * 129, 400, longer(128)),
    ("dataset", "input_data_hash", MISSING, 400, REQUIRED), ("dataset", "input_data_hash", "", 400, BLANK),
    ("dataset", "input_data_hash", "h" * 129, 400, longer(128)),
    ("dataset", "generated_uid", MISSING, 400, REQUIRED), ("dataset", "generated_uid", " ", 400, BLANK),
    ("dataset", "generated_uid", "h" * 129, 400, longer(128)),
    ("dataset", "split_seed", MISSING, 400, REQUIRED),
    ("dataset", "data_preparation_mlcube", MISSING, 400, REQUIRED),
    ("dataset", "submitted_as_prepared", MISSING, 400, REQUIRED),
    ("dataset", "submitted_as_prepared", True, 201, True),
    ("dataset", "state", "OPERATION", 201, "DEVELOPMENT"),  # read-only at creation: ignored
    ("dataset", "owner", 1, 201, "caller"), ("dataset", "id", 77, 201, "new"),
    # the benchmark owner: POST /mlcubes/, POST /benchmarks/
    ("mlcube", "name", MISSING, 400, REQUIRED), ("mlcube", "name", "", 400, BLANK),
    ("mlcube", "name", "n" * 129, 400, longer(128)),
    ("mlcube", "container_config", MISSING, 400, REQUIRED),
    ("mlcube", "image_hash", MISSING, 400, REQUIRED), ("mlcube", "image_hash", "", 400, BLANK),
    ("mlcube", "image_hash", "h" * 101, 400, longer(100)),
    ("mlcube", "additional_files_tarball_url", "u" * 257, 400, longer(256)),
    ("mlcube", "additional_files_tarball_hash", "h" * 101, 400, longer(100)),
    ("mlcube", "owner", 1, 201, "caller"),
    ("benchmark", "name", MISSING, 400, REQUIRED), ("benchmark", "name", "", 400, BLANK),
    ("benchmark", "name", "n" * 129, 400, longer(128)),
    ("benchmark", "description", "", 201, ""), ("benchmark", "description", "d" * 257, 400, longer(256)),
    ("benchmark", "docs_url", "u" * 101, 400, longer(100)),
    ("benchmark", "demo_dataset_tarball_url", MISSING, 400, REQUIRED),
    ("benchmark", "demo_dataset_tarball_url", "", 400, BLANK),
    ("benchmark", "demo_dataset_tarball_url", "u" * 257, 400, longer(256)),
    ("benchmark", "demo_dataset_tarball_hash", MISSING, 400, REQUIRED),
    ("benchmark", "demo_dataset_tarball_hash", "", 400, BLANK),
    ("benchmark", "demo_dataset_tarball_hash", "h" * 101, 400, longer(100)),
    ("benchmark", "demo_dataset_generated_uid", MISSING, 400, REQUIRED),
    ("benchmark", "demo_dataset_generated_uid", "  ", 400, BLANK),
    ("benchmark", "demo_dataset_generated_uid", "h" * 129, 400, longer(128)),
    ("benchmark", "data_preparation_mlcube", MISSING, 400, REQUIRED),
    ("benchmark", "reference_model", MISSING, 400, REQUIRED),
    ("benchmark", "data_evaluator_mlcube", MISSING, 400, REQUIRED),
    ("benchmark", "approval_status", "APPROVED", 201, "PENDING"),  # read-only for its owner: ignored
    ("benchmark", "owner", 1, 201, "caller"),
    # the model owner: POST /models/ with its container nested
    ("model", "name", MISSING, 400, REQUIRED), ("model", "name", "", 400, BLANK),
    ("model", "name", "n" * 129, 400, longer(128)),
    ("model", "container.image_hash", "", 400, {"image_hash": BLANK}),
    ("model", "container.name", "n" * 129, 400, {"name": longer(128)}),
    # the data owner's result record and association request
    ("result", "name", "", 201, ""), ("result", "name", "n" * 129, 400, longer(128)),
    ("result", "benchmark", MISSING, 400, REQUIRED), ("result", "model", MISSING, 400, REQUIRED),
    ("result", "finalized", True, 201, False), ("result", "owner", 1, 201, "caller"),
    ("association", "metadata", MISSING, 400, REQUIRED),
    ("association", "initiated_by", 1, 201, "caller"),
]


def _ids(rule) -> str:
    flow, field, value, status, _ = rule
    shown = "missing" if value is MISSING else (repr(value) if not isinstance(value, str) or len(value) < 12
                                                 else f"{len(value)} chars")
    return f"POST {flow} {field}={shown}"


def _body(world, flow: str) -> dict:
    body = POSTS[flow][2]()
    if flow in ("result", "association"):
        body["dataset"] = world.dataset(world.do)["id"]
    return body


def _set(body: dict, field: str, value) -> None:
    *parents, leaf = field.split(".")
    for p in parents:
        body = body[p]
    if value is MISSING:
        body.pop(leaf, None)
    else:
        body[leaf] = value


@pytest.mark.parametrize("rule", RULES, ids=[_ids(r) for r in RULES])
def test_post_rule(world, rule):
    flow, field, value, status, expected = rule
    actor, path, _ = POSTS[flow]
    client = world.client(actor)
    body = _body(world, flow)
    _set(body, field, value)
    r = client.post(path, body)
    assert r.status_code == status, r.text
    answer = r.json()
    if status == 400:
        top, *rest = field.split(".")
        assert answer == {top: expected}, answer
        return
    leaf = field.split(".")[-1]
    if expected == "caller":
        me = client.get("/me/").json()["id"]
        stored = answer.get("initiated_by", answer.get("owner"))
        assert stored == me and stored != value
    elif expected == "new":
        assert answer["id"] != value
    else:
        assert answer[leaf] == expected


# PUT: partial (nothing is required), but blank and lengths hold, and read-only fields are ignored, not refused
PUT_RULES = [
    ("dataset", "name", "", 400, BLANK), ("dataset", "name", "n" * 129, 400, longer(128)),
    ("dataset", "name", " renamed ", 200, "renamed"), ("dataset", "owner", 1, 200, "unchanged"),
    ("dataset", "generated_uid", "", 400, BLANK),
    ("result", "benchmark", 9, 200, "unchanged"), ("result", "model", 2, 200, "unchanged"),
    ("result", "dataset", 9, 200, "unchanged"), ("result", "finalized", True, 200, "unchanged"),
    ("result", "name", "n" * 129, 400, longer(128)),
    ("mlcube", "image_hash", "", 400, BLANK), ("mlcube", "owner", 4, 200, "unchanged"),
    ("benchmark", "demo_dataset_tarball_hash", "", 400, BLANK), ("benchmark", "owner", 4, 200, "unchanged"),
]


def _record(world, flow: str) -> tuple[object, str, dict]:
    """A record of `flow` the actor owns, in a state where MedPerf lets it change: (client, path, record)."""
    if flow == "dataset":
        ds = world.dataset(world.do, operational=False)
        return world.do, f"/datasets/{ds['id']}/", ds
    if flow == "result":
        r = world.result(world.do, world.dataset(world.do)["id"], 1).json()
        return world.do, f"/results/{r['id']}/", r
    body = POSTS[flow][2]()
    r = world.bo.post(POSTS[flow][1], body)
    assert r.status_code == 201, r.text
    return world.bo, f"{POSTS[flow][1]}{r.json()['id']}/", r.json()


@pytest.mark.parametrize("rule", PUT_RULES, ids=[_ids(r).replace("POST", "PUT") for r in PUT_RULES])
def test_put_rule(world, rule):
    flow, field, value, status, expected = rule
    client, path, before = _record(world, flow)
    r = client.put(path, {field: value})
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json() == {field: expected}
    elif expected == "unchanged":
        assert r.json()[field] == before[field] and client.get(path).json()[field] == before[field]
    else:
        assert r.json()[field] == expected
