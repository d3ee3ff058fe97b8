"""`make demo` end to end in a copy of the repository, on a free port: the three results submitted (finalized on
the server; the third model is an image archive), the records as MedPerf's tools accept them (images by registry
digest, files by http://), the tutorial manifest then plans to nothing, a second run converged, `make demo-clean`
leaves no server, file server or image registry and no demo files."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time

import pytest
import requests

from runner.cli import main
from tests.docs.demo import make_copy, pid_alive
from tests.docs.readme import README, block_after, shown_in

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def copy(tmp_path, docker_client):
    copy = make_copy(tmp_path / "repo")
    yield copy
    pid = copy.server_pid()  # whatever happened, our server does not outlive the test
    if copy.demo_dir.exists():  # nor the demo's file server and image registry
        copy.run("bash", "scripts/demo.sh", "clean", timeout=60)
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)


def _get(copy, path: str, token: str) -> dict:
    r = requests.get(f"{copy.url}/api/v0{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()


@pytest.mark.timeout(420)
def test_make_demo_submits_the_results_runs_twice_and_cleans_up(copy, docker_client):
    started = time.monotonic()
    first = copy.run("make", "--no-print-directory", "demo", timeout=360)
    first_s = time.monotonic() - started
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-6000:]
    assert "exit 3, as expected" in out, "the first apply stops at the approval gate"
    assert "approve the association as the benchmark owner" in out
    assert "make demo-clean" in out
    readme = README.read_text(encoding="utf-8")
    for marker in ("The first plan, on a freshly seeded server", "the second apply's plan is:"):
        assert shown_in(block_after(readme, marker), first.stdout) == [], f"README's plan after {marker!r} is stale"
    header = block_after(readme, "`medperf-apply results` prints them").splitlines()[0]
    assert header in first.stdout and all(f"b1m{m}d1" in first.stdout for m in (1, 2, 3))

    tokens = json.loads((copy.demo_dir / "tokens.json").read_text())
    do, bo = tokens["testdo@example.com"], tokens["testbo@example.com"]
    # the image build said what it was doing; the template's data and its second benchmark are there
    assert "  | build" in first.stdout, "the image step shows its progress"
    created = (copy.demo_dir / "created").read_text().split()
    assert created == ["medperf_tutorial/sample_raw_data", "medperf_tutorial/sites/north/chest-2024",
                       "medperf_tutorial/sites/north/chest-2025"]
    assert all((copy.root / c / "labels" / "labels.csv").is_file() for c in created)
    second = _get(copy, "/benchmarks/2/", do)
    assert second["name"] == "chestxray-external" and second["state"] == "OPERATION"
    assert second["approval_status"] == "APPROVED"
    mine = _get(copy, "/me/results/", do)["results"]
    assert len(mine) == 3 and all(r["finalized"] for r in mine), mine
    assert sorted(r["model"] for r in mine) == [1, 2, 3]
    assert all(r["results"] for r in mine), "submitted results carry the metrics"
    archive = _get(copy, "/models/3/", do)["container"]
    assert archive["container_config"]["container_type"] == "DockerArchive"
    for model in (_get(copy, "/models/1/", do), _get(copy, "/models/3/", do)):
        assert model["container"]["additional_files_tarball_url"].startswith("http://127.0.0.1:")
    bench = _get(copy, "/benchmarks/1/", do)
    assert bench["demo_dataset_tarball_url"].startswith("http://127.0.0.1:") and bench["demo_dataset_generated_uid"]
    if shutil.which("docker-registry"):  # the images as pushed: a registry reference, pinned by its digest
        prep = _get(copy, "/mlcubes/1/", do)
        assert prep["container_config"]["image"].startswith("127.0.0.1:") and "/medperf-apply/" in \
            prep["container_config"]["image"]
        assert prep["image_hash"] not in [i.id for i in docker_client.images.list()]  # a digest, not an id
    owner_view = _get(copy, "/benchmarks/1/results/", bo)["results"]
    assert sorted(r["id"] for r in owner_view) == sorted(r["id"] for r in mine)

    env = copy.env(MEDPERF_SERVER=copy.url, MEDPERF_TOKEN=do, MEDPERF_APPLY_HOME=str(copy.demo_dir / "state"))
    o, e = io.StringIO(), io.StringIO()
    code = main(["plan", str(copy.root / "manifests" / "chestxray-tutorial.yaml")], stdout=o, stderr=e,
                stdin=io.StringIO(""), environ=env)
    assert code == 0, o.getvalue() + e.getvalue()

    pid = copy.server_pid()
    started = time.monotonic()
    second = copy.run("make", "--no-print-directory", "demo", timeout=240)
    second_s = time.monotonic() - started
    out2 = second.stdout + second.stderr
    assert second.returncode == 0, out2[-6000:]
    assert "already running" in out2 and "already seeded" in out2 and "already converged" in out2
    assert "approve the association" not in out2
    assert copy.server_pid() == pid
    assert len(_get(copy, "/me/results/", do)["results"]) == 3, "nothing was submitted twice"
    print(f"make demo: first run {first_s:.1f} s, second run {second_s:.1f} s")

    helpers = [int(p.read_text()) for p in (copy.demo_dir / "files.pid", copy.demo_dir / "registry" / "registry.pid")
               if p.exists()]
    port_file = copy.demo_dir / "registry" / "port"
    pushed_to = f"127.0.0.1:{port_file.read_text().strip()}/" if port_file.exists() else None
    clean = copy.run("make", "--no-print-directory", "demo-clean", timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert not pid_alive(pid), "the demo server is still running"
    assert helpers and not [h for h in helpers if pid_alive(h)], "the file server or the image registry still runs"
    if pushed_to:  # the engine's tags naming the stopped registry go with it; the images stay
        assert not [t for i in docker_client.images.list() for t in i.tags if t.startswith(pushed_to)]
        assert docker_client.images.get("medperf-apply/chestxray-prep:latest")
    assert not copy.demo_dir.exists() and not (copy.root / "medperf_tutorial").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{copy.url}/version", timeout=5)


@pytest.mark.timeout(240)
def test_a_taken_port_stops_the_demo_at_the_server_step_saying_so(copy):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", copy.port))
        taken.listen()
        p = copy.run("bash", "scripts/demo.sh", timeout=200)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"port {copy.port} is taken by another program: set MEDPERF_DEMO_PORT" in p.stderr
    assert "server failed (exit 1)" in p.stderr and "server.log" in p.stderr
    assert not (copy.demo_dir / "tokens.json").exists(), "nothing was seeded"
