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

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "examples" / "chestxray" / "build" / "components.json"
TUTORIAL = REPO / "manifests" / "chestxray-tutorial.yaml"

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def tutorial(tmp_path, docker_client):
    """The tutorial manifest in a work folder with toy raw data beside it, and a seeded live server."""
    if not COMPONENTS.exists():
        msg = f"{COMPONENTS} is missing: run `make images` first"
        if os.environ.get("MEDPERF_REQUIRE_DOCKER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
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

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, str(self.manifest), "--state-dir", str(self.state_dir)], stdout=out, stderr=err,
                    stdin=io.StringIO(""), environ=self.env)
        return code, out.getvalue(), err.getvalue()

    def my_datasets(self) -> list[dict]:
        r = requests.get(f"{self.srv.api}/me/datasets/", headers={"Authorization": f"Bearer {self.env['MEDPERF_TOKEN']}"},
                         timeout=10)
        r.raise_for_status()
        return r.json()["results"]

    def ledger(self) -> list[str]:
        path = self.state_dir / "ledger.jsonl"
        return path.read_text().splitlines() if path.exists() else []


def test_tutorial_to_operational_then_no_op_then_drift(tutorial):
    code, out, err = tutorial.run("plan")
    assert code == 2, out + err
    assert "+ register" in out and "+ prepare" in out and "+ set operational" in out
    assert tutorial.ledger() == [] and tutorial.my_datasets() == []

    code, out, err = tutorial.run("apply", "--yes")
    assert code == 0, out + err
    assert "Recap: 0 ok, 3 changed, 0 pending, 0 failed, 0 skipped" in out
    (ds,) = tutorial.my_datasets()
    assert ds["name"] == "mytestdata" and ds["state"] == "OPERATION"
    prepared = tutorial.state_dir / "datasets" / str(ds["id"])
    # the server holds MedPerf's folder hashes, checked against an independent computation
    assert ds["generated_uid"] == independent_hash(prepared / "data", prepared / "labels")
    assert ds["input_data_hash"] == independent_hash(tutorial.raw / "images", tutorial.raw / "labels")
    assert ds["generated_uid"] != ds["input_data_hash"]
    assert ds["generated_metadata"]["num_cases"] == 24
    assert ds["report"]["execution_status"] == "finished"
    sent = tutorial.ledger()
    assert len(sent) == 4  # register, prepare started + finished, set operational
    assert str(tutorial.raw) not in "".join(sent)  # no local path ever left the machine

    code, out, err = tutorial.run("apply", "--yes")
    assert code == 0, out + err
    assert "Recap: 3 ok, 0 changed" in out
    assert len(tutorial.ledger()) == 4  # nothing sent

    code, out, err = tutorial.run("plan")
    assert code == 0 and "No changes." in out

    old = ds["input_data_hash"]
    victim = sorted((tutorial.raw / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    new = independent_hash(tutorial.raw / "images", tutorial.raw / "labels")
    code, out, err = tutorial.run("plan")
    assert code == 1
    assert old in err and new in err and "register the changed data as a new dataset" in err


@pytest.mark.slow
def test_saved_plan_against_the_real_server(tmp_path):
    """Register only (no container): plan -o, apply the file exactly; a stale file is refused."""
    from tests.support.server import TESTDO, live_server

    raw = tmp_path / "raw"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "5"], check=True, capture_output=True)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TUTORIAL.read_text().replace("../medperf_tutorial/sample_raw_data", "raw")
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
