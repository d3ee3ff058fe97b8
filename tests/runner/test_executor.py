"""The executor seam: `runtime.executor` / `runtime.slurm` in the manifest and apply's --executor reach the runner
apply builds, and the plan says where the container tasks run (the Slurm side for real: tests/slurm)."""

from __future__ import annotations

import dataclasses
import io
import threading

import pytest

from runner.cli import main
from runner.clients.slurm import gres_of, time_limit
from runner.model import RuntimeSpec, SlurmSpec
from tests.runner.fakes import FakeRunner


def _with_runtime(ws, text: str) -> None:
    ws.manifest.write_text(ws.manifest.read_text().replace("datasets:\n", f"runtime:\n{text}datasets:\n", 1))


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


SLURM = ('  executor: slurm\n  slurm: {partition: gpu, account: radiology, time_limit: 4h, gres: "gpu:1",\n'
         '          extra_args: ["--qos=normal"]}\n')


def test_the_plan_says_the_container_tasks_run_on_slurm(ws):
    _with_runtime(ws, SLURM)
    r = ws.run("plan", str(ws.manifest))
    assert r.code == 2, r.err
    (line,) = [ln for ln in r.out.splitlines() if "+ prepare" in ln]
    assert line.endswith("(local only; slurm partition gpu; status reports)"), line
    assert "slurm" not in "".join(ln for ln in r.out.splitlines() if "+ register" in ln)  # nothing runs there


def test_the_docker_executor_plan_is_unchanged(ws):
    r = ws.run("plan", str(ws.manifest))
    (line,) = [ln for ln in r.out.splitlines() if "+ prepare" in ln]
    assert line.endswith("(local only; status reports)"), line


def test_the_manifest_slurm_settings_reach_the_runner_and_executor_overrides_them(ws):
    _with_runtime(ws, SLURM)
    code, text, seen = _apply(ws)
    assert code == 0, text
    assert [r.executor for r in seen] == ["slurm"]
    assert seen[0].slurm == SlurmSpec(partition="gpu", account="radiology", time_limit="4h", gres="gpu:1",
                                      extra_args=("--qos=normal",))
    code, text, seen = _apply(ws, "--executor", "docker")
    assert code == 0 and [r.executor for r in seen] in ([], ["docker"]), text


def test_apply_executor_slurm_without_a_runtime_block(ws):
    code, text, seen = _apply(ws, "--executor", "slurm")
    assert code == 0, text
    assert [r.executor for r in seen] == ["slurm"]
    assert "slurm" in text  # the step lines say so too


@pytest.mark.parametrize("bad", ["  executor: kubernetes\n", "  slurm: {time_limit: soon}\n",
                                 "  slurm: {extra_args: [qos=normal]}\n", "  slurm: {nodes: 2}\n"])
def test_bad_slurm_settings_are_manifest_errors(ws, bad):
    _with_runtime(ws, bad)
    r = ws.run("validate", str(ws.manifest))
    assert r.code == 1 and "runtime" in r.err, r.err


@pytest.mark.parametrize(("given", "sbatch"), [("30m", "30"), ("4h", "240"), ("2d", "2-00:00:00"), ("45s", "1"),
                                               ("1:30:00", "1:30:00"), (None, None)])
def test_time_limits_become_sbatch_time(given, sbatch):
    assert time_limit(given) == sbatch


@pytest.mark.parametrize(("gpus", "gres", "want"), [(None, None, None), (2, None, "gpu:2"), ("1", None, "gpu:1"),
                                                    ("device=0,3", None, "gpu:2"), ("all", None, None),
                                                    ("all", "gpu:a100:4", "gpu:a100:4"), (0, None, None)])
def test_gpus_map_to_gres(gpus, gres, want):
    assert gres_of(RuntimeSpec(gpus=gpus, executor="slurm", slurm=SlurmSpec(gres=gres))) == want


class OverlapRunner(FakeRunner):
    """Counts how many prepare tasks run at once (each waits a little for another to join it)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.joined = threading.Event()

    def run_task(self, spec, task, volumes, **kw):
        if task != "prepare":
            return super().run_task(spec, task, volumes, **kw)
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            if self.now > 1:
                self.joined.set()
        self.joined.wait(1.0)  # a second dataset's prepare arrives meanwhile when datasets run at once
        try:
            return super().run_task(spec, task, volumes, **kw)
        finally:
            with self.lock:
                self.now -= 1


def _two_datasets(ws) -> None:
    other = ws.root / "raw2"
    (other / "images").mkdir(parents=True)
    (other / "labels").mkdir()
    (other / "images" / "x.png").write_bytes(b"another image")
    (other / "labels" / "labels.csv").write_text("Image ID,Label\nx,mass\n")
    second = ws.manifest.read_text().split("datasets:\n", 1)[1].replace("name: mytestdata", "name: seconddata") \
        .replace("raw/images", "raw2/images").replace("raw/labels", "raw2/labels")
    ws.manifest.write_text(ws.manifest.read_text() + second)


@pytest.mark.parametrize(("parallel", "most"), [("2", 2), ("1", 1)])
def test_independent_datasets_are_prepared_at_once_up_to_parallel(ws, parallel, most):
    ws.runner = OverlapRunner()
    _two_datasets(ws)
    r = ws.run("apply", "--yes", str(ws.manifest), "--parallel", parallel)
    assert r.code == 0, r.out + r.err
    assert ws.runner.most == most
    assert ws.runner.tasks_run().count("prepare") == 2
    lines = [ln for ln in r.out.splitlines() if "register" in ln or "prepare" in ln or "set operational" in ln]
    assert len(lines) >= 6, r.out
