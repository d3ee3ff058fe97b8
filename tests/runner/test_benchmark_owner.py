"""The benchmark owner's side against the fake registry (which decides with server/rules.py): `association list`,
idempotent `association approve|reject`, and a BenchmarkOwner manifest planned and applied until converged, with
the data owner's next plan picking the approval up."""

from __future__ import annotations

import json

import pytest

from runner.errors import ExitStatus
from tests.runner.conftest import BO_TOKEN, TOKEN, Workspace, participating

OWNER = """\
apiVersion: medperf-apply/v1
kind: BenchmarkOwner
server:
  url: http://registry.test:8000
  token_env: MEDPERF_TOKEN
benchmarks:
  - benchmark: chestxray
    datasets:
      - {{dataset: {dataset}, association: {goal}}}
"""


@pytest.fixture
def requested(ws: Workspace) -> Workspace:
    """The data owner's dataset 1 asked to join chestxray (PENDING, with its compatibility-test metrics)."""
    participating(ws)
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == ExitStatus.GATE, r.out + r.err
    assert ws.api.world["dataset_assocs"][-1]["approval_status"] == "PENDING"
    return ws


def _owner_manifest(ws: Workspace, dataset="mytestdata", goal="approved", name="owner.yaml"):
    path = ws.root / name
    path.write_text(OWNER.format(dataset=dataset, goal=goal))
    return str(path)


def _latest(ws: Workspace) -> str:
    return ws.api.world["dataset_assocs"][-1]["approval_status"]


def test_association_list_shows_who_asked_when_and_the_metrics(requested):
    ws = requested
    r = ws.run("association", "list", "--server", "http://registry.test:8000", token=BO_TOKEN)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["BENCHMARK", "DATASET", "STATUS", "REQUESTED", "BY", "REQUESTED", "AT",
                                "COMPATIBILITY", "TEST"]
    row = lines[2]
    for text in ("chestxray (1)", "mytestdata (1)", "PENDING", "testdo <testdo@example.com>", "AUC 0.8125",
                 "Accuracy 0.75"):
        assert text in row, (text, row)
    assert "1 request: 1 pending." in r.out

    r = ws.run("association", "list", "--server", "http://registry.test:8000", "--output", "json",
               "--status", "pending", "--benchmark", "chestxray", token=BO_TOKEN)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["format_version"] == 1 and doc["kind"] == "associations"
    (a,) = doc["associations"]
    assert a["dataset"] == {"id": 1, "name": "mytestdata"} and a["benchmark"] == {"id": 1, "name": "chestxray"}
    assert a["approval_status"] == "PENDING" and a["test_result"] == {"Accuracy": 0.75, "AUC": 0.8125}
    assert a["initiated_by"]["email"] == "testdo@example.com" and a["created_at"]

    r = ws.run("association", "list", "--server", "http://registry.test:8000", "--status", "approved",
               token=BO_TOKEN)
    assert r.code == 0 and "No approved association requests." in r.out, r.out
    r = ws.run("association", "list", "--manifest", _owner_manifest(ws), token=BO_TOKEN)  # its server section
    assert r.code == 0 and "1 request: 1 pending." in r.out, r.err
    r = ws.run("association", "list", "--server", "http://registry.test:8000")  # the data owner owns none
    assert r.code == 0 and "You own no benchmark on http://registry.test:8000" in r.out, r.err


def test_association_list_costs_the_same_requests_for_one_or_many_rows(requested):
    ws = requested
    for i in range(2, 6):  # more datasets of the same data owner ask to join
        ws.api.add_dataset(id=i, name=f"extra{i}", state="OPERATION", generated_uid=str(i) * 64)
        ws.api.create("datasets/benchmarks/", {"dataset": i, "benchmark": 1, "approval_status": "PENDING",
                                               "metadata": {"test_result": {"AUC": 0.5}}})
    before = ws.api.request_count
    r = ws.run("association", "list", "--server", "http://registry.test:8000", token=BO_TOKEN)
    assert r.code == 0 and "5 requests: 5 pending." in r.out, r.out
    assert ws.api.request_count - before <= 6  # benchmark lookup-free: me, benchmarks, associations, datasets, 1 user


