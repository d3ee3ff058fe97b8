"""DockerRunner's sandbox and failure handling on the real engine, with a hostile container built here."""

from __future__ import annotations

import errno
import json
import time

import pytest

from runner.clients.containers import DockerRunner
from runner.errors import ContainerError, ImageMismatch, Interrupted
from tests.containers.helpers import build_test_image, spec_for

# The leftover check lists every container of the hostile image: this module's tests must not run beside each
# other (make test's --dist loadfile keeps a module in one pytest-xdist worker).
pytestmark = pytest.mark.docker

IMAGE = "medperf-apply/test-hostile:latest"

HOSTILE = r'''
import json, os, socket, sys

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno_name(e)

def errno_name(e):
    import errno
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__

def connect(host, port):
    socket.create_connection((host, port), timeout=2).close()

status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
report = {
    "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "connect_public_ip": attempt(lambda: connect("1.1.1.1", 53)),
    "connect_host_gateway": attempt(lambda: connect("172.17.0.1", 80)),
    "dns": attempt(lambda: socket.getaddrinfo("example.com", 80)),
    "write_input": attempt(lambda: open("/mlcommons/volumes/data/evil.txt", "w").write("x")),
    "delete_input": attempt(lambda: os.unlink("/mlcommons/volumes/data/keep.txt")),
    "write_parameters": attempt(lambda: open("/mlcommons/volumes/parameters/parameters.yaml", "a").write("x")),
    "write_image_root": attempt(lambda: open("/etc/evil", "w").write("x")),
    "tmp_entries": sorted(os.listdir("/tmp")),
    "write_tmp": attempt(lambda: open("/tmp/scratch", "w").write("x")),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status.get("NoNewPrivs", "").strip(),
}
with open("/mlcommons/volumes/out/report.json", "w") as f:
    json.dump(report, f)
print("report written", flush=True)
'''

TASKS = {
    "hostile": {
        "run_args": {"command": "python3 /app/hostile.py"},
        "input_volumes": {"data_path": {"mount_path": "/mlcommons/volumes/data", "type": "directory"},
                          "parameters_file": {"mount_path": "/mlcommons/volumes/parameters/parameters.yaml",
                                              "type": "file"}},
        "output_volumes": {"output_path": {"mount_path": "/mlcommons/volumes/out", "type": "directory"}},
    },
    "crash": {"run_args": {"command": ["python3", "-c",
                                       "import sys, time\nfor i in range(30): print(f'line {i}', flush=True)\n"
                                       # stdout and stderr are separate pipes: let stdout drain first
                                       "time.sleep(0.3); print('boom: something broke', file=sys.stderr)\n"
                                       "sys.exit(3)"]}},
    "hang": {"run_args": {"command": ["python3", "-c", "import time; print('started', flush=True); time.sleep(120)"]}},
    "chatty": {"run_args": {"command": ["python3", "-c",
                                        "import time\nwhile True:\n    print('tick', flush=True); time.sleep(0.2)"]}},
    "whoami": {"run_args": {"command": ["python3", "-c", "import os; print(f'{os.getuid()}:{os.getgid()}')"]}},
}


@pytest.fixture(scope="module")
def hostile(docker_client, base_image):
    image_id = build_test_image(docker_client, base_image, IMAGE, {"hostile.py": HOSTILE})
    return spec_for(IMAGE, image_id, TASKS, parameters={"threshold": 0.5}, name="hostile")


def _leftover_containers(client, spec) -> list:
    return client.containers.list(all=True, filters={"label": f"medperf-apply.container={spec.name}"})


def test_hostile_container_is_sandboxed(hostile, runner, tmp_path, docker_client):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # only the read-only mount, not file permissions, may stop the writes below
    (data / "keep.txt").write_text("precious")
    seen = []  # the container as the engine describes it while it runs

    def inspect(line):
        seen.extend(c.attrs["HostConfig"] for c in _leftover_containers(docker_client, hostile))

    run = runner.run_task(hostile, "hostile", {"data_path": data, "output_path": tmp_path / "out"},
                          log_path=tmp_path / "hostile.log", on_line=inspect)
    assert run.exit_code == 0
    # this engine has no bridge network, so also check what was asked of it
    assert seen and seen[0]["NetworkMode"] == "none" and seen[0]["CapDrop"] == ["ALL"]
    assert seen[0]["SecurityOpt"] == ["no-new-privileges"] and not seen[0]["Privileged"]
    assert not seen[0]["DeviceRequests"]  # GPUs only when asked
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # not root, by default, even though these tests may run as root
    assert report["uid"] != 0 and report["euid"] != 0 and report["gid"] != 0
    # no network at all: only loopback, nothing reachable, no name resolution
    assert report["interfaces"] == ["lo"]
    assert report["connect_public_ip"] != "ok" and report["connect_host_gateway"] != "ok"
    assert report["dns"] != "ok"
    # inputs are read-only mounts
    assert report["write_input"] == errno.errorcode[errno.EROFS]
    assert report["delete_input"] == errno.errorcode[errno.EROFS]
    assert report["write_parameters"] in (errno.errorcode[errno.EROFS], errno.errorcode[errno.EACCES])
    assert not (data / "evil.txt").exists() and (data / "keep.txt").read_text() == "precious"
    assert report["write_image_root"] != "ok"
    # a private, writable /tmp that starts empty; no capabilities; no privilege gain
    assert report["write_tmp"] == "ok" and report["tmp_entries"] == []
    assert int(report["cap_eff"], 16) == 0 and int(report["cap_bnd"], 16) == 0
    assert report["no_new_privs"] == "1"
    assert _leftover_containers(docker_client, hostile) == []
    assert list((tmp_path / "cache" / "runs").iterdir()) == []  # scratch (/tmp, parameters) removed


