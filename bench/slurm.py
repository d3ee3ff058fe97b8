"""N models (N = 4) run serially with the docker executor vs as Slurm jobs on the cluster's two one-CPU nodes.

Two fresh worlds (seeded registry, tutorial manifest, toy data): in each, `apply --yes` (exit 3 at the gate),
N - 1 more models approved (with model 2: N models to run), the association approved, then `apply --yes` again;
the figure is that second apply's run phase (first run_model start -> last end, from the event log): with
`--parallel 1` on this machine's engine, and with `executor: slurm` and `--parallel N` (each infer and evaluate
one job; the cluster runs two at a time). Target: Slurm at most 0.6x the serial wall time.
Skips with a line when no Slurm cluster (SLURM_CONF, `.ci/services.sh start-slurm`) or Docker engine answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.world import (  # noqa: E402
    add_models,
    approve,
    docker_ready,
    expect,
    load_average,
    tutorial_world,
    warm_bytecode,
)
from tutorial import run_phase  # noqa: E402

N = 4
DEFAULT_CASES = 100  # the tutorial's toy data (make_data.py's default)
MAKE_DATA = Path(__file__).resolve().parents[1] / "examples" / "chestxray" / "make_data.py"
TARGET = 0.6
SLURM_RUNTIME = "runtime:\n  executor: slurm\n  slurm: {partition: debug}\n"


def slurm_ready() -> str | None:
    """Why no Slurm cluster can be used here, or None."""
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set (eval \"$(.ci/services.sh start-slurm)\")"
    if shutil.which("sinfo") is None:
        return "Slurm's commands are not installed"
    try:
        p = subprocess.run(["sinfo", "-h", "-N", "-t", "idle,mix,alloc", "-o", "%N %c"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    if p.returncode != 0 or not p.stdout.strip():
        return f"no Slurm node is up: {p.stderr.strip() or 'sinfo listed none'}"
    return None


def _spin(_: int) -> int:
    total = 0
    for i in range(3_000_000):
        total += i * i
    return total


def parallel_capacity() -> float:
    """How much faster two CPU-bound processes finish than one after the other, now (2.0: two idle cores).
    The cluster's nodes are this machine's cores: their parallelism is bounded by this figure."""
    import multiprocessing
    import time

    t = time.perf_counter()
    _spin(0)
    _spin(1)
    serial = time.perf_counter() - t
    with multiprocessing.Pool(2) as pool:
        t = time.perf_counter()
        pool.map(_spin, [0, 1])
        both = time.perf_counter() - t
    return serial / both


def empty_job_s(count: int = 4) -> tuple[float, float]:
    """Mean and worst time from `sbatch` of a job that does nothing to its end seen by `scontrol` (polled every
    20 ms): what Slurm itself costs a job here, whatever the job runs (the controller starts batch jobs at its
    scheduling passes, at best once a second: SchedulerParameters=sched_interval=1). Each is submitted at a random
    moment (not just after the pass that ended the one before, which would make every one wait a whole second)."""
    import random
    import time

    took = []
    for _ in range(count):
        time.sleep(random.uniform(0, 1))
        t = time.perf_counter()
        job = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.strip().split(";")[0]
        while "JobState=COMPLETED" not in subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                                                         text=True, timeout=20).stdout:
            time.sleep(0.02)
        took.append(time.perf_counter() - t)
    return sum(took) / len(took), max(took)


def cluster_cpus() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c"], capture_output=True, text=True, timeout=20).stdout
    return sum(int(line.split()[1]) for line in dict.fromkeys(out.splitlines()) if len(line.split()) == 2)


def one(pycache: Path, *, slurm: bool, cases: int) -> tuple[float, int]:
    """The run phase of N models in a fresh world, and how many model runs it saw end."""
    with tutorial_world("bench-slurm-", pycache=pycache) as world:
        if cases != DEFAULT_CASES:  # more toy data: longer tasks, the same per-job cost
            raw = world.root / "medperf_tutorial" / "sample_raw_data"
            shutil.rmtree(raw)
            subprocess.run([sys.executable, str(MAKE_DATA), "--out", str(raw), "--cases", str(cases)], check=True,
                           capture_output=True)
        if slurm:
            text = world.manifest.read_text()
            world.manifest.write_text(text.replace("datasets:\n", SLURM_RUNTIME + "datasets:\n", 1))
        common = world.common()
        expect(world.medperf_apply("apply", "--yes", *common), 3, "first apply (waits at the approval gate)")
        add_models(world, N - 1)
        approve(world)
        log = world.root / "events.jsonl"
        parallel = str(N) if slurm else "1"
        expect(world.medperf_apply("apply", "--yes", *common, "--parallel", parallel, "--event-log", str(log)), 0,
               "second apply (runs the models)")
        return run_phase(log)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=DEFAULT_CASES, help="toy data cases (default: the tutorial's "
                    f"{DEFAULT_CASES}); more make each task longer while a job's own cost stays")
    args = ap.parse_args()
    why = docker_ready() or slurm_ready()
    if why:
        print(f"skipped: {why}")
        return 0
    capacity = parallel_capacity()
    print(f"load average before: {load_average()}; the cluster has {cluster_cpus()} CPUs; two CPU-bound processes "
          f"run {capacity:.2f}x as fast as one after the other here now (best ratio reachable: {1 / capacity:.2f}x)")
    mean, worst = empty_job_s()
    print(f"an empty Slurm job, sbatch -> its end seen: {mean:.2f} s on average, {worst:.2f} s at worst (the "
          "controller starts batch jobs at its scheduling pass, once a second)")
    with tempfile.TemporaryDirectory(prefix="bench-slurm-pycache-") as tmp:
        warm_bytecode(Path(tmp))
        serial, ran_serial = one(Path(tmp), slurm=False, cases=args.cases)
        on_slurm, ran_slurm = one(Path(tmp), slurm=True, cases=args.cases)
    if ran_serial != N or ran_slurm != N:
        print(f"FAILED: expected {N} model runs in each, saw {ran_serial} (docker) and {ran_slurm} (slurm)")
        return 1
    ratio = on_slurm / serial
    print(f"{N} models, infer + evaluate each, {args.cases} cases: serially with docker {serial:.1f} s; as Slurm jobs (--parallel {N}) "
          f"{on_slurm:.1f} s")
    print(f"ratio slurm/serial: {ratio:.2f}x (target at most {TARGET}x) -> {'ok' if ratio <= TARGET else 'MISSED'}")
    print(f"load average after: {load_average()}; parallel capacity now {parallel_capacity():.2f}x")
    return 0  # a missed target is a figure to report, as in the other benches: make bench goes on


if __name__ == "__main__":
    sys.exit(main())