def test_approve_and_reject_are_idempotent_and_reject_revokes_an_approval(requested):
    ws = requested
    argv = ("--benchmark", "chestxray", "--dataset", "mytestdata", "--server", "http://registry.test:8000")
    r = ws.run("association", "approve", *argv, token=BO_TOKEN)
    assert r.code == 0 and "APPROVED" in r.out and _latest(ws) == "APPROVED", r.err
    sent = len(ws.api.sent())
    r = ws.run("association", "approve", *argv, token=BO_TOKEN)
    assert r.code == 0, r.err
    assert "already APPROVED" in r.out and "nothing sent" in r.out
    assert len(ws.api.sent()) == sent
    r = ws.run("association", "approve", *argv, "--output", "json", token=BO_TOKEN)
    assert r.code == 0 and json.loads(r.out)["has_changes"] is False

    r = ws.run("association", "reject", *argv, token=BO_TOKEN)  # MedPerf revokes with a new REJECTED row
    assert r.code == 0, r.err
    assert "REJECTED (the approval of" in r.out and "is revoked" in r.out
    assert ws.api.sent()[-1] == ("POST", "datasets/benchmarks/", {"dataset": 1, "benchmark": 1,
                                                                  "approval_status": "REJECTED", "metadata": {}})
    assert _latest(ws) == "REJECTED"
    r = ws.run("association", "reject", *argv, token=BO_TOKEN)
    assert r.code == 0 and "already REJECTED" in r.out, r.err

    r = ws.run("association", "approve", *argv, token=BO_TOKEN)  # a rejected request cannot be approved
    assert r.code == 1 and "was rejected" in r.err and "MedPerf approves only a pending request" in r.err, r.err
    assert "--request-again" in r.err and "Traceback" not in r.err
    assert _latest(ws) == "REJECTED"
    ledger = [json.loads(line) for line in (ws.state_dir / "ledger.jsonl").read_text().splitlines()]
    assert [e["path"] for e in ledger][-2:] == ["datasets/1/benchmarks/1/", "datasets/benchmarks/"]


def test_association_usage_errors(requested):
    ws = requested
    r = ws.run("association", "approve", "--benchmark", "chestxray", "--server", "http://registry.test:8000",
               token=BO_TOKEN)
    assert r.code == ExitStatus.USAGE and "needs --dataset" in r.err
    r = ws.run("association", "list", "--dataset", "1", "--server", "http://registry.test:8000", token=BO_TOKEN)
    assert r.code == ExitStatus.USAGE and "takes no --dataset" in r.err
    r = ws.run("association", "list", "--benchmark", "nope", "--server", "http://registry.test:8000", token=BO_TOKEN)
    assert r.code == 1 and "'nope' is not one of yours" in r.err and "chestxray (1)" in r.err


def test_owner_manifest_plans_applies_converges_and_the_data_owner_picks_it_up(requested):
    ws = requested
    owner = _owner_manifest(ws)
    r = ws.run("plan", owner, token=BO_TOKEN)
    assert r.code == ExitStatus.CHANGES, r.out + r.err
    assert "benchmark chestxray" in r.out
    line = next(x for x in r.out.splitlines() if "approve dataset" in x)
    assert line.lstrip().startswith("+ approve dataset mytestdata (1)")
    assert "PUT /datasets/1/benchmarks/1/   sends: approval_status" in line
    assert "compatibility test: AUC 0.8125, Accuracy 0.75" in line
    assert "Plan: 1 to do, 0 already done." in r.out
    assert _latest(ws) == "PENDING"  # plan sends nothing

    r = ws.run("apply", owner, "--yes", token=BO_TOKEN)
    assert r.code == 0, r.out + r.err
    assert _latest(ws) == "APPROVED"
    assert "changed" in r.out and "approve dataset mytestdata (1)" in r.out
    journal = (ws.state_dir / "journal.jsonl").read_text()
    assert "benchmark/chestxray/dataset/mytestdata/approve" in journal

    sent = len(ws.api.sent())
    r = ws.run("plan", owner, token=BO_TOKEN)
    assert r.code == 0 and "No changes." in r.out and "= approve dataset mytestdata (1)" in r.out, r.out
    r = ws.run("apply", owner, "--yes", token=BO_TOKEN)
    assert r.code == 0 and len(ws.api.sent()) == sent

    r = ws.run("plan", str(ws.manifest), token=TOKEN)  # the data owner's next plan: the gate is open
    assert r.code == ExitStatus.CHANGES
    assert "= await approval" in r.out and "run model 2" in r.out, r.out
    r = ws.run("apply", str(ws.manifest), "--yes")
    assert r.code == 0, r.out + r.err
    assert all(res["finalized"] for res in ws.api.world["results"].values())


