"""End to end: the real registry on loopback, the real Docker engine, the example chest X-ray images, the
tutorial manifest as shipped, and the CLI run in-process with the real clients."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from runner.cli import main
from tests.runner.test_cli import independent_hash
from tests.support.images import COMPONENTS, require_images

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "manifests" / "chestxray-tutorial.yaml"

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def tutorial(tmp_path, docker_client):
    """The tutorial manifest in a work folder with toy raw data beside it, and a seeded live server."""
    require_images()
    from tests.support.server import TESTDO, live_server

    (tmp_path / "manifests").mkdir()
    shutil.copy(TUTORIAL, tmp_path / "manifests" / TUTORIAL.name)
    raw = tmp_path / "medperf_tutorial" / "sample_raw_data"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "24"], check=True, capture_output=True)
    with live_server(components=COMPONENTS) as srv:
        env = {**os.environ, "MEDPERF_SERVER": srv.url, "MEDPERF_TOKEN": srv.tokens[TESTDO]}
        env.pop("NO_COLOR", None)
        yield _Tutorial(tmp_path, srv, env, raw)


class _Tutorial:
    def __init__(self, root: Path, srv, env: dict, raw: Path):
        self.root, self.srv, self.env, self.raw = root, srv, env, raw
        self.manifest = root / "manifests" / TUTORIAL.name
        self.state_dir = root / "state"

    def run(self, *argv: str, clients=None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, str(self.manifest), "--state-dir", str(self.state_dir)], stdout=out, stderr=err,
                    stdin=io.StringIO(""), environ=self.env, clients=clients)
        return code, out.getvalue(), err.getvalue()

    def my_datasets(self) -> list[dict]:
        r = requests.get(f"{self.srv.api}/me/datasets/", headers={"Authorization": f"Bearer {self.env['MEDPERF_TOKEN']}"},
                         timeout=10)
        r.raise_for_status()
        return r.json()["results"]

    def get(self, path: str) -> dict:
        r = requests.get(f"{self.srv.api}/{path}", params={"limit": 500},
                         headers={"Authorization": f"Bearer {self.env['MEDPERF_TOKEN']}"}, timeout=10)
        r.raise_for_status()
        return r.json()

    def ledger(self) -> list[str]:
        path = self.state_dir / "ledger.jsonl"
        return path.read_text().splitlines() if path.exists() else []


FAILING_IMAGE = "medperf-apply/test-failing-model:latest"


def _api(srv, email: str, method: str, path: str, body=None):
    r = requests.request(method, f"{srv.api}/{path}", json=body, headers=srv.headers(email), timeout=30)
    assert r.status_code < 300, (method, path, r.status_code, r.text)
    return r.json() if r.content else None


def _register_model(srv, name: str, record: dict, *, priority: int = 0) -> int:
    """As the model owner: POST the model with its container, request the association; the benchmark owner
    approves it (and sets its priority), as MedPerf's model owner and benchmark owner do."""
    from tests.support.server import TESTBO, TESTMO

    container = {k: record[k] for k in ("container_config", "parameters_config", "image_hash",
                                        "additional_files_tarball_url", "additional_files_tarball_hash")}
    model = _api(srv, TESTMO, "POST", "models/", {"name": name, "type": "CONTAINER", "state": "OPERATION",
                                                  "container": {**container, "name": name, "state": "OPERATION"}})
    _api(srv, TESTMO, "POST", "models/benchmarks/", {"model": model["id"], "benchmark": 1,
                                                     "approval_status": "PENDING", "metadata": {}})
    _api(srv, TESTBO, "PUT", f"models/{model['id']}/benchmarks/1/", {"approval_status": "APPROVED",
                                                                      **({"priority": priority} if priority else {})})
    return model["id"]


def _failing_image(docker_client) -> str:
    """A test image from the base image whose infer exits 1."""
    import io as _io

    dockerfile = b"FROM medperf-apply/python-base:bookworm\nCMD [\"python3\", \"-c\", \"import sys; sys.exit(1)\"]\n"
    image, _ = docker_client.images.build(fileobj=_io.BytesIO(dockerfile), tag=FAILING_IMAGE, rm=True)
    return image.id


