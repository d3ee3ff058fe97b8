"""Fixtures of the Slurm executor's tests: the real cluster (.ci/services.sh start-slurm), skipped on a laptop,
required in CI (MEDPERF_REQUIRE_SLURM=1), and what Slurm recorded about the jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _unavailable


@dataclass(frozen=True)
class Job:
    """One finished job as jobcomp/filetxt recorded it (sacct -c)."""

    job_id: str
    name: str
    state: str
    exit_code: str
    node: str
    start: str
    end: str


class Cluster:
    """The Slurm cluster the tests submit to: its environment, and its records of jobs."""

    def __init__(self, conf: str):
        self.conf = conf
        self.env = {"SLURM_CONF": conf}

    def _run(self, *args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30,
                              env={**os.environ, **self.env}).stdout

    def finished(self) -> list[Job]:
        """Every finished job (jobcomp: COMPLETED, FAILED, CANCELLED, TIMEOUT...), oldest first."""
        out = self._run("sacct", "-c", "-n", "-P", "-S", "2000-01-01", "-o",
                        "JobID,JobName,State,ExitCode,NodeList,Start,End")
        return [Job(*line.split("|")[:7]) for line in out.splitlines() if line.count("|") >= 6]

    def queue(self) -> list[tuple[str, str, str]]:
        """(job id, name, state) of the jobs the controller knows (in flight, or ended less than MinJobAge ago)."""
        out = self._run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T")
        return [tuple(line.split("|")) for line in out.splitlines() if line.count("|") == 2]

    def state(self, job_id: str) -> str:
        out = self._run("scontrol", "show", "job", "-o", job_id)
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)["JobState"]


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster at SLURM_CONF with its nodes up (`eval "$(.ci/services.sh start-slurm)"`)."""
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        _unavailable("Slurm cluster", "MEDPERF_REQUIRE_SLURM", "SLURM_CONF is not set "
                     "(eval \"$(.ci/services.sh start-slurm)\")")
    if shutil.which("sbatch") is None:
        _unavailable("Slurm cluster", "MEDPERF_REQUIRE_SLURM", "sbatch is not installed")
    try:
        up = subprocess.run(["sinfo", "-h", "-N", "-t", "idle,mix,alloc", "-o", "%N"], capture_output=True,
                            text=True, timeout=20, env={**os.environ, "SLURM_CONF": conf})
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable("Slurm cluster", "MEDPERF_REQUIRE_SLURM", str(e))
    nodes = set(up.stdout.split())
    if up.returncode != 0 or len(nodes) < 2:
        _unavailable("Slurm cluster", "MEDPERF_REQUIRE_SLURM", f"sinfo found {sorted(nodes)} up (two nodes needed): "
                     f"{up.stderr.strip()}")
    assert Path(conf).exists()
    return Cluster(conf)