def test_owner_manifest_rejects_revokes_and_waits_for_a_new_request(requested):
    ws = requested
    owner = _owner_manifest(ws, dataset=1, goal="rejected")
    r = ws.run("apply", owner, "--yes", token=BO_TOKEN)
    assert r.code == 0 and _latest(ws) == "REJECTED", r.out + r.err
    r = ws.run("plan", owner, token=BO_TOKEN)
    assert r.code == 0, r.out

    approve = _owner_manifest(ws, dataset=1, goal="approved", name="approve.yaml")
    r = ws.run("plan", approve, token=BO_TOKEN)  # MedPerf approves only a pending request: a gate
    assert r.code == ExitStatus.CHANGES
    assert "? approve dataset mytestdata (1)" in r.out and "requests again" in r.out, r.out
    r = ws.run("apply", approve, "--yes", token=BO_TOKEN)
    assert r.code == ExitStatus.GATE and _latest(ws) == "REJECTED", r.out + r.err

    r = ws.run("apply", str(ws.manifest), "--yes", "--request-again")  # the data owner asks again
    assert _latest(ws) == "PENDING", r.out + r.err
    r = ws.run("apply", approve, "--yes", token=BO_TOKEN)
    assert r.code == 0 and _latest(ws) == "APPROVED", r.out + r.err

    r = ws.run("plan", owner, token=BO_TOKEN)  # and back: an approval is revoked by a new REJECTED row
    line = next(x for x in r.out.splitlines() if "reject dataset" in x)
    assert r.code == ExitStatus.CHANGES and "POST /datasets/benchmarks/" in line and "revokes the approval" in line
    assert "sends: dataset, benchmark, approval_status, metadata" in line


def test_owner_manifest_notes_gates_and_refusals(requested):
    ws = requested
    path = ws.root / "owner.yaml"
    path.write_text(OWNER.format(dataset="later", goal="approved") + "      - {dataset: 1, association: pending}\n")
    r = ws.run("plan", str(path), token=BO_TOKEN)
    assert r.code == ExitStatus.CHANGES, r.out + r.err
    assert "? approve dataset later" in r.out and "no dataset named 'later' on the server yet" in r.out
    r = ws.run("apply", str(path), "--yes", token=BO_TOKEN)
    assert r.code == ExitStatus.GATE and _latest(ws) == "PENDING"

    path.write_text(OWNER.format(dataset="mytestdata", goal="approved").replace("chestxray", "other"))
    r = ws.run("plan", str(path), token=BO_TOKEN)
    assert r.code == 1 and "benchmark 'other' is not one of yours" in r.err and "owner.yaml:" in r.err, r.err

    r = ws.run("plan", _owner_manifest(ws), token=TOKEN)  # the data owner owns no benchmark
    assert r.code == 1 and "is not one of yours" in r.err and "(yours: none)" in r.err

    path.write_text(OWNER.format(dataset="mytestdata", goal="approved") + "runtime: {gpus: all}\n")
    r = ws.run("plan", str(path), token=BO_TOKEN)
    assert r.code == 1 and "'runtime' belongs to kind DataOwner, not BenchmarkOwner" in r.err, r.err


def test_a_request_the_owner_made_cannot_be_approved_by_them(ws):
    ws.api.add_dataset(id=1, name="theirs", state="OPERATION", generated_uid="1" * 64)
    ws.api.as_user(2).create("datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "approval_status": "PENDING",
                                                      "metadata": {"test_result": {"AUC": 0.5}}})
    r = ws.run("plan", _owner_manifest(ws, dataset="theirs"), token=BO_TOKEN)
    assert r.code == 1 and "MedPerf would refuse this decision" in r.err and "you made this request yourself" in r.err


def test_validate_takes_a_folder_of_both_kinds_and_plan_says_to_split_it(requested):
    ws = requested
    folder = ws.root / "both"
    folder.mkdir()
    (folder / "owner.yaml").write_text(OWNER.format(dataset="mytestdata", goal="approved"))
    (folder / "data.yaml").write_text(ws.manifest.read_text().replace("raw/", "../raw/"))
    r = ws.run("validate", str(folder))
    assert r.code == 0 and "1 dataset, 1 benchmark to decide on" in r.out, r.out + r.err
    r = ws.run("plan", str(folder), token=BO_TOKEN)
    assert r.code == 1 and "documents of both kinds in one run" in r.err and "owner.yaml" in r.err, r.err


