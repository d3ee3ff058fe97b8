"""Registry server under 16 concurrent clients on loopback: GET a benchmark, GET /me/results/, POST a result.

Part 1 (threads): SQLite (temp file) and, when MEDPERF_PG_URL is set, a temporary PostgreSQL database, each with
1 and 4 cheroot threads in one process (`run --threads`, default 4). Prints p50/p99 latency, throughput and errors
per backend and thread count, then one headline line (the targets are judged at the default 4 threads). Target:
p99 under 50 ms, zero errors, judged per backend and only for a backend that was measured (PostgreSQL unreachable
or not configured: "not measured", no verdict).

Part 2 (processes): the same load through nginx to `run --workers 1` vs `--workers 2` on PostgreSQL (a fresh
database each), as a throughput ratio from one run, with where the two cores' time went (server processes,
nginx, the clients of this bench, PostgreSQL and the rest) and so what limits the ratio. Needs PostgreSQL and
nginx; otherwise "not measured". Bounded: ROUNDS iterations per client and a wall-clock cap.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.world import load_average  # noqa: E402

from server.cluster import ClusterError, nginx, nginx_binary, registry_process  # noqa: E402

TESTDO, TESTBO = "testdo@example.com", "testbo@example.com"
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 16
ROUNDS = 40  # per client, 3 requests each
WALL_CAP_S = 90


def postgres_unavailable(base_url: str | None) -> str | None:
    """None when PostgreSQL at `base_url` answers, else why it cannot be measured."""
    if not base_url:
        return "MEDPERF_PG_URL is not set"
    try:
        import psycopg  # only this bench's PostgreSQL half needs the driver

        psycopg.connect(base_url, autocommit=True, connect_timeout=10).close()
    except Exception as e:  # noqa: BLE001 - any failure means: no PostgreSQL to measure with
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'}"
    return None


@contextmanager
def postgres_database(base_url: str):
    import psycopg

    name = f"medperf_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (the server runs in its own process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@contextmanager
def served(db_url: str, threads: int, workdir: Path):
    """`medperf-server seed` then `medperf-server run` in its own process (as deployed); yield (port, tokens)."""
    cli = [sys.executable, "-m", "server.cli", "--db", db_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tokens_file = workdir / "tokens.json"
    subprocess.run(cli + ["seed", "--demo", "data", "--tokens-file", str(tokens_file)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    port = _free_port()
    proc = subprocess.Popen(cli + ["run", "--port", str(port), "--threads", str(threads)], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("bench: the server did not start") from None
                time.sleep(0.05)
        yield port, json.loads(tokens_file.read_text()), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Client:
    """One keep-alive HTTP/1.1 connection with a bearer token (http.client: little client-side overhead)."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        self.conn.request(method, "/api/v0" + path, body=json.dumps(body) if body is not None else None,
                          headers=self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()


def prepare(port: int, tokens: dict) -> None:
    """testdo: an operational dataset with an approved association, so POST /results/ for model 2 is valid."""
    do, bo = Client(port, tokens[TESTDO]), Client(port, tokens[TESTBO])
    steps = [
        (do, "POST", "/datasets/", {"name": "bench", "input_data_hash": "raw", "generated_uid": "raw",
                                    "split_seed": 0, "data_preparation_mlcube": 1, "submitted_as_prepared": False}, 201),
        (do, "PUT", "/datasets/1/", {"generated_uid": "prep", "state": "OPERATION"}, 200),
        (do, "POST", "/datasets/benchmarks/", {"dataset": 1, "benchmark": 1, "metadata": {}}, 201),
        (bo, "PUT", "/datasets/1/benchmarks/1/", {"approval_status": "APPROVED"}, 200),
    ]
    for client, method, path, body, expected in steps:
        status, data = client.call(method, path, body)
        if status != expected:
            raise SystemExit(f"bench: set-up {method} {path} answered {status}: {data[:200]!r}")


CALLS = [
    ("GET", "/benchmarks/1/", None, 200),
    ("GET", "/me/results/", None, 200),
    ("POST", "/results/", {"name": "b1m2d1", "benchmark": 1, "model": 2, "dataset": 1}, 201),
]


