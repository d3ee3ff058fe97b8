"""DockerRunner behaviour that needs no engine: errors raised before Docker is contacted, engine unreachable,
GPU arguments."""

from __future__ import annotations

import pytest

from runner.clients import containers
from runner.clients.containers import DockerRunner
from runner.errors import ContainerSpecError, DockerUnavailable
from tests.containers.helpers import spec_for

HASH = "sha256:" + "b" * 64
TASKS = {
    "infer": {"input_volumes": {"data_path": {"mount_path": "/d", "type": "directory"},
                                "parameters_file": {"mount_path": "/p.yaml", "type": "file"}},
              "output_volumes": {"output_path": {"mount_path": "/o", "type": "directory"}}},
}


@pytest.fixture
def no_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    return DockerRunner(tmp_path / "cache")


def test_unreachable_engine_says_how_to_fix_it(no_engine):
    spec = spec_for("x/y:1", HASH, TASKS, parameters={})
    with pytest.raises(DockerUnavailable) as info:
        no_engine.check_image(spec)
    assert "DOCKER_HOST" in str(info.value) and "start the Docker engine" in str(info.value)


def test_spec_errors_come_before_the_engine_is_contacted(no_engine, tmp_path):
    spec = spec_for("x/y:1", HASH, TASKS, parameters={})
    with pytest.raises(ContainerSpecError, match="has no task 'evaluate'"):
        no_engine.run_task(spec, "evaluate", {}, log_path=tmp_path / "l")
    with pytest.raises(ContainerSpecError, match="declares volume output_path, which is not supplied"):
        no_engine.run_task(spec, "infer", {"data_path": tmp_path}, log_path=tmp_path / "l")
    no_params = spec_for("x/y:1", HASH, TASKS, parameters=None)
    with pytest.raises(ContainerSpecError, match="mounts parameters_file but the container has no parameters_config"):
        no_engine.run_task(no_params, "infer", {"data_path": tmp_path, "output_path": tmp_path / "o"},
                           log_path=tmp_path / "l")
    assert not (tmp_path / "o").exists()


def test_runs_as_nobody_when_the_caller_is_root(monkeypatch, tmp_path):
    monkeypatch.setattr(containers.os, "getuid", lambda: 0)
    monkeypatch.setattr(containers.os, "getgid", lambda: 0)
    runner = DockerRunner(tmp_path)
    assert (runner.uid, runner.gid) == (containers.NOBODY, containers.NOBODY)
    monkeypatch.setattr(containers.os, "getuid", lambda: 1000)
    monkeypatch.setattr(containers.os, "getgid", lambda: 1001)
    assert (DockerRunner(tmp_path).uid, DockerRunner(tmp_path).gid) == (1000, 1001)


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), (0, None), ("0", None),
    ("all", [{"Count": -1}]), (2, [{"Count": 2}]), ("device=0,2", [{"DeviceIDs": ["0", "2"]}]),
])
def test_gpu_values_follow_medperf(value, expected):
    requests = containers._device_requests(value, "here")
    if expected is None:
        assert requests is None
    else:
        assert [{k: r[k] for k in expected[0]} for r in requests] == expected
        assert requests[0]["Capabilities"] == [["gpu"]]


def test_bad_gpu_value_is_a_spec_error():
    with pytest.raises(ContainerSpecError, match="gpus 'many'"):
        containers._device_requests("many", "here")
