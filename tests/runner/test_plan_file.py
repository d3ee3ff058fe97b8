"""Saved plans carry typed step arguments under format_version 2: they round-trip exactly, and a file of an older
format or with arguments this version does not know is refused (exit 1), never misread."""

from __future__ import annotations

import json

from runner.model import PLAN_FORMAT_VERSION, Plan, RunModelArgs, SubmitArgs


def test_a_saved_plan_round_trips_its_typed_arguments(ws):
    plan_file = ws.root / "plan.json"
    r = ws.run("plan", str(ws.manifest), "-o", str(plan_file))
    assert r.code == 2, r.err
    doc = json.loads(plan_file.read_text())
    assert doc["format_version"] == PLAN_FORMAT_VERSION == 2
    plan = Plan.from_dict(doc)
    assert plan.to_dict() == doc
    register = plan.step("dataset/mytestdata/register")
    assert register.args.data_preparation_mlcube == 2 and len(register.args.input_data_hash) == 64


def test_an_old_plan_file_is_refused_with_a_clear_message_and_nothing_is_sent(ws):
    plan_file = ws.root / "plan.json"
    ws.run("plan", str(ws.manifest), "-o", str(plan_file))
    doc = json.loads(plan_file.read_text())
    doc["format_version"] = 1
    for step in doc["steps"]:  # as version 1 wrote them: an untyped dict
        step["args"] = {**step["args"], "tasks": ["prepare"]} if step["action"] == "prepare" else step["args"]
    plan_file.write_text(json.dumps(doc))
    r = ws.run("apply", str(ws.manifest), str(plan_file))
    assert r.code == 1
    assert "format_version 1" in r.err and "plan ... -o FILE" in r.err and "Traceback" not in r.err
    assert ws.api.sent() == []


def test_a_plan_file_with_unknown_arguments_is_refused(ws):
    plan_file = ws.root / "plan.json"
    ws.run("plan", str(ws.manifest), "-o", str(plan_file))
    doc = json.loads(plan_file.read_text())
    doc["steps"][0]["args"]["dataset_idd"] = 3
    plan_file.write_text(json.dumps(doc))
    r = ws.run("apply", str(ws.manifest), str(plan_file))
    assert r.code == 1 and "damaged" in r.err and "dataset_idd" in r.err
    assert ws.api.sent() == []


def test_typed_arguments_hold_lists_as_tuples_and_write_them_as_lists():
    args = SubmitArgs.from_dict({"dataset_id": 3, "benchmark_id": 1, "models": [2, 1], "more": True})
    assert args.models == (2, 1) and args.to_dict()["models"] == [2, 1]
    assert RunModelArgs.from_dict(RunModelArgs(3, 1, model=2).to_dict()) == RunModelArgs(3, 1, model=2)