def test_owner_saved_plan_json_and_a_stale_file(requested):
    ws = requested
    owner = _owner_manifest(ws)
    plan_file = ws.root / "decisions.json"
    r = ws.run("plan", owner, "-o", str(plan_file), "--output", "json", token=BO_TOKEN)
    assert r.code == ExitStatus.CHANGES, r.err
    doc = json.loads(r.out)
    assert doc["kind"] == "plan" and doc["has_changes"] is True
    (step,) = doc["steps"]
    assert step["action"] == "approve" and step["sends"] == ["approval_status"]
    assert step["args"]["dataset_id"] == 1 and step["args"]["status"] == "APPROVED"
    assert "+ approve dataset mytestdata (1)" in r.err  # human lines on stderr

    ws.api.approve(1)  # decided elsewhere meanwhile: the saved plan is stale
    r = ws.run("apply", owner, str(plan_file), token=BO_TOKEN)
    assert r.code == 1 and "stale" in r.err, r.out + r.err


def test_owner_apply_asks_for_yes_without_a_terminal_and_logs_events(requested):
    ws = requested
    owner = _owner_manifest(ws)
    r = ws.run("apply", owner, token=BO_TOKEN)
    assert r.code == ExitStatus.USAGE and "--yes" in r.err and _latest(ws) == "PENDING"
    events = ws.root / "events.jsonl"
    r = ws.run("apply", owner, "--yes", "--output", "json", "--event-log", str(events), token=BO_TOKEN)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["kind"] == "apply" and doc["steps"][0]["result"]["outcome"] == "changed"
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds == ["plan", "step_start", "step_end", "recap"]
    r = ws.run("plan", owner, "--target", "dataset/mytestdata", token=BO_TOKEN)
    assert r.code == ExitStatus.USAGE and "--target does not apply to a BenchmarkOwner manifest" in r.err


def test_a_lost_answer_to_a_revocation_is_resolved_by_observing(requested):
    ws = requested
    ws.api.approve(1)
    owner = _owner_manifest(ws, goal="rejected")
    ws.api.uncertain_posts, ws.api.uncertain_lands = 1, True
    r = ws.run("apply", owner, "--yes", token=BO_TOKEN)
    assert r.code == 0 and "the answer was lost; the server holds it" in r.out, r.out + r.err
    assert _latest(ws) == "REJECTED"
    assert sum(1 for m, p, _ in ws.api.sent() if (m, p) == ("POST", "datasets/benchmarks/")) == 2  # request + revoke
    entries = [json.loads(line) for line in (ws.state_dir / "journal.jsonl").read_text().splitlines()]
    (begin,) = [e for e in entries if e.get("step") == "benchmark/chestxray/dataset/mytestdata/reject"]
    ends = [e["outcome"] for e in entries if e["event"] == "end" and e["id"] == begin["id"]]
    assert ends == ["changed"]  # the journal says it landed


def test_validate_says_what_is_wrong_with_a_benchmark_owner_manifest(ws):
    path = ws.root / "owner.yaml"
    path.write_text(OWNER.format(dataset="mytestdata", goal="approve").replace("benchmark: chestxray",
                                                                               "benchmark: chestxray\n    defualt: x"))
    r = ws.run("validate", str(path))
    assert r.code == 1, r.out
    assert "benchmarks[0].datasets[0].association: 'approve' is not one of: approved, rejected, pending" in r.err
    assert "did you mean 'approved'?" in r.err
    assert "owner.yaml:8:" in r.err and "unknown key 'defualt'" in r.err and "did you mean 'default'?" in r.err
    path.write_text("apiVersion: medperf-apply/v1\nkind: BenchmarkOwner\nserver: {url: http://x:1, token_env: T}\n"
                    "datasets: []\n")
    r = ws.run("validate", str(path))
    assert r.code == 1 and "owner.yaml:2:7: kind: BenchmarkOwner needs the key 'benchmarks'" in r.err, r.err
    assert "'datasets' belongs to kind DataOwner, not BenchmarkOwner" in r.err
    path.write_text(OWNER.format(dataset="mytestdata", goal="approved") + "  - {benchmark: chestxray}\n")
    r = ws.run("validate", str(path), "--output", "json")
    assert r.code == 1 and "benchmark 'chestxray' is already listed" in r.err, r.err
    path.write_text(OWNER.format(dataset="mytestdata", goal="approved"))
    r = ws.run("validate", str(path), "--output", "json")
    assert r.code == 0 and json.loads(r.out)["benchmarks"] == ["chestxray"], r.err
    r = ws.run("status", str(path), token=BO_TOKEN)
    assert r.code == ExitStatus.USAGE and "reads a DataOwner manifest" in r.err and "association list" in r.err
