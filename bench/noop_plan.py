"""No-op `medperf-apply plan` on the converged tutorial manifest, for 1, 10 and 100 approved models.

Starts the registry on loopback (seeded with the example components) and converges the tutorial manifest
with the real Docker engine (apply -> exit 3 -> approve as testbo -> apply -> exit 0). Then, per stage, times
`medperf-apply plan` as a fresh process RUNS times (as a user runs it, Python start-up included) and reads
the request count from its event log. The extra models are registered through the API as testmo (the linear
image's container record, unique names and parameters), associated and approved by testbo; their results
are created and finalized through the API as the data owner, with matching local state, instead of running
99 containers (`--run-extra` runs them for real up to the 10-model stage).
Target: median under 0.3 s, at most 8 HTTP requests, the same count at 1 and 100 models.
Needs `make images` and a Docker engine at DOCKER_HOST. `--profile` adds where a plan's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.world import (  # noqa: E402
    EXE,
    BenchError,
    add_models,
    approve,
    docker_ready,
    events,
    expect,
    finalize_results,
    load_average,
    my_dataset_id,
    tutorial_world,
)

STAGES = (1, 10, 100)  # approved models besides the reference model


def time_plans(world, runs: int, *, bytecode: bool = True) -> tuple[list[float], list[int]]:
    times, requests = [], []
    log = world.root / "plan-events.jsonl"
    for _ in range(runs):
        log.unlink(missing_ok=True)
        r = world.medperf_apply("plan", *world.common(), "--event-log", str(log), bytecode=bytecode)
        expect(r, 0, "no-op plan (0 = nothing to do)")
        times.append(r.seconds)
        requests.append(next(e["requests"] for e in events(log) if e["event"] == "plan"))
    return times, requests


def startup_floor(world, runs: int) -> float:
    """The interpreter alone, with the venv's site (as the console script starts)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=world.env())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def profile(world) -> None:
    """Where a no-op plan's time goes: the heaviest imports (-X importtime) and the cProfile top."""
    env = world.env()
    p = subprocess.run([sys.executable, "-X", "importtime", EXE, "plan", *world.common()], env=env,
                       capture_output=True, text=True)
    rows = []
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line[len("import time:"):].split("|")
            if cum.strip().isdigit() and not name[1:].startswith(" "):  # imported by the command itself
                rows.append((int(cum), name.strip()))
    total = sum(c for c, _ in rows)
    print(f"profile: what a plan imports, {total / 1000:.0f} ms in all (-X importtime, cumulative, heaviest first):")
    for cum, name in sorted(rows, reverse=True)[:12]:
        print(f"  {cum / 1000:7.1f} ms  {name}")
    out = world.root / "plan.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), EXE, "plan", *world.common()], env=env,
                   capture_output=True)
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(out), stream=buf).sort_stats("cumulative").print_stats("runner/", 18)
    print("profile: cProfile of one plan, runner functions by cumulative time (imports included):")
    for line in buf.getvalue().splitlines():
        if line.strip() and ("{" in line or "/" in line or "ncalls" in line):
            print("  " + line.strip()[:150])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11, help="fresh-process plans per stage (default 11)")
    ap.add_argument("--run-extra", action="store_true", help="run the 10-model stage's extra models for real")
    ap.add_argument("--profile", action="store_true", help="print imports and a cProfile of one plan")
    args = ap.parse_args()
    why = docker_ready()
    if why:
        print(f"skipped: {why}")
        return 0
    print(f"load average before: {load_average()}")
    with tutorial_world("bench-noop-") as world:
        t = time.perf_counter()
        expect(world.medperf_apply("apply", "--yes", *world.common()), 3, "first apply (waits at the approval gate)")
        approve(world)
        expect(world.medperf_apply("apply", "--yes", *world.common()), 0, "second apply (converges)")
        print(f"converge with real containers (apply, approve, apply): {time.perf_counter() - t:.1f} s")
        floor = startup_floor(world, args.runs)
        print(f"python start-up alone (venv, `-c pass`): median {floor * 1000:.0f} ms")
        cold, _ = time_plans(world, 3, bytecode=False)
        print(f"no-op plan without compiled bytecode (PYTHONDONTWRITEBYTECODE, as on this machine): median "
              f"{statistics.median(cold) * 1000:.0f} ms; the figures below keep bytecode, as an installed package does")
        ds = my_dataset_id(world)
        have, figures = 1, {}
        for stage in STAGES:
            if stage > have:
                new = add_models(world, stage - have, start=have)
                if args.run_extra and stage <= 10:
                    expect(world.medperf_apply("apply", "--yes", *world.common()), 0, f"apply {len(new)} new models")
                    how = "run for real"
                else:
                    finalize_results(world, new, dataset_id=ds)
                    how = "results finalized through the API"
                print(f"+{len(new)} approved models ({how})")
                have = stage
            times, requests = time_plans(world, args.runs)
            med = statistics.median(times)
            figures[stage] = (med, max(requests), min(requests))
            print(f"{stage:3d} approved models: no-op plan median {med * 1000:4.0f} ms (min {min(times) * 1000:.0f}, "
                  f"max {max(times) * 1000:.0f}, {args.runs} runs), HTTP requests {min(requests)}-{max(requests)}, "
                  f"load {load_average()}")
        if args.profile:
            profile(world)
    worst = max(m for m, _, _ in figures.values())
    reqs = {r for _, r, _ in figures.values()} | {r for _, _, r in figures.values()}
    ok = worst < 0.3 and max(reqs) <= 8 and len(reqs) == 1
    print(f"targets (median < 300 ms, <= 8 requests, same count at 1 and 100 models): {'met' if ok else 'NOT met'}")
    print(f"noop_plan: median {figures[1][0] * 1000:.0f}/{figures[10][0] * 1000:.0f}/{figures[100][0] * 1000:.0f} ms "
          f"at 1/10/100 models = {worst / 0.3:.2f}x of 0.3 s; requests {'/'.join(str(figures[s][1]) for s in STAGES)}"
          f" (target <= 8); start-up floor {floor * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(e.code)
        sys.exit(1)