def test_runs_as_the_given_uid_and_gid(hostile, docker_client, tmp_path):
    lines = []
    DockerRunner(tmp_path / "cache", client=docker_client, uid=4321, gid=1234).run_task(
        hostile, "whoami", {}, log_path=tmp_path / "w.log", on_line=lines.append)
    assert lines == ["4321:1234"]


def test_wrong_image_hash_is_refused_before_anything_runs(hostile, runner, tmp_path, docker_client):
    wrong = spec_for(IMAGE, "sha256:" + "0" * 64, TASKS, parameters={"threshold": 0.5}, name="hostile-wrong")
    with pytest.raises(ImageMismatch) as info:
        runner.run_task(wrong, "hostile", {"data_path": tmp_path, "output_path": tmp_path / "out"},
                        log_path=tmp_path / "h.log")
    message = str(info.value)
    assert "sha256:" + "0" * 64 in message and hostile.image_hash in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "h.log").exists()
    assert _leftover_containers(docker_client, wrong) == []
    assert runner.check_image(hostile) == hostile.image_hash


def test_crashing_task_reports_image_task_exit_code_and_last_lines(hostile, runner, tmp_path, docker_client):
    with pytest.raises(ContainerError) as info:
        runner.run_task(hostile, "crash", {}, log_path=tmp_path / "crash.log")
    err = info.value
    assert (err.image, err.task, err.container_exit_code) == (IMAGE, "crash", 3)
    assert len(err.last_lines) == 20 and err.last_lines[-1] == "boom: something broke"
    assert err.last_lines[0] == "line 11"
    assert "exited with code 3" in str(err) and "boom: something broke" in str(err)
    log = (tmp_path / "crash.log").read_text()
    assert "line 0\n" in log and "boom: something broke" in log
    assert err.log_path == str(tmp_path / "crash.log")
    assert _leftover_containers(docker_client, hostile) == []


def test_silent_task_stops_at_the_inactivity_timeout(hostile, runner, tmp_path, docker_client):
    started = time.monotonic()
    with pytest.raises(ContainerError) as info:
        runner.run_task(hostile, "hang", {}, log_path=tmp_path / "hang.log", inactivity_timeout=2, timeout=60)
    assert time.monotonic() - started >= 2  # it let the task be silent that long...
    # ...and then the inactivity timeout stopped it (not the wall-clock one, not the task's own end 120 s later)
    assert "inactivity timeout" in str(info.value) and info.value.last_lines == ("started",)
    assert info.value.container_exit_code is None and info.value.task == "hang"
    assert _leftover_containers(docker_client, hostile) == []


def test_busy_task_stops_at_the_wall_clock_timeout(hostile, runner, tmp_path, docker_client):
    started = time.monotonic()
    with pytest.raises(ContainerError) as info:
        runner.run_task(hostile, "chatty", {}, log_path=tmp_path / "chatty.log", inactivity_timeout=10, timeout=2)
    assert time.monotonic() - started >= 2  # the task ran its time, printing all along, then the timeout stopped it
    assert "wall-clock timeout" in str(info.value) and "tick" in info.value.last_lines
    assert _leftover_containers(docker_client, hostile) == []


def test_runner_default_timeouts_apply_when_a_call_gives_none(hostile, docker_client, tmp_path):
    """medperf-apply --task-idle-timeout / --task-timeout set these defaults for every task of a run."""
    runner = DockerRunner(tmp_path / "cache", client=docker_client, inactivity_timeout=2, timeout=60)
    started = time.monotonic()
    with pytest.raises(ContainerError) as info:
        runner.run_task(hostile, "hang", {}, log_path=tmp_path / "hang.log")
    assert time.monotonic() - started >= 2
    assert "inactivity timeout" in str(info.value)  # the runner's default stopped it, not the wall-clock one
    assert _leftover_containers(docker_client, hostile) == []


def test_ctrl_c_stops_and_removes_the_container(hostile, runner, tmp_path, docker_client):
    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        runner.run_task(hostile, "chatty", {}, log_path=tmp_path / "i.log", on_line=interrupt, timeout=60)
    assert _leftover_containers(docker_client, hostile) == []


def test_declared_key_not_supplied_is_a_spec_error(hostile, runner, tmp_path):
    from runner.errors import ContainerSpecError

    with pytest.raises(ContainerSpecError, match="task hostile declares volume data_path"):
        runner.run_task(hostile, "hostile", {"output_path": tmp_path / "out"}, log_path=tmp_path / "x.log")


def test_missing_input_folder_is_reported(hostile, runner, tmp_path):
    with pytest.raises(ContainerError, match="input volume data_path of hostile does not exist"):
        runner.run_task(hostile, "hostile", {"data_path": tmp_path / "nope", "output_path": tmp_path / "out"},
                        log_path=tmp_path / "x.log")
