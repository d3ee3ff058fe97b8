"""The state dir must be on a filesystem the Slurm nodes share: a job that finds another filesystem (here: a node
that sees another marker than the one the submitter wrote) is reported as such, naming the folder and the node."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from runner.clients.slurm import SlurmRunner
from runner.container_spec import ContainerSpec
from runner.errors import SharedStateError
from runner.model import RuntimeSpec

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "examples" / "chestxray" / "build" / "components.json"


def _sbatch(cluster, *args: str) -> str:
    return subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **cluster.env}).stdout.strip().split(";")[0]


def _until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_state_dir_the_node_does_not_share_is_reported_as_such(tmp_path, cluster):
    if not COMPONENTS.exists():
        pytest.skip(f"{COMPONENTS} is missing: run `make images` first")
    spec = ContainerSpec.from_record(json.loads(COMPONENTS.read_text())["second_model"])
    # Both nodes busy, so the task's job waits while its marker is swapped for another filesystem's.
    blockers = [_sbatch(cluster, "-w", node, "--job-name=blocker", "-o", "/dev/null", "--wrap", "sleep 120")
                for node in ("n1", "n2")]
    try:
        _until(lambda: all(cluster.state(b) == "RUNNING" for b in blockers), "the blockers to run")
        runner = SlurmRunner(tmp_path / "slurm", tmp_path / "containers", RuntimeSpec(executor="slurm"),
                             environ={**os.environ, **cluster.env}, poll_s=0.2)
        (tmp_path / "data").mkdir()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                runner.run_task(spec, "infer", {"data_path": tmp_path / "data", "output_path": tmp_path / "pred"},
                                log_path=tmp_path / "infer.log")
            except BaseException as e:  # noqa: BLE001 - checked below
                failures.append(e)

        t = threading.Thread(target=run)
        t.start()
        _until(lambda: list((tmp_path / "slurm").glob("*/job.json")), "the job to be submitted")
        (marker,) = (tmp_path / "slurm").glob("*/marker")
        marker.write_text("what-another-filesystem-holds")
    finally:
        subprocess.run(["scancel", *blockers], env={**os.environ, **cluster.env}, check=False)
    t.join(120)
    assert not t.is_alive()
    (e,) = failures
    assert isinstance(e, SharedStateError), e
    assert "not on a filesystem the nodes share" in str(e) and str(marker.parent) in str(e)
    assert "on node n" in str(e)
