"""Registry server under 16 concurrent clients on loopback: GET a benchmark, GET /me/results/, POST a result.

Runs against SQLite (temp file) and, when MEDPERF_PG_URL is set, a temporary PostgreSQL database.
Prints p50/p99 latency, throughput and errors per backend, then one headline line. Target (DESIGN 8):
p99 under 50 ms, zero errors. Bounded: ROUNDS iterations per client and a wall-clock cap.
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

TESTDO, TESTBO = "testdo@example.com", "testbo@example.com"
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 16
ROUNDS = 40  # per client, 3 requests each
WALL_CAP_S = 90


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
        yield port, json.loads(tokens_file.read_text())
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


def run_backend(label: str, db_url: str, server_threads: int, workdir: Path) -> dict:
    with served(db_url, server_threads, workdir) as (port, tokens):
        prepare(port, tokens)
        deadline = time.monotonic() + WALL_CAP_S
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(CLIENTS + 1)
        calls = [
            ("GET", "/benchmarks/1/", None, 200),
            ("GET", "/me/results/", None, 200),
            ("POST", "/results/", {"name": "b1m2d1", "benchmark": 1, "model": 2, "dataset": 1}, 201),
        ]

        def client(i: int):
            c = Client(port, tokens[TESTDO])
            c.call("GET", "/me/")  # open the keep-alive connection before timing
            mine, bad = [], []
            start.wait()
            for _ in range(ROUNDS):
                if time.monotonic() > deadline:
                    break
                for method, path, body, expected in calls:
                    t0 = time.perf_counter()
                    try:
                        status, _ = c.call(method, path, body)
                        ok, detail = status == expected, f"{method} {path} -> {status}"
                    except (OSError, http.client.HTTPException) as e:
                        ok, detail = False, f"{method} {path} -> {type(e).__name__}"
                        c = Client(port, tokens[TESTDO])
                    mine.append(time.perf_counter() - t0)
                    if not ok:
                        bad.append(detail)
            with lock:
                latencies.extend(mine)
                errors.extend(bad)

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            start.wait()
            t0 = time.perf_counter()
            for f in futures:
                f.result()
            elapsed = time.perf_counter() - t0

    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * len(ms))) - 1)]
    figures = {"backend": label, "requests": len(ms), "p50": statistics.median(ms), "p99": p99, "max": ms[-1],
               "rps": len(ms) / elapsed, "errors": len(errors), "first_error": errors[0] if errors else ""}
    print(f"{label:10s} {figures['requests']} requests by {CLIENTS} clients ({server_threads} server threads): "
          f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms, "
          f"{figures['rps']:.0f} req/s, errors {figures['errors']}"
          + (f" (first: {figures['first_error']})" if errors else ""), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (default 4, as `run`)")
    args = parser.parse_args()
    # 16 client threads share this interpreter: a short GIL switch interval keeps a thread whose
    # answer has arrived from waiting up to 5 ms on the others, which would be counted as server time.
    sys.setswitchinterval(0.0005)
    with tempfile.TemporaryDirectory(prefix="medperf-bench-") as tmp:
        work = Path(tmp)
        (work / "sqlite").mkdir()
        results = [run_backend("sqlite", str(work / "sqlite" / "server.sqlite3"), args.threads, work / "sqlite")]
        pg = os.environ.get("MEDPERF_PG_URL")
        if pg:
            (work / "pg").mkdir()
            with postgres_database(pg) as url:
                results.append(run_backend("postgresql", url, args.threads, work / "pg"))
        else:
            print("postgresql skipped: MEDPERF_PG_URL is not set", flush=True)
    by = {r["backend"]: r for r in results}
    pg_p99 = f"{by['postgresql']['p99']:.1f} ms" if "postgresql" in by else "n/a"
    errors = sum(r["errors"] for r in results)
    target = all(r["p99"] < 50 for r in results) and errors == 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work on the machine adds to the latencies)")
    print(f"server: p99 SQLite {by['sqlite']['p99']:.1f} ms, p99 PostgreSQL {pg_p99}, errors {errors} "
          f"(target p99 < 50 ms, 0 errors: {'met' if target else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
