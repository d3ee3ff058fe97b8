"""The benchmark owner's side against the real server on loopback with the real clients: `association list`,
idempotent approve, the shipped BenchmarkOwner manifest planned, applied and converged, and the data owner's
next plan picking the approval up (no container runs: the data owner's dataset is registered through the API)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.clients.api import ApiClient
from tests.runner.test_cli import independent_hash
from tests.support.server import TESTBO, TESTDO, live_server

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "manifests" / "chestxray-tutorial.yaml"
OWNER = REPO / "manifests" / "chestxray-benchmark-owner.yaml"


@pytest.fixture
def world(tmp_path):
    """A seeded server where the data owner's operational dataset mytestdata (the tutorial manifest's, with toy
    raw data beside it) asked to join chestxray with its compatibility-test metrics."""
    raw = tmp_path / "raw"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "4"], check=True, capture_output=True)
    manifest = tmp_path / "data-owner.yaml"
    manifest.write_text(TUTORIAL.read_text().replace("../medperf_tutorial/sample_raw_data", "raw"))
    digest = independent_hash(raw / "images", raw / "labels")
    with live_server() as srv, ApiClient(srv.url, srv.tokens[TESTDO]) as do:
        prep = do.get("benchmarks/1/")["data_preparation_mlcube"]
        ds = do.create("datasets/", {"name": "mytestdata", "description": "A tutorial dataset",
                                     "location": "My machine", "input_data_hash": digest, "generated_uid": digest,
                                     "data_preparation_mlcube": prep, "split_seed": 0, "submitted_as_prepared": False,
                                     "for_test": False, "generated_metadata": {}, "user_metadata": {}})
        do.update(f"datasets/{ds['id']}/", {"input_data_hash": digest, "generated_uid": digest,
                                            "generated_metadata": {"num_cases": 4}, "state": "OPERATION"})
        do.create("datasets/benchmarks/", {"dataset": ds["id"], "benchmark": 1, "approval_status": "PENDING",
                                           "metadata": {"test_result": {"AUC": 0.8125, "Accuracy": 0.75}}})
        yield _World(tmp_path, srv, manifest, ds["id"])


class _World:
    def __init__(self, root: Path, srv, manifest: Path, dataset: int):
        self.root, self.srv, self.manifest, self.dataset = root, srv, manifest, dataset

    def run(self, who: str, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = {**os.environ, "MEDPERF_SERVER": self.srv.url, "MEDPERF_TOKEN": self.srv.tokens[who]}
        env.pop("NO_COLOR", None)
        state = self.root / ("bo-state" if who == TESTBO else "do-state")
        code = main([*argv, "--state-dir", str(state)], stdout=out, stderr=err, stdin=io.StringIO(""), environ=env)
        return code, out.getvalue(), err.getvalue()

    def latest(self) -> str:
        with ApiClient(self.srv.url, self.srv.tokens[TESTBO]) as bo:
            return bo.get(f"datasets/{self.dataset}/benchmarks/1/")[-1]["approval_status"]


def test_the_owner_lists_approves_by_manifest_and_the_data_owner_plan_picks_it_up(world):
    code, out, err = world.run(TESTDO, "plan", str(world.manifest))
    assert code == 2 and "? await approval" in out, out + err

    code, out, err = world.run(TESTBO, "association", "list", "--status", "pending")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "mytestdata" in line)
    for text in ("chestxray (1)", f"mytestdata ({world.dataset})", "PENDING", "testdo@example.com",
                 "AUC 0.8125, Accuracy 0.75"):
        assert text in row, (text, row)
    code, out, err = world.run(TESTBO, "association", "list", "--output", "json", "--benchmark", "1")
    (a,) = json.loads(out)["associations"]
    assert a["dataset"] == {"id": world.dataset, "name": "mytestdata"} and a["initiated_by"]["email"] == TESTDO

    code, out, err = world.run(TESTBO, "plan", str(OWNER))
    assert code == 2, out + err
    assert f"+ approve dataset mytestdata ({world.dataset})" in out
    assert f"PUT /datasets/{world.dataset}/benchmarks/1/   sends: approval_status" in out
    assert world.latest() == "PENDING"
    code, out, err = world.run(TESTBO, "apply", str(OWNER), "--yes")
    assert code == 0, out + err
    assert world.latest() == "APPROVED"
    ledger = (world.root / "bo-state" / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(e)["body"] for e in ledger] == [{"approval_status": "APPROVED"}]
    code, out, err = world.run(TESTBO, "plan", str(OWNER))
    assert code == 0 and "No changes." in out, out + err
    code, out, err = world.run(TESTBO, "association", "approve", "-b", "chestxray", "-d", "mytestdata")
    assert code == 0 and "already APPROVED" in out, err

    code, out, err = world.run(TESTDO, "plan", str(world.manifest))
    assert "= await approval" in out and "run model 2" in out, out + err
