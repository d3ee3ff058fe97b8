"""A registered field the manifest changed is shown as `~ field: old -> new`: a step that sends exactly that field
while MedPerf lets it change (a DEVELOPMENT dataset), a note once the dataset is operational (locked there)."""

from __future__ import annotations

import json


def _registered_only(ws):
    ws.manifest.write_text(ws.manifest.read_text().replace("state: operational", "state: registered"))
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.err
    return next(iter(ws.api.world["datasets"].values()))


def test_a_changed_description_of_a_development_dataset_is_updated_alone(ws):
    ds = _registered_only(ws)
    ws.manifest.write_text(ws.manifest.read_text().replace("A tutorial dataset", "Chest X-rays, ward 7"))
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2
    line = next(x for x in r.out.splitlines() if "update" in x)
    assert line.lstrip().startswith("~ update")
    assert "description: 'A tutorial dataset' -> 'Chest X-rays, ward 7'" in line and "sends: description" in line
    before = len(ws.api.sent())
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.err
    sent = ws.api.sent()[before:]
    assert sent == [("PUT", f"datasets/{ds['id']}/", {"description": "Chest X-rays, ward 7"})]
    assert ws.api.world["datasets"][ds["id"]]["description"] == "Chest X-rays, ward 7"
    assert ws.run("plan", str(ws.manifest)).code == 0


def test_a_changed_location_of_an_operational_dataset_is_a_note_not_a_change(ws):
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.err
    ws.manifest.write_text(ws.manifest.read_text().replace("My machine", "Ward 7"))
    r = ws.run("plan", str(ws.manifest), "--output", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["has_changes"] is False
    assert any("operational" in n["text"] and "'My machine' -> 'Ward 7'" in n["text"] for n in doc["notes"])
    before = len(ws.api.sent())
    assert ws.run("apply", str(ws.manifest), "--yes").code == 0
    assert ws.api.sent()[before:] == []


def test_an_update_runs_before_the_dataset_becomes_operational(ws):
    _registered_only(ws)
    ws.manifest.write_text(ws.manifest.read_text().replace("state: registered", "state: operational")
                           .replace("My machine", "Ward 7"))
    r = ws.run("plan", str(ws.manifest), "--output", "json")
    steps = json.loads(r.out)["steps"]
    keys = [s["key"] for s in steps]
    assert keys.index("dataset/mytestdata/update") < keys.index("dataset/mytestdata/set_operational")
    assert "dataset/mytestdata/update" in steps[keys.index("dataset/mytestdata/set_operational")]["after"]
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.err
    ds = next(iter(ws.api.world["datasets"].values()))
    assert ds["location"] == "Ward 7" and ds["state"] == "OPERATION"
