"""Fixtures for the container tests: the chest X-ray example images (built when missing) and toy data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.clients.containers import DockerRunner
from runner.container_spec import ContainerSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "chestxray"
COMPONENTS = EXAMPLE / "build" / "components.json"
BASE_IMAGE = os.environ.get("BASE_IMAGE", "medperf-apply/python-base:bookworm")


def _components_current(client) -> bool:
    import docker

    if not COMPONENTS.is_file():
        return False
    components = json.loads(COMPONENTS.read_text())
    if not {"archive_model", "demo_dataset"} <= set(components):
        return False  # written by an older build
    registry = os.environ.get("MEDPERF_REGISTRY")
    for key in ("prep", "reference_model", "metrics", "second_model"):
        record = components[key]
        if registry and not record["container_config"]["image"].startswith(registry + "/"):
            return False  # built without the registry now given: push there
        try:
            image = client.images.get(record["container_config"]["image"])
        except docker.errors.ImageNotFound:
            return False
        digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests") or [] if "@" in d]
        if record["image_hash"] != image.id and record["image_hash"] not in digests:  # a local id, or pushed
            return False
    return True


@pytest.fixture(scope="session")
def chestxray(docker_client, tmp_path_factory) -> dict[str, ContainerSpec]:
    """The four example containers as ContainerSpecs, keyed as components.json; runs build.sh when stale.

    Under pytest-xdist every worker has this session fixture: a lock beside the workers' temp dirs lets one
    build while the others wait, then find the images current."""
    import fcntl

    lock_path = tmp_path_factory.getbasetemp().parent / "chestxray-build.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _components_current(docker_client):
            env = {**os.environ, "PYTHON": sys.executable}
            subprocess.run(["bash", str(EXAMPLE / "build.sh")], check=True, env=env, timeout=900)
        records = json.loads(COMPONENTS.read_text())
    return {key: ContainerSpec.from_record(record) for key, record in records.items() if "container_config" in record}


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The base image the examples build on (build.sh makes it when missing)."""
    import docker

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"base image {BASE_IMAGE} is missing: run `make images` first", pytrace=False)
    return BASE_IMAGE


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """Toy raw data (images/, labels/labels.csv) made by make_data.py, and its (Image ID, Label) rows."""
    out = tmp_path_factory.mktemp("raw")
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(out), "--cases", "56", "--seed", "7"],
                   check=True, capture_output=True)
    with open(out / "labels" / "labels.csv", newline="") as f:
        rows = [(r["Image ID"], r["Label"]) for r in csv.DictReader(f)]
    return out, rows


@pytest.fixture
def runner(docker_client, tmp_path) -> DockerRunner:
    return DockerRunner(tmp_path / "cache", client=docker_client)
