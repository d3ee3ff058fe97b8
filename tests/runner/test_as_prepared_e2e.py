"""Submit-as-prepared end to end, on the real registry server, the real engine and the example images: the
tutorial's data prepared beforehand (by the normal path, on another server) is registered with `prepared: true`,
checked, made operational with the same generated_uid as the normal path's, associated, run and submitted."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import main
from tests.runner.test_cli import independent_hash
from tests.support.images import COMPONENTS, require_images

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MANIFEST = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: {{ env.MEDPERF_SERVER }}
  token_env: MEDPERF_TOKEN
datasets:
  - name: NAME
    description: A tutorial dataset
    location: My machine
    data_path: DATA
    labels_path: LABELS
    prepare_with: {benchmark: chestxray}
    state: operational
    consent: {statistics: true, compatibility_results: true, results: true}
"""
PARTICIPATION = """\
    prepared: true
    benchmarks:
      - benchmark: chestxray
"""


def _run(root: Path, srv, manifest: str, *argv: str, email: str = "testdo@example.com") -> tuple[int, str]:
    (root / "manifest.yaml").write_text(manifest)
    out, err = io.StringIO(), io.StringIO()
    env = {**os.environ, "MEDPERF_SERVER": srv.url, "MEDPERF_TOKEN": srv.tokens[email]}
    code = main([*argv, str(root / "manifest.yaml"), "--state-dir", str(root / "state")], stdout=out, stderr=err,
                stdin=io.StringIO(""), environ=env)
    return code, out.getvalue() + err.getvalue()


def _get(srv, path: str) -> dict:
    import requests

    r = requests.get(f"{srv.api}/{path}", headers=srv.headers("testdo@example.com"), timeout=10)
    r.raise_for_status()
    return r.json()


def test_data_prepared_beforehand_registers_as_prepared_with_the_normal_paths_generated_uid(tmp_path, docker_client):
    require_images()
    from tests.support.server import TESTBO, live_server

    raw = tmp_path / "normal" / "raw"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "24"], check=True, capture_output=True)
    # 1. the normal path: registered from the raw data, prepared, operational
    with live_server(components=COMPONENTS) as first:
        normal = MANIFEST.replace("NAME", "mytestdata").replace("DATA", "raw/images").replace("LABELS", "raw/labels")
        code, text = _run(tmp_path / "normal", first, normal, "apply", "--yes")
        assert code == 0, text
        (registered,) = _get(first, "me/datasets/")["results"]
    prepared = tmp_path / "normal" / "state" / "datasets" / str(registered["id"])

    # 2. a hospital that prepared the same data beforehand (the folders as the preparation wrote them)
    hospital = tmp_path / "hospital"
    for part in ("data", "labels"):
        shutil.copytree(prepared / part, hospital / "prepared" / part)
    with live_server(components=COMPONENTS) as srv:
        manifest = MANIFEST.replace("NAME", "prepared-before").replace("DATA", "prepared/data") \
            .replace("LABELS", "prepared/labels") + PARTICIPATION
        code, text = _run(hospital, srv, manifest, "plan")
        assert code == 2 and "submitted_as_prepared=true" in text and "copy the prepared folders" in text, text
        code, text = _run(hospital, srv, manifest, "apply", "--yes")
        assert code == 3, text  # associated: the benchmark owner's approval is the gate
        (ds,) = _get(srv, "me/datasets/")["results"]
        assert ds["submitted_as_prepared"] is True and ds["state"] == "OPERATION"
        assert ds["generated_uid"] == registered["generated_uid"]  # the normal path's, as MedPerf computes it
        assert ds["input_data_hash"] == ds["generated_uid"] == independent_hash(hospital / "prepared" / "data",
                                                                                hospital / "prepared" / "labels")
        assert ds["generated_metadata"] == registered["generated_metadata"]
        sent = [json.loads(line) for line in (hospital / "state" / "ledger.jsonl").read_text().splitlines()]
        assert not [e for e in sent if "report" in (e.get("body") or {})]  # prepare never ran: no status sent

        out = io.StringIO()
        assert main(["association", "approve", "--benchmark", "chestxray", "--dataset", str(ds["id"]),
                     "--server", srv.url, "--state-dir", str(tmp_path / "bo")], stdout=out, stderr=out,
                    stdin=io.StringIO(""), environ={**os.environ, "MEDPERF_TOKEN": srv.tokens[TESTBO]}) == 0
        code, text = _run(hospital, srv, manifest, "apply", "--yes")
        assert code == 0, text
        results = {r["model"]: r for r in _get(srv, "me/results/")["results"]}
        assert sorted(results) == [1, 2] and all(r["finalized"] for r in results.values())
        assert all(set(r["results"]) == {"Accuracy", "AUC"} for r in results.values())
        code, text = _run(hospital, srv, manifest, "plan")
        assert code == 0, text
