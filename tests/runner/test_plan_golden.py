"""Golden planner cases: tests/cases/plan/*.yaml (manifest + observation -> steps or error)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from runner import errors
from runner.load import parse
from runner.model import (
    Change,
    LocalDataset,
    LocalResult,
    Observation,
    RemoteBenchmark,
    RemoteContainer,
    RemoteDataset,
    approved_models,
    latest_associations,
    latest_results,
)
from runner.plan import plan
from runner.validate import build, schema_problems
from tests.runner.fakes import tutorial_world

CASES = sorted((Path(__file__).parents[1] / "cases" / "plan").glob("*.yaml"))
RAW = "1" * 64
OTHER = "2" * 64

BASE_DATASET = {
    "name": "mytestdata", "description": "A tutorial dataset", "location": "My machine",
    "data_path": "raw/images", "labels_path": "raw/labels", "prepare_with": {"benchmark": "chestxray"},
    "state": "operational", "consent": {"statistics": True},
}


def _subst(value):
    if isinstance(value, str):
        return value.replace("$RAW", RAW).replace("$OTHER", OTHER)
    if isinstance(value, list):
        return [_subst(v) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v) for k, v in value.items()}
    return value


def build_case(case: dict, folder: Path):
    datasets = [{**BASE_DATASET, **d} for d in case.get("datasets", [{}])]
    doc = {"apiVersion": "medperf-apply/v1", "kind": "DataOwner",
           "server": {"url": "http://registry.test:8000", "token_env": "MEDPERF_TOKEN"}, "datasets": datasets}
    path = folder / "manifest.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    docs = parse(text, str(path))
    assert schema_problems(docs) == [], "the case's manifest must be schema-valid"
    manifest = build(docs)

    world = tutorial_world()
    world["benchmarks"][1].update(case.get("benchmark") or {})
    for cid in case.get("containers_invalid", []):
        world["mlcubes"][cid]["is_valid"] = False
    refs = {}
    for d in manifest.datasets:
        for ref in [d.prepare_with] + [type(d.prepare_with)("benchmark", b.benchmark) for b in d.benchmarks]:
            if ref.kind == "benchmark":
                rec = next((b for b in world["benchmarks"].values() if ref.value in (b["id"], b["name"])), None)
                refs[ref.key] = RemoteBenchmark.from_record(rec) if rec else None
            else:
                rec = world["mlcubes"].get(ref.value)
                refs[ref.key] = RemoteContainer.from_record(rec) if rec else None
    refs.update({k: None for k, v in (case.get("refs") or {}).items() if v is None})
    mine = []
    for r in case.get("server_datasets", []):
        rec = {"owner": 5, "state": "DEVELOPMENT", "data_preparation_mlcube": 2, "input_data_hash": RAW,
               "generated_uid": RAW, "modified_at": "t1", "description": BASE_DATASET["description"],
               "location": BASE_DATASET["location"], **r}  # as register sent them
        mine.append(RemoteDataset.from_record(rec))
    obs = Observation(
        server_url="http://registry.test:8000", my_datasets=tuple(mine), refs=refs,
        containers={i: RemoteContainer.from_record(c) for i, c in world["mlcubes"].items()},
        raw_hashes={d.name: RAW for d in manifest.datasets},
        local={int(i): LocalDataset(id=int(i), **v) for i, v in (case.get("local") or {}).items()},
        unfinished=tuple({"id": f"e{n}", "step": k} for n, k in enumerate(case.get("unfinished", []))),
        associations=latest_associations([{"benchmark": 1, "created_at": "2026-11-20T10:00:00Z", **a}
                                          for a in case.get("associations", [])]),
        results=latest_results([{"benchmark": 1, "dataset": 3, "name": "", "created_at": f"t{r['id']}", **r}
                                for r in case.get("results", [])]),
        benchmark_models={int(k): (None if v is None else approved_models(v))
                          for k, v in (case.get("benchmark_models") or {}).items()},
        model_names=dict(case.get("model_names") or {}),
        local_results={int(i): LocalResult(id=int(i), **v) for i, v in (case.get("local_results") or {}).items()},
    )
    return manifest, obs


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_golden_plan_case(case_path, tmp_path):
    case = _subst(yaml.safe_load(case_path.read_text()))
    manifest, obs = build_case(case, tmp_path)
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(getattr(errors, expect["error"])) as info:
            plan(manifest, copy.deepcopy(obs), interactive=case.get("interactive", False),
                 request_again=case.get("request_again", False))
        assert type(info.value).__name__ == expect["error"]
        for text in expect.get("error_contains", []):
            assert text in str(info.value)
        return
    result = plan(manifest, obs, interactive=case.get("interactive", False),
                  request_again=case.get("request_again", False))
    assert [f"{s.change.value} {s.key}" for s in result.steps] == expect["steps"]
    for key, text in (expect.get("reasons") or {}).items():
        step = next(s for s in result.steps if s.key == key)
        assert text in step.reason, (key, step.reason)
    for key, fields in (expect.get("sends") or {}).items():
        assert list(next(s for s in result.steps if s.key == key).sends) == fields
    for key, args in (expect.get("args") or {}).items():
        step = next(s for s in result.steps if s.key == key)
        assert {k: step.args.to_dict().get(k) for k in args} == args
    if "consent" in expect:
        assert {s.key: s.consent for s in result.steps if s.consent} == expect["consent"]
    if "has_changes" in expect:
        assert result.has_changes is expect["has_changes"]
    if "notes" in expect:
        notes = [n.text for n in result.notes]
        if not expect["notes"]:
            assert notes == []
        for text in expect["notes"]:
            assert any(text in n for n in notes), (text, notes)


def test_every_case_is_distinct_and_covers_the_issue():
    names = {p.stem for p in CASES}
    for required in ("nothing-exists", "registered", "prepared", "operational", "asks-less-than-exists", "drift",
                     "unknown-benchmark", "consent-missing-no-terminal", "consent-missing-terminal",
                     "prepare-failed-half-way", "association-pending", "association-approved",
                     "association-rejected", "auto-approved", "cached", "partial", "finalized",
                     "skip-compatibility-tests", "models-list-not-in-benchmark"):
        assert required in names


def test_plan_is_deterministic_and_ordered(tmp_path):
    case = _subst(yaml.safe_load((CASES[0].parent / "nothing-exists.yaml").read_text()))
    manifest, obs = build_case(case, tmp_path)
    a, b = plan(manifest, obs), plan(manifest, obs)
    assert a == b
    assert [s.after for s in a.steps] == [(), ("dataset/mytestdata/register",), ("dataset/mytestdata/prepare",)]
    assert a.count(Change.TODO) == 3


def test_targets_select_and_unknown_target_is_a_usage_error(tmp_path):
    case = {"datasets": [{}, {"name": "second"}]}
    manifest, obs = build_case(case, tmp_path)
    only = plan(manifest, obs, targets=["dataset/second"])
    assert {s.dataset for s in only.steps} == {"second"}
    with pytest.raises(errors.UsageError) as info:
        plan(manifest, obs, targets=["dataset/nope"])
    assert "matches no dataset" in str(info.value) and info.value.exit_code == 64
    with pytest.raises(errors.UsageError):
        plan(manifest, obs, targets=["dataset/second/benchmark/chestxray"])


def test_a_benchmark_target_includes_its_dataset_steps(tmp_path):
    case = {"datasets": [{"benchmarks": [{"benchmark": "chestxray"}]}, {"name": "second"}]}
    manifest, obs = build_case(case, tmp_path)
    only = plan(manifest, obs, targets=["dataset/mytestdata/benchmark/chestxray"])
    assert [s.key for s in only.steps][:4] == ["dataset/mytestdata/register", "dataset/mytestdata/prepare",
                                               "dataset/mytestdata/set_operational",
                                               "dataset/mytestdata/benchmark/chestxray/associate"]
    assert {s.dataset for s in only.steps} == {"mytestdata"}