def test_the_tutorial_end_to_end_gate_approval_runs_submit_then_new_models(tutorial, docker_client):
    from tests.support.server import TESTBO

    srv = tutorial.srv
    # 1. a new dataset: register, prepare, operational, associate (compatibility test), then the gate: exit 3
    code, out, err = tutorial.run("apply", "--yes")
    assert code == 3, out + err
    assert "waits for the benchmark owner to approve dataset mytestdata" in out
    (ds,) = tutorial.my_datasets()
    d = ds["id"]
    assert ds["state"] == "OPERATION"
    prepared = tutorial.state_dir / "datasets" / str(d)
    assert ds["generated_uid"] == independent_hash(prepared / "data", prepared / "labels")
    assert ds["input_data_hash"] == independent_hash(tutorial.raw / "images", tutorial.raw / "labels")
    (assoc,) = tutorial.get("me/datasets/associations/")["results"]
    assert assoc["approval_status"] == "PENDING" and set(assoc["metadata"]["test_result"]) == {"Accuracy", "AUC"}
    (ref,) = tutorial.get("me/results/")["results"]
    assert (ref["name"], ref["model"], ref["finalized"]) == (f"b1m1d{d}", 1, False)
    assert ref["model_report"] == {"execution_status": "finished"}
    assert ref["evaluation_report"] == {"execution_status": "finished"}
    ref_flag = tutorial.state_dir / "results" / str(ref["id"]) / ".executed"
    ref_mtime = ref_flag.stat().st_mtime_ns

    # 2. the benchmark owner approves with the command
    bo_state = tutorial.root / "bo-state"
    out_, err_ = io.StringIO(), io.StringIO()
    code = main(["association", "approve", "--benchmark", "chestxray", "--dataset", str(d), "--state-dir",
                 str(bo_state)], stdout=out_, stderr=err_, stdin=io.StringIO(""),
                environ={**tutorial.env, "MEDPERF_TOKEN": srv.tokens[TESTBO]})
    assert code == 0, err_.getvalue()
    assert "APPROVED" in out_.getvalue()

    # 3. apply again: model 2 only (the reference ran in the association test), both submitted, exit 0
    code, out, err = tutorial.run("apply", "--yes")
    assert code == 0, out + err
    results = {r["model"]: r for r in tutorial.get("me/results/")["results"]}
    assert sorted(results) == [1, 2] and all(r["finalized"] for r in results.values())
    assert results[1]["id"] == ref["id"] and ref_flag.stat().st_mtime_ns == ref_mtime  # never run twice
    assert set(results[2]["results"]) == {"Accuracy", "AUC"} and results[2]["metadata"] == {"partial": False}
    assert "Total number of models: 2" in out and "1 ran successfully" in out

    code, out, err = tutorial.run("status", "--output", "json")
    assert code == 0, err
    (bench,) = json.loads(out)["datasets"][0]["benchmarks"]
    assert bench["association"] == "APPROVED"
    assert [(m["model"], m["result"]) for m in bench["models"]] == [(2, "submitted"), (1, "submitted")]
    code, out, err = tutorial.run("results", "--format", "json")
    assert code == 0, err
    local = {r["model"]: r for r in json.loads(out)["results"]}
    assert {m: local[m]["results"] for m in local} == {m: results[m]["results"] for m in results}

    # 4. a third apply does nothing: no request that changes anything, exit 0
    sent = len(tutorial.ledger())
    code, out, err = tutorial.run("apply", "--yes")
    assert code == 0 and len(tutorial.ledger()) == sent, out + err
    code, out, err = tutorial.run("plan")
    assert code == 0 and "No changes." in out

    # 5. a model added to the benchmark later is run and submitted by the next apply, and nothing else
    components = json.loads(COMPONENTS.read_text())
    linear = components["second_model"]
    m3 = _register_model(srv, "chestxray_linear_v2", {**linear, "parameters_config": {**linear["parameters_config"],
                                                                                        "variant": 2}})
    code, out, err = tutorial.run("apply", "--yes")
    assert code == 0, out + err
    new = [json.loads(line) for line in tutorial.ledger()[sent:]]
    result_paths = {e["path"] for e in new}
    (m3_result,) = [r for r in tutorial.get("me/results/")["results"] if r["model"] == m3]
    assert [e["path"] for e in new if e["method"] == "POST"] == ["results/"]
    assert result_paths == {"results/", f"results/{m3_result['id']}/"}
    assert m3_result["finalized"] and "+ run model" in out and f"run model {m3}" in out

    # 6. a failing model is reported in the table while the others finish
    failing = {"container_config": {"container_type": "DockerImage", "image": FAILING_IMAGE, "tasks": {"infer": {
        "input_volumes": {"data_path": {"mount_path": "/mlcommons/volumes/data", "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": "/mlcommons/volumes/predictions", "type": "directory"}}}}},
        "parameters_config": None, "image_hash": _failing_image(docker_client),
        "additional_files_tarball_url": "", "additional_files_tarball_hash": ""}
    bad = _register_model(srv, "always_fails", failing, priority=10)
    m5 = _register_model(srv, "chestxray_linear_v3", {**linear, "parameters_config": {**linear["parameters_config"],
                                                                                        "variant": 3}})
    code, out, err = tutorial.run("apply", "--yes", "--parallel", "2")  # the two new models at once
    assert code == 1, out + err
    table = out.split("Model runs of dataset mytestdata in benchmark chestxray:")[-1]
    rows = [ln.split() for ln in table.splitlines()[3:] if ln.startswith("  ") and not ln.startswith("    ")]
    assert [r[0] for r in rows] == [str(bad), "2", str(m3), str(m5), "1"]  # priority, then the reference last
    assert "model execution failed: infer of always_fails exited with code 1" in table
    assert "1 failed" in table and "1 ran successfully" in table
    finalized = {r["model"]: r["finalized"] for r in tutorial.get("me/results/")["results"]}
    assert finalized == {1: True, 2: True, m3: True, bad: False, m5: True}

    # every body sent is in a ledger and holds only what runner/privacy.py allows there; no local path ever left
    from runner import privacy

    ledger = [json.loads(line) for line in tutorial.ledger()] + \
        [json.loads(line) for line in (bo_state / "ledger.jsonl").read_text().splitlines()]
    for e in ledger:
        privacy.check_body(e["method"], e["path"], e["body"])
    assert str(tutorial.raw) not in json.dumps(ledger) and str(tutorial.state_dir) not in json.dumps(ledger)
    assert {(e["method"], privacy.normalize(e["path"]).split("/")[0]) for e in ledger} == {
        ("POST", "datasets"), ("PUT", "datasets"), ("POST", "results"), ("PUT", "results")}
    assert sum(1 for e in ledger if e["path"] == "datasets/benchmarks/") == 1
    # and the ledger accounts for every write the server holds
    server_results = tutorial.get("me/results/")["results"]
    assert sum(1 for e in ledger if e["method"] == "POST" and e["path"] == "results/") == len(server_results) == 5
    submitted = sorted(int(e["path"].split("/")[1]) for e in ledger if e["method"] == "PUT"
                       and e["path"].startswith("results/") and "results" in e["body"])
    assert submitted == sorted(r["id"] for r in server_results if r["finalized"])
    for r in server_results:
        if r["finalized"]:
            body = next(e["body"] for e in ledger if e["path"] == f"results/{r['id']}/" and "results" in e["body"])
            assert body == {"results": r["results"], "metadata": r["metadata"]}
    assert [e["body"] for e in ledger if e["path"].endswith("/benchmarks/1/") and e["method"] == "PUT"] == \
        [{"approval_status": "APPROVED"}]

    # drift: a raw file changed after registration stops the plan with both hashes
    old = ds["input_data_hash"]
    victim = sorted((tutorial.raw / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    new_hash = independent_hash(tutorial.raw / "images", tutorial.raw / "labels")
    code, out, err = tutorial.run("plan")
    assert code == 1
    assert old in err and new_hash in err and "register the changed data as a new dataset" in err


@pytest.mark.slow
def test_saved_plan_against_the_real_server(tmp_path):
    """Register only (no container): plan -o, apply the file exactly; a stale file is refused."""
    from tests.support.server import TESTDO, live_server

    raw = tmp_path / "raw"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "5"], check=True, capture_output=True)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TUTORIAL.read_text().split("    benchmarks:")[0]  # the dataset only
                        .replace("../medperf_tutorial/sample_raw_data", "raw")
                        .replace("state: operational", "state: registered"))
    with live_server() as srv:
        env = {**os.environ, "MEDPERF_SERVER": srv.url, "MEDPERF_TOKEN": srv.tokens[TESTDO]}

        def run(*argv):
            out, err = io.StringIO(), io.StringIO()
            code = main([*argv, "--state-dir", str(tmp_path / "state")], stdout=out, stderr=err,
                        stdin=io.StringIO(""), environ=env)
            return code, out.getvalue(), err.getvalue()

        plan_file = tmp_path / "plan.json"
        code, out, err = run("plan", str(manifest), "-o", str(plan_file), "--output", "json")
        assert code == 2 and json.loads(out)["has_changes"] is True and "+ register" in err
        code, out, err = run("apply", str(manifest), str(plan_file))
        assert code == 0, out + err
        r = requests.get(f"{srv.api}/me/datasets/", headers={"Authorization": f"Bearer {env['MEDPERF_TOKEN']}"},
                         timeout=10)
        (ds,) = r.json()["results"]
        expected = independent_hash(raw / "images", raw / "labels")
        assert (ds["state"], ds["input_data_hash"], ds["generated_uid"]) == ("DEVELOPMENT", expected, expected)
        code, out, err = run("apply", str(manifest), str(plan_file))  # the same file again: stale now
        assert code == 1 and "stale" in err
        code, out, err = run("plan", str(manifest))
        assert code == 0, out + err


