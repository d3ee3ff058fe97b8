"""Golden cases of the benchmark owner's planner: tests/cases/owner-plan/*.yaml (a BenchmarkOwner manifest's
benchmarks + the requests observed -> steps, notes, or an error), and the printed plan pinned once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner import errors
from runner.load import parse
from runner.model import DatasetInfo, OwnerObservation, Plan, RemoteBenchmark, latest_associations
from runner.plan import owner_plan
from runner.report.owner import owner_plan_text
from runner.validate import build_owner, schema_problems

CASES = sorted((Path(__file__).parents[1] / "cases" / "owner-plan").glob("*.yaml"))
ME = 2  # the benchmark owner of the fake registry's world
BENCHMARKS = [{"id": 1, "name": "chestxray", "data_preparation_mlcube": 2, "reference_model": 1,
               "data_evaluator_mlcube": 4, "owner": ME},
              {"id": 2, "name": "second", "data_preparation_mlcube": 2, "reference_model": 1,
               "data_evaluator_mlcube": 4, "owner": ME}]
DATASETS = [{"id": 3, "name": "mytestdata", "owner": 5}, {"id": 4, "name": "other", "owner": 6},
            {"id": 5, "name": "third", "owner": 6}]


def build_case(case: dict, folder: Path):
    doc = {"apiVersion": "medperf-apply/v1", "kind": "BenchmarkOwner",
           "server": {"url": "http://registry.test:8000", "token_env": "MEDPERF_TOKEN"}, "benchmarks": case["manifest"]}
    path = folder / "owner.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    docs = parse(text, str(path))
    assert schema_problems(docs) == [], "the case's manifest must be schema-valid"
    rows = [{"benchmark": 1, "created_at": "2026-11-20T10:00:00Z", **a} for a in case.get("associations", [])]
    obs = OwnerObservation(
        server_url="http://registry.test:8000", me=ME,
        benchmarks=tuple(RemoteBenchmark.from_record(b) for b in BENCHMARKS),
        associations=latest_associations(rows),
        datasets={d["id"]: DatasetInfo.from_record(d) for d in DATASETS + case.get("datasets", [])})
    return build_owner(docs), obs


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_golden_owner_plan_case(case_path, tmp_path):
    case = yaml.safe_load(case_path.read_text())
    manifest, obs = build_case(case, tmp_path)
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(getattr(errors, expect["error"])) as info:
            owner_plan(manifest, obs)
        assert type(info.value).__name__ == expect["error"]
        for text in expect.get("error_contains", []):
            assert text in str(info.value), str(info.value)
        return
    plan = owner_plan(manifest, obs)
    assert [f"{s.change.value} {s.key}" for s in plan.steps] == expect["steps"]
    steps = {s.key: s for s in plan.steps}
    for key, text in (expect.get("reasons") or {}).items():
        assert text in steps[key].reason, (key, steps[key].reason)
    for key, endpoint in (expect.get("endpoints") or {}).items():
        assert steps[key].endpoint == endpoint
    for key, fields in (expect.get("sends") or {}).items():
        assert list(steps[key].sends) == fields
    for key, args in (expect.get("args") or {}).items():
        assert {k: steps[key].args.to_dict()[k] for k in args} == args
    for key, text in (expect.get("details") or {}).items():
        assert steps[key].detail == text
    if "notes" in expect:
        texts = [n.text for n in plan.notes]
        assert len(texts) == len(expect["notes"]), texts
        for want, got in zip(expect["notes"], texts, strict=True):
            assert want in got, (want, got)
    assert plan.has_changes is expect["has_changes"]
    again = Plan.from_dict(plan.to_dict())  # a saved plan reads back the same steps
    assert [s.to_dict() for s in again.steps] == [s.to_dict() for s in plan.steps]


def test_the_printed_owner_plan(tmp_path):
    case = yaml.safe_load((CASES[0].parent / "pending-approved.yaml").read_text())
    case["manifest"][0]["datasets"].append({"dataset": "nowhere", "association": "approved"})
    manifest, obs = build_case(case, tmp_path)
    assert owner_plan_text(owner_plan(manifest, obs)) == (
        "benchmark chestxray\n"
        "  + approve dataset mytestdata (3)  PUT /datasets/3/benchmarks/1/   sends: approval_status   "
        "(compatibility test: AUC 0.8125, Accuracy 0.75)\n"
        "  ? approve dataset nowhere         no dataset named 'nowhere' on the server yet: approved once its data "
        "owner requests it\n"
        "Plan: 1 to do, 0 already done, 1 waits on a gate.\n")