def drive(port: int, tokens: dict, measure=None) -> dict:
    """CLIENTS keep-alive clients, ROUNDS x CALLS each, all started at once; `measure()` is read when they start
    and when they end (CPU counters). Returns latencies, per call, errors, elapsed and both measures."""
    deadline = time.monotonic() + WALL_CAP_S
    latencies: list[float] = []
    by_call: list[tuple[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS + 1)

    def client(i: int):
        c = Client(port, tokens[TESTDO])
        c.call("GET", "/me/")  # open the keep-alive connection before timing
        mine, bad, kinds = [], [], []
        start.wait()
        for _ in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            for method, path, body, expected in CALLS:
                t0 = time.perf_counter()
                try:
                    status, _ = c.call(method, path, body)
                    ok, detail = status == expected, f"{method} {path} -> {status}"
                except (OSError, http.client.HTTPException) as e:
                    ok, detail = False, f"{method} {path} -> {type(e).__name__}"
                    c = Client(port, tokens[TESTDO])
                mine.append(time.perf_counter() - t0)
                kinds.append(f"{method} {path}")
                if not ok:
                    bad.append(detail)
        with lock:
            latencies.extend(mine)
            by_call.extend(zip(kinds, mine, strict=True))
            errors.extend(bad)

    measure = measure or (lambda: None)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, i) for i in range(CLIENTS)]
        start.wait()
        t0 = time.perf_counter()
        before = measure(), time.process_time()
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
        after = measure(), time.process_time()
    return {"latencies": latencies, "by_call": by_call, "errors": errors, "elapsed": elapsed,
            "before": before, "after": after}


def _p99(ms: list[float]) -> float:
    return ms[min(len(ms) - 1, int(round(0.99 * len(ms))) - 1)]


def summarize(label: str, how: str, run: dict) -> dict:
    """Print the latency and throughput lines of one run; return its figures."""
    latencies, by_call, errors = run["latencies"], run["by_call"], run["errors"]
    ms = sorted(x * 1000 for x in latencies)
    calls_text = []
    for call in dict.fromkeys(k for k, _ in by_call):
        xs = sorted(x * 1000 for k, x in by_call if k == call)
        calls_text.append(f"{call} p50 {statistics.median(xs):.1f} p99 {_p99(xs):.1f}")
    figures = {"backend": label, "requests": len(ms), "p50": statistics.median(ms), "p99": _p99(ms), "max": ms[-1],
               "rps": len(ms) / run["elapsed"], "errors": len(errors), "first_error": errors[0] if errors else ""}
    print(f"{label:10s} {figures['requests']} requests by {CLIENTS} clients ({how}): "
          f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms, "
          f"{figures['rps']:.0f} req/s, errors {figures['errors']}"
          + (f" (first: {figures['first_error']})" if errors else "") + f"; load {load_average()}", flush=True)
    print(f"{'':10s} by call (ms): " + "; ".join(calls_text), flush=True)
    return figures


def run_backend(label: str, db_url: str, server_threads: int, workdir: Path) -> dict:
    with served(db_url, server_threads, workdir) as (port, tokens, pid):
        prepare(port, tokens)
        run = drive(port, tokens, lambda: _cpu_seconds(pid))
    figures = {**summarize(label, f"{server_threads} server threads", run), "threads": server_threads}
    n = max(1, figures["requests"])
    server_ms = (run["after"][0] - run["before"][0]) * 1000 / n
    client_ms = (run["after"][1] - run["before"][1]) * 1000 / n
    print(f"{'':10s} CPU per request: server process {server_ms:.2f} ms, the 16 clients {client_ms:.2f} ms "
          f"(2 cores: at most {2000 / (server_ms + client_ms):.0f} req/s if nothing else ran)", flush=True)
    return figures


# ---------------------------------------------------------------- part 2: processes behind nginx


def _descendants(pid: int) -> list[int]:
    """`pid` and every process under it (the pre-forked workers; nginx's worker), from /proc."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / tick, sum(values) / tick


def _postgres_backends_cpu(conn) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench's database, when the cluster runs on this
    machine (its backends are then processes here; a remote cluster's count as nothing)."""
    pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()").fetchall()]
    return {pid: _cpu_seconds(pid) for pid in pids}


