"""Images as hospitals get them: pushed to a real registry (Debian's docker-registry on loopback), pulled by digest
when absent, refused when the registry's tag names another digest, a registry that does not answer named; image
archives (DockerArchive) fetched over HTTP, SHA-256 checked, loaded once; GPUs and shared memory asked of the
engine exactly as MedPerf's --gpus and --shm-size do (read back from the created container)."""

from __future__ import annotations

import hashlib
import secrets
import socket

import pytest

from runner.clients.containers import OWNER_LABEL, DockerRunner
from runner.errors import ContainerError, ImageMismatch
from server.loopback import static_files
from tests.containers.helpers import build_test_image, spec_for

pytestmark = pytest.mark.docker

SAY = {"say.py": "import sys\nprint(open('/app/word').read().strip(), *sys.argv[1:])\n"}
TASKS = {"say": {"run_args": {"command": ["python3", "/app/say.py"]}}}


def _image(client, base: str, word: str) -> tuple[str, str]:
    """A throwaway image printing `word` (content unique to this test run): (tag, image id)."""
    tag = f"medperf-apply/test-registry-{word}:latest"
    return tag, build_test_image(client, base, tag, {**SAY, "word": word})


def _push(client, image_id: str, reference: str) -> str:
    """Tag and push; return the digest the registry reported (the push's aux line)."""
    repo, tag = reference.rsplit(":", 1)
    client.images.get(image_id).tag(repo, tag)
    digest = None
    for line in client.images.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest") or digest
    assert digest and digest.startswith("sha256:")
    return digest


def _forget(client, *references: str) -> None:
    """Remove images from the engine (each test's images are its own)."""
    import docker

    for ref in references:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


def _containers_of(client, runner: DockerRunner) -> list:
    return client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={runner._owner}"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pushed(docker_client, base_image, registry):
    """A unique image pushed as REGISTRY/medperf-apply-test/say-<w>:v1, then removed from the engine."""
    word = secrets.token_hex(6)
    tag, image_id = _image(docker_client, base_image, word)
    reference = f"{registry}/medperf-apply-test/say-{word}:v1"
    digest = _push(docker_client, image_id, reference)
    _forget(docker_client, reference, tag)
    assert all(image_id != i.id for i in docker_client.images.list())  # absent: a run must pull it
    yield reference, digest, word, image_id
    _forget(docker_client, image_id)


def test_an_absent_image_is_pulled_by_digest_checked_and_run(pushed, runner, docker_client, tmp_path):
    reference, digest, word, image_id = pushed
    spec = spec_for(reference, digest, TASKS, name="say")
    progress: list[tuple[int, int]] = []
    assert runner.check_image(spec, on_progress=lambda done, total: progress.append((done, total))) == digest
    assert progress and progress[-1][0] == progress[-1][1] > 0  # the layer bytes, to the last one
    pulled = docker_client.images.get(f"{reference.rsplit(':', 1)[0]}@{digest}")
    assert pulled.id == image_id and pulled.tags == []  # pulled by digest: no tag was trusted
    lines: list[str] = []
    runner.run_task(spec, "say", {}, log_path=tmp_path / "say.log", on_line=lines.append)
    assert lines == [word]


def test_a_tag_moved_to_another_digest_is_refused_before_anything_is_pulled_or_run(
        pushed, runner, docker_client, base_image, tmp_path):
    reference, digest, _word, image_id = pushed
    other_tag, other_id = _image(docker_client, base_image, secrets.token_hex(6))
    moved = _push(docker_client, other_id, reference)  # the same tag now names another image
    _forget(docker_client, reference, other_tag, other_id)
    spec = spec_for(reference, digest, TASKS, name="say")
    with pytest.raises(ImageMismatch) as info:
        runner.run_task(spec, "say", {}, log_path=tmp_path / "say.log")
    message = str(info.value)
    assert digest in message and moved in message and reference.split("/")[0] in message
    assert "nothing was pulled or run" in message
    assert all(i.id not in (image_id, other_id) for i in docker_client.images.list())
    assert _containers_of(docker_client, runner) == [] and not (tmp_path / "say.log").exists()


def test_an_image_the_registry_does_not_hold_is_named(registry, runner, tmp_path):
    reference = f"{registry}/medperf-apply-test/never-pushed-{secrets.token_hex(4)}:v1"
    with pytest.raises(ContainerError) as info:
        runner.check_image(spec_for(reference, "sha256:" + "a" * 64, TASKS))
    assert f"registry {registry} has no image {reference}" in str(info.value)


def test_a_registry_that_does_not_answer_is_named(docker_client, runner, tmp_path):
    down = f"127.0.0.1:{_free_port()}"
    spec = spec_for(f"{down}/medperf-apply-test/say:v1", "sha256:" + "c" * 64, TASKS)
    with pytest.raises(ContainerError) as info:
        runner.run_task(spec, "say", {}, log_path=tmp_path / "say.log")
    message = str(info.value)
    assert f"cannot reach the image registry {down}" in message and f"check that {down} answers" in message
    assert _containers_of(docker_client, runner) == []


# -- DockerArchive ------------------------------------------------------------------------------------------


