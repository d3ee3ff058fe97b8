"""`prepared: true`: data prepared beforehand (MedPerf's submitted_as_prepared) is registered as such, copied into
the state dir instead of prepared, checked by sanity_check and statistics, and made operational with MedPerf's
hashes for that case; no preparation status is sent. (The real engine and registry: test_as_prepared_e2e.py.)"""

from __future__ import annotations

import json

from runner.hashing import folders_hash
from tests.runner.test_local_copy import _converged
from tests.runner.test_participation import _add_model


def _prepared(ws) -> None:
    """The workspace's folders hold prepared data (as the example preparation writes it), declared so."""
    for f in list(ws.images.iterdir()):
        f.rename(f.with_suffix(".npy"))
    ws.manifest.write_text(ws.manifest.read_text().replace("    state: operational\n",
                                                           "    state: operational\n    prepared: true\n"))


def test_registered_as_prepared_copied_checked_and_operational_with_medperfs_hashes(ws):
    _prepared(ws)
    given = folders_hash([ws.images, ws.labels])
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2, r.err
    assert "submitted_as_prepared=true" in r.out and "(the folders hold prepared data)" in r.out
    assert "copy the prepared folders, then chestxray_prep: sanity_check, statistics   (local only; nothing sent)" \
        in r.out

    r = ws.run("apply", "--yes", str(ws.manifest))
    assert r.code == 0, r.out + r.err
    assert ws.runner.tasks_run() == ["sanity_check", "statistics"]  # never prepare
    (post,) = [body for method, path, body in ws.api.sent() if method == "POST"]
    assert post["submitted_as_prepared"] is True
    assert post["input_data_hash"] == post["generated_uid"] == given
    puts = [(path, body) for method, path, body in ws.api.sent() if method == "PUT"]
    assert [sorted(body) for _, body in puts] == [["generated_metadata", "generated_uid", "input_data_hash", "state"]]
    (_, operational), = puts
    assert operational["input_data_hash"] == operational["generated_uid"] == given  # the copy is the given data
    (ds_id,) = ws.api.world["datasets"]
    copy = ws.state_dir / "datasets" / str(ds_id)
    assert sorted(p.name for p in (copy / "data").iterdir()) == sorted(p.name for p in ws.images.iterdir())
    assert folders_hash([copy / "data", copy / "labels"]) == given
    checks = dict(ws.runner.runs)
    assert checks["sanity_check"]["data_path"] == copy / "data"  # the checks read the copy, as MedPerf's do

    assert ws.run("plan", str(ws.manifest)).code == 0  # converged


def test_flipping_prepared_on_a_registered_dataset_stops_the_plan(ws):
    assert ws.run("apply", "--yes", str(ws.manifest)).code == 0  # registered from raw data
    ws.manifest.write_text(ws.manifest.read_text().replace("    state: operational\n",
                                                           "    state: operational\n    prepared: true\n"))
    r = ws.run("plan", str(ws.manifest), "--output", "json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert "registered as raw data (submitted_as_prepared false)" in doc["error"] and \
        "prepared: true" in doc["error"]


def test_a_new_machine_copies_the_prepared_data_again_checks_it_then_runs_the_new_model(ws):
    _prepared(ws)
    ds = _converged(ws)
    ws.state_dir = ws.root / "new-machine-state"  # no local copy
    _add_model(ws, 7, "medperf-apply/chestxray-linear:latest")
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2
    assert "+ prepare (local copy)  copy the prepared folders, then chestxray_prep: sanity_check, statistics" in r.out
    before, tasks_before = len(ws.api.sent()), len(ws.runner.tasks_run())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert ws.runner.tasks_run()[tasks_before:] == ["sanity_check", "statistics", "infer", "evaluate"]
    assert not [p for m, p, b in ws.api.sent()[before:] if p == f"datasets/{ds['id']}/"]  # nothing about the dataset
    copy = ws.state_dir / "datasets" / str(ds["id"])
    assert folders_hash([copy / "data", copy / "labels"]) == ds["generated_uid"]