def _shares(access_log: Path) -> str:
    """Requests per worker pid in nginx's access log (the `worker=` field of server/cluster.py's log format)."""
    counts: dict[str, int] = {}
    for line in access_log.read_text().splitlines():
        worker = next((f[len("worker="):] for f in line.split() if f.startswith("worker=")), "?")
        counts[worker] = counts.get(worker, 0) + 1
    total = max(1, sum(counts.values()))
    return ", ".join(f"pid {w} {100 * n / total:.0f}%" for w, n in sorted(counts.items()))


def run_processes(base_url: str, workers: int, workdir: Path) -> dict:
    """The load through nginx to `run --workers N` (4 threads each) on a fresh PostgreSQL database."""
    with postgres_database(base_url) as url:
        cli = [sys.executable, "-m", "server.cli", "--db", url]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        tokens_file = workdir / "tokens.json"
        subprocess.run(cli + ["seed", "--demo", "data", "--tokens-file", str(tokens_file)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        tokens = json.loads(tokens_file.read_text())
        with registry_process(url, workdir / "server.log", workers=workers, threads=4) as backend, \
                nginx(workdir / "nginx", [backend]) as lb:
            port = int(lb.url.rsplit(":", 1)[1])
            prepare(port, tokens)
            lb.access_log.write_text("")  # count the timed requests only

            import psycopg

            with psycopg.connect(url, autocommit=True) as watcher:
                def measure():
                    return (sum(_cpu_seconds(p) for p in _descendants(backend.pid)),
                            sum(_cpu_seconds(p) for p in _descendants(lb.pid)), _machine_cpu(),
                            _postgres_backends_cpu(watcher))

                run = drive(port, tokens, measure)
            shares = _shares(lb.access_log)
    figures = {**summarize("postgresql", f"nginx -> {workers} worker process(es) x 4 threads", run),
               "workers": workers}
    (server0, nginx0, (busy0, total0), pg0), client0 = run["before"]
    (server1, nginx1, (busy1, total1), pg1), client1 = run["after"]
    n = max(1, figures["requests"])
    per = {"server": (server1 - server0), "nginx": (nginx1 - nginx0), "clients": (client1 - client0),
           "PostgreSQL": sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())}
    busy = busy1 - busy0
    per["others' processes"] = max(0.0, busy - sum(per.values()))
    cores = os.cpu_count() or 1
    figures["busy_share"] = busy / max(1e-9, (total1 - total0))
    figures["cpu_ms"] = {k: v * 1000 / n for k, v in per.items()}
    print(f"{'':10s} served by: {shares}", flush=True)
    print(f"{'':10s} CPU per request (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in figures["cpu_ms"].items())
          + f"; the machine's {cores} cores were {100 * figures['busy_share']:.0f}% busy", flush=True)
    return figures


def scaleout(base_url: str | None, work: Path) -> None:
    """Part 2: 1 vs 2 worker processes behind nginx on PostgreSQL, the ratio and what limits it."""
    why = postgres_unavailable(base_url) or (None if nginx_binary() else "nginx is not installed")
    if why:
        print(f"processes behind nginx: not measured ({why})", flush=True)
        return
    results = {}
    for workers in (1, 2):
        d = work / f"nginx-{workers}"
        d.mkdir()
        try:
            results[workers] = run_processes(base_url, workers, d)
        except ClusterError as e:
            print(f"processes behind nginx: not measured ({e})", flush=True)
            return
    one, two = results[1], results[2]
    ratio = two["rps"] / one["rps"]
    busiest = max(two["cpu_ms"], key=two["cpu_ms"].get)
    total_ms = sum(two["cpu_ms"].values())
    print(f"postgresql behind nginx: 2 processes vs 1: throughput {ratio:.2f}x "
          f"({one['rps']:.0f} -> {two['rps']:.0f} req/s), p99 {two['p99'] / one['p99']:.2f}x; errors "
          f"{one['errors'] + two['errors']}")
    others = two["cpu_ms"]["others' processes"] / max(1e-9, total_ms)
    limit = (f"the machine's {os.cpu_count()} cores were {100 * two['busy_share']:.0f}% busy with 2 processes, "
             f"{total_ms:.2f} ms of CPU per request, {busiest} the largest part "
             f"({100 * two['cpu_ms'][busiest] / max(1e-9, total_ms):.0f}%): ")
    if two["busy_share"] > 0.85:
        ours = total_ms * (1 - others)
        limit += (f"CPU-bound: this bench's own parts (server, nginx, clients, PostgreSQL) cost {ours:.2f} ms per "
                  f"request, so at most {1000 * (os.cpu_count() or 1) / ours:.0f} req/s on these cores if nothing "
                  "else ran, whatever the process count: a second process only adds the core one process's GIL "
                  "leaves idle, and the load generator, nginx and PostgreSQL compete for it; every POST also waits "
                  "for the database-wide write lock, whichever process sends it")
    else:
        limit += "not CPU-bound: the serialized writes (one database-wide write lock per POST) and round trips"
    if others > 0.25:
        limit += (f"; other programs took {100 * others:.0f}% of the CPU meanwhile (a shared machine): the ratio "
                  "measures them as much as the registry")
    print(f"what limits it: {limit}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default="1,4", help="cheroot thread counts to compare (default 1,4; "
                        "the targets are judged at 4, as `run`)")
    parser.add_argument("--only", choices=["threads", "processes"], help="run one part only")
    args = parser.parse_args()
    if args.only == "processes":
        with tempfile.TemporaryDirectory(prefix="medperf-bench-") as tmp:
            scaleout(os.environ.get("MEDPERF_PG_URL"), Path(tmp))
        return 0
    counts = [int(x) for x in args.threads.split(",") if x.strip()]
    judged = 4 if 4 in counts else counts[-1]
    print(f"load average before: {load_average()}")
    results = []
    pg = os.environ.get("MEDPERF_PG_URL")
    unmeasured = {}  # backend -> why it was not measured
    why = postgres_unavailable(pg)
    if why:
        unmeasured["postgresql"] = f"PostgreSQL unavailable ({why})"
        print(f"postgresql not measured: {why}", flush=True)
    with tempfile.TemporaryDirectory(prefix="medperf-bench-") as tmp:
        work = Path(tmp)
        for threads in counts:
            d = work / f"sqlite-{threads}"
            d.mkdir()
            results.append(run_backend("sqlite", str(d / "server.sqlite3"), threads, d))
            if "postgresql" not in unmeasured:
                d = work / f"pg-{threads}"
                d.mkdir()
                with postgres_database(pg) as url:
                    results.append(run_backend("postgresql", url, threads, d))
    by = {(r["backend"], r["threads"]): r for r in results}
    errors = sum(r["errors"] for r in results)

    def p99(backend: str, threads: int) -> str:
        r = by.get((backend, threads))
        return f"{r['p99']:.1f}" if r else "not measured"

    def verdict(backend: str) -> str:
        """From what was measured only: a backend without a run at the judged thread count gets no verdict."""
        judged_row = by.get((backend, judged))
        if judged_row is None:
            return f"not measured: {unmeasured.get(backend, f'no run at {judged} threads')}"
        backend_errors = sum(r["errors"] for r in results if r["backend"] == backend)
        return "met" if judged_row["p99"] < 50 and backend_errors == 0 else "NOT met"

    for backend in ("sqlite", "postgresql"):
        if (backend, 1) in by and (backend, judged) in by and judged != 1:
            one, many = by[(backend, 1)], by[(backend, judged)]
            print(f"{backend}: {judged} threads vs 1: throughput {many['rps'] / one['rps']:.2f}x, "
                  f"p99 {many['p99'] / one['p99']:.2f}x")
    print(f"targets at {judged} threads (p99 < 50 ms, 0 errors): SQLite {verdict('sqlite')}; "
          f"PostgreSQL {verdict('postgresql')}")
    print(f"server: p99 ms at {judged} threads SQLite {p99('sqlite', judged)}, PostgreSQL {p99('postgresql', judged)}"
          f" (1 thread: {p99('sqlite', 1)}, {p99('postgresql', 1)}); errors {errors}")
    if args.only is None:
        with tempfile.TemporaryDirectory(prefix="medperf-bench-") as tmp:
            scaleout(pg, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
