"""A converged tutorial moved to an empty state dir (a re-provisioned CI runner, another machine), with a new model
added to the benchmark meanwhile: apply prepares the local copy again (checked against the registered
generated_uid), runs only the new model and submits its result; no record is made twice. Real registry, real
engine."""

from __future__ import annotations

import pytest
import requests

from tests.support.server import TESTBO, TESTMO
from tests.trust.conftest import manifest_text, no_traceback, require_images
from tests.trust.test_crash_resume import _check_invariants

pytestmark = [pytest.mark.docker, pytest.mark.slow]

READ_ONLY = ("id", "owner", "created_at", "modified_at", "is_valid", "state", "user_metadata")


def _add_model(registry, name: str) -> int:
    """A third model (the second model's container under a new name), associated and approved."""
    mo, bo = registry.headers(TESTMO), registry.headers(TESTBO)
    second = requests.get(f"{registry.api}/models/2/", headers=mo, timeout=10).json()
    container = {k: v for k, v in second["container"].items() if k not in READ_ONLY}
    container["name"] = name
    container["parameters_config"] = {**(container.get("parameters_config") or {}), "variant": 2}  # MedPerf:
    # two containers may not share image, files, config and parameters
    model = requests.post(f"{registry.api}/models/", headers=mo, timeout=10, json={
        "name": name, "type": "CONTAINER", "state": "OPERATION", "container": {**container, "state": "OPERATION"}})
    assert model.status_code == 201, model.text
    mid = model.json()["id"]
    r = requests.post(f"{registry.api}/models/benchmarks/", headers=mo, timeout=10,
                      json={"model": mid, "benchmark": 1, "approval_status": "PENDING", "metadata": {}})
    assert r.status_code == 201, r.text
    r = requests.put(f"{registry.api}/models/{mid}/benchmarks/1/", headers=bo, timeout=10,
                     json={"approval_status": "APPROVED"})
    assert r.status_code == 200, r.text
    return mid


def test_a_new_state_dir_and_a_new_model_converge_with_a_local_copy(trial_factory, registry):
    require_images()
    trial = trial_factory(None, cases=16, text=manifest_text(benchmarks=True))
    assert trial.run("apply").code == 3
    ds_id = trial.srv_datasets()[0]["id"]
    r = requests.put(f"{registry.api}/datasets/{ds_id}/benchmarks/1/", json={"approval_status": "APPROVED"},
                     headers=registry.headers(TESTBO), timeout=10)
    assert r.status_code == 200, r.text
    assert trial.run("apply").code == 0
    with trial.db() as conn:
        before = conn.execute("SELECT count(*) FROM results").fetchone()[0]

    trial.state_dir = trial.root / "state-on-a-new-runner"
    mid = _add_model(registry, "chestxray_linear_v2")
    plan = trial.run("plan")
    assert plan.code == 2, plan.out + plan.err
    assert "+ prepare (local copy)" in plan.out and f"+ run model {mid}" in plan.out
    r = trial.run("apply")
    assert r.code == 0, r.out + r.err
    assert no_traceback(r.out + r.err)
    with trial.db() as conn:
        rows = conn.execute("SELECT model, finalized FROM results ORDER BY id").fetchall()
    assert len(rows) == before + 1  # only the new model's record
    assert (mid, 1) in [(m, int(f)) for m, f in rows] and all(int(f) == 1 for _, f in rows)
    (ds,) = trial.srv_datasets()
    assert ds["report"]["execution_status"] != "started"  # the local copy sent no preparation report
    assert trial.run("plan").code == 0
    _check_invariants(trial, "local copy")