def test_apply_wait_polls_until_the_owner_approves_on_the_real_server(tutorial):
    """`apply --wait`: runs to the gate, polls the real server until the benchmark owner's command approves,
    then plans the benchmark's models and finishes in the same run. The owner approves while the run pauses
    before its first poll (the pauses are recorded, not slept)."""
    from tests.support.clients import Pauses, real_clients_pausing
    from tests.support.server import TESTBO

    srv = tutorial.srv
    approved: list[int] = []

    def owner(n: int) -> None:
        if approved:
            return
        rows = requests.get(f"{srv.api}/me/datasets/associations/", headers=srv.headers(TESTBO),
                            timeout=10).json()["results"]
        assert [r["approval_status"] for r in rows] == ["PENDING"], rows  # the run waits for this request
        out_, err_ = io.StringIO(), io.StringIO()
        approved.append(main(["association", "approve", "-b", "1", "-d", str(rows[0]["dataset"]),
                              "--state-dir", str(tutorial.root / "bo-state")], stdout=out_, stderr=err_,
                             stdin=io.StringIO(""), environ={**tutorial.env, "MEDPERF_TOKEN": srv.tokens[TESTBO]}))

    pauses = Pauses(then=owner)
    code, out, err = tutorial.run("apply", "--yes", "--wait", "--timeout", "2m",
                                  clients=real_clients_pausing(tutorial.env, pauses))
    assert approved == [0]
    assert code == 0, out + err
    assert pauses == [5.0]  # one pause, the first poll's, and no retry on the way
    assert "approved by the benchmark owner after waiting" in out
    assert "planning the benchmark's models" in out
    results = tutorial.get("me/results/")["results"]
    assert sorted(r["model"] for r in results) == [1, 2] and all(r["finalized"] for r in results)