@pytest.fixture
def archive(docker_client, base_image, tmp_path):
    """A unique image saved as an archive in a folder served over HTTP, then removed from the engine."""
    word = secrets.token_hex(6)
    tag, image_id = _image(docker_client, base_image, word)
    served = tmp_path / "served"
    served.mkdir()
    path = served / "say.tar"
    with open(path, "wb") as f:
        for chunk in docker_client.images.get(tag).save(named=True):
            f.write(chunk)
    _forget(docker_client, tag)
    with static_files(served) as url:
        yield url + "say.tar", path, hashlib.sha256(path.read_bytes()).hexdigest(), word, image_id
    _forget(docker_client, image_id)


def _archive_record(url: str, sha256: str):
    from runner.container_spec import ContainerSpec

    return ContainerSpec.from_record({"id": 7, "name": "say-archive", "image_hash": sha256, "parameters_config": None,
                                      "container_config": {"container_type": "DockerArchive", "image": url,
                                                           "tasks": TASKS}})


def test_an_archive_is_fetched_checked_loaded_once_and_run(archive, runner, docker_client, tmp_path):
    url, path, sha256, word, image_id = archive
    spec = _archive_record(url, sha256)  # the bare hex digest, as MedPerf's CLI records a file's hash
    assert spec.image_hash == f"sha256:{sha256}"
    lines: list[str] = []
    runner.run_task(spec, "say", {}, log_path=tmp_path / "a.log", on_line=lines.append)
    assert lines == [word] and docker_client.images.get(image_id)
    path.unlink()  # cached by hash: the second run neither downloads nor loads
    runner.run_task(spec, "say", {}, log_path=tmp_path / "b.log", on_line=lines.append)
    assert lines == [word, word]


def test_a_tampered_archive_is_refused_before_it_is_loaded(archive, runner, docker_client, tmp_path):
    url, path, sha256, _word, image_id = archive
    path.write_bytes(path.read_bytes() + b"\0" * 512)  # still a valid tar, not the registered one
    spec = _archive_record(url, sha256)
    with pytest.raises(ImageMismatch) as info:
        runner.run_task(spec, "say", {}, log_path=tmp_path / "a.log")
    message = str(info.value)
    assert sha256 in message and hashlib.sha256(path.read_bytes()).hexdigest() in message
    assert "it was not loaded" in message
    assert all(i.id != image_id for i in docker_client.images.list())
    assert list((runner.cache_dir / "archives").iterdir()) == []  # nothing kept of it
    assert _containers_of(docker_client, runner) == []


# -- GPUs and shared memory ---------------------------------------------------------------------------------


def _gpu_spec(base_image: str, docker_client, run_args: dict | None = None):
    image_id = docker_client.images.get(base_image).id
    return spec_for(base_image, image_id, {"say": {"run_args": {"command": ["true"], **(run_args or {})}}},
                    name="gpu")


def _host_config(runner: DockerRunner, spec) -> dict:
    with runner.created(spec, "say", {}) as container:
        container.reload()
        return container.attrs["HostConfig"]


GPU_CASES = [
    ("all", [{"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]),
    ("2", [{"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]),
    ("device=0,2", [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]], "Options": {}}]),
]


@pytest.mark.parametrize(("gpus", "expected"), GPU_CASES, ids=[c[0] for c in GPU_CASES])
def test_gpus_asked_reach_the_engine_as_device_requests(gpus, expected, docker_client, base_image, tmp_path):
    runner = DockerRunner(tmp_path / "cache", client=docker_client, gpus=gpus, shm_size="2g")
    host = _host_config(runner, _gpu_spec(base_image, docker_client))
    assert host["DeviceRequests"] == expected
    assert host["ShmSize"] == 2 * 1024 ** 3
    assert _containers_of(docker_client, runner) == []  # removed on leaving created()


def test_run_args_are_the_default_and_the_command_line_overrides_them(docker_client, base_image, tmp_path):
    spec = _gpu_spec(base_image, docker_client, {"gpus": 1, "shm_size": "256m"})
    host = _host_config(DockerRunner(tmp_path / "a", client=docker_client), spec)
    assert [r["Count"] for r in host["DeviceRequests"]] == [1] and host["ShmSize"] == 256 * 1024 ** 2
    host = _host_config(DockerRunner(tmp_path / "b", client=docker_client, gpus="0", shm_size="1g"), spec)
    assert not host["DeviceRequests"] and host["ShmSize"] == 1024 ** 3  # --gpus 0: none, as MedPerf


def test_a_task_without_gpus_asked_gets_none(docker_client, base_image, tmp_path):
    host = _host_config(DockerRunner(tmp_path / "c", client=docker_client), _gpu_spec(base_image, docker_client))
    assert not host["DeviceRequests"] and host["ShmSize"] == 64 * 1024 ** 2  # the engine's default /dev/shm


def test_gpus_on_an_engine_without_gpu_support_fail_saying_so(docker_client, base_image, tmp_path):
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime: the GPU request may succeed")
    runner = DockerRunner(tmp_path / "d", client=docker_client, gpus="all")
    with pytest.raises(ContainerError) as info:
        runner.run_task(_gpu_spec(base_image, docker_client), "say", {}, log_path=tmp_path / "g.log")
    assert "no GPU support" in str(info.value) and "--gpus" in str(info.value)
    assert _containers_of(docker_client, runner) == []

