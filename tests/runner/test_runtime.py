"""The site's GPUs and shared memory: `runtime:` in the manifest, apply's --gpus and --shm-size over it, both
handed to the container runner that apply builds (the engine side is tests/containers/test_registry.py)."""

from __future__ import annotations

import dataclasses
import io

import pytest

from runner.cli import main
from runner.model import RuntimeSpec


def _apply(ws, *extra: str) -> tuple[int, str, list[RuntimeSpec]]:
    seen: list[RuntimeSpec] = []

    def runner(state, runtime=None):
        seen.append(runtime)
        return ws.runner

    clients = dataclasses.replace(ws.clients(), runner=runner)
    out, err = io.StringIO(), io.StringIO()
    code = main(["apply", "--yes", str(ws.manifest), "--state-dir", str(ws.state_dir), *extra], stdout=out,
                stderr=err, stdin=io.StringIO(""), environ=ws.environ, clients=clients)
    return code, out.getvalue() + err.getvalue(), seen


def _with_runtime(ws, text: str) -> None:
    ws.manifest.write_text(ws.manifest.read_text().replace("datasets:\n", f"runtime:\n{text}datasets:\n", 1))


def test_the_manifest_runtime_reaches_the_container_runner(ws):
    _with_runtime(ws, "  gpus: device=0,1\n  shm_size: 2g\n")
    code, text, seen = _apply(ws)
    assert code == 0, text
    assert [(r.gpus, r.shm_size) for r in seen] == [("device=0,1", "2g")]
    assert ws.runner.tasks_run() == ["prepare", "sanity_check", "statistics"]


def test_apply_options_override_the_runtime_and_none_given_leaves_run_args(ws):
    _with_runtime(ws, "  gpus: all\n  shm_size: 1g\n")
    code, text, seen = _apply(ws, "--gpus", "0", "--shm-size", "512m")
    assert code == 0, text
    assert [(r.gpus, r.shm_size) for r in seen] == [("0", "512m")]  # --gpus 0: no GPU, whatever is asked


def test_no_runtime_and_no_options_leave_each_tasks_run_args(ws):
    code, text, seen = _apply(ws)
    assert code == 0, text
    assert [(r.gpus, r.shm_size) for r in seen] == [(None, None)]


@pytest.mark.parametrize("argv", [["--gpus", "some"], ["--gpus", "device="], ["--shm-size", "lots"]])
def test_bad_options_are_usage_errors_before_anything_runs(ws, argv):
    code, text, seen = _apply(ws, *argv)
    assert code == 64 and seen == [] and ws.api.sent() == [], text
    assert argv[1] in text


def test_a_bad_runtime_is_a_manifest_error_with_its_place(ws):
    _with_runtime(ws, "  gpus: many\n  cpus: 4\n")
    r = ws.run("validate", str(ws.manifest))
    assert r.code == 1
    assert "manifest.yaml:7:" in r.out + r.err and "runtime.gpus" in r.out + r.err
    assert "unknown key 'cpus'" in r.out + r.err
