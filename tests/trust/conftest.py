"""Fixtures for the trust tests: the real registry behind the fault proxy, toy data, the CLI as a process.

A `Trial` is one data owner's workspace: a manifest pointing at the proxy, raw data beside it, a state
dir, an event log; it runs `medperf-apply` as a subprocess (so it can be SIGKILLed) or in-process, and
reads the server's database to count what exists.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

# The server suite's fixtures: `world` (a seeded registry in-process, one client per actor) on SQLite and on
# PostgreSQL, reused rather than copied.
from tests.server.conftest import db_url, pg_database, world  # noqa: F401
from tests.support.images import COMPONENTS, require_images  # noqa: F401  (require_images: for the tests)

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "medperf-apply"
MAKE_DATA = REPO / "examples" / "chestxray" / "make_data.py"

DATASET_ONLY = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: {{ env.MEDPERF_SERVER }}
  token_env: MEDPERF_TOKEN
datasets:
  - name: mytestdata
    description: A tutorial dataset
    location: My machine
    data_path: RAW/images
    labels_path: RAW/labels
    prepare_with: {benchmark: chestxray}
    state: STATE
    consent:
      statistics: true
      compatibility_results: true
      results: true
"""

BENCHMARK = """\
    benchmarks:
      - benchmark: chestxray
        association: approved
        models: all
        results: submitted
        ignore_model_errors: false
"""


def cli_command() -> list[str]:
    return [str(CLI)] if CLI.exists() else [sys.executable, "-m", "runner.cli"]


def make_data(out: Path, cases: int, seed: int = 0) -> Path:
    subprocess.run([sys.executable, str(MAKE_DATA), "--out", str(out), "--cases", str(cases), "--seed", str(seed)],
                   check=True, capture_output=True, timeout=120)
    return out


def manifest_text(raw: str = "raw", state: str = "operational", benchmarks: bool = False) -> str:
    return DATASET_ONLY.replace("RAW", raw).replace("STATE", state) + (BENCHMARK if benchmarks else "")


@dataclass
class Run:
    code: int
    out: str
    err: str


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text and "internal error" not in text


class Trial:
    """A workspace against one live server (through `proxy` when given)."""

    def __init__(self, root: Path, srv, proxy=None, *, token_of: str = "testdo@example.com"):
        self.root, self.srv, self.proxy = root, srv, proxy
        self.url = proxy.url if proxy is not None else srv.url
        self.manifest = root / "manifest.yaml"
        self.state_dir = root / "state"
        self.events = root / "events.jsonl"
        self.env = {**os.environ, "MEDPERF_SERVER": self.url, "MEDPERF_TOKEN": srv.tokens[token_of],
                    "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen] = []
        self.runs = 0

    def write(self, text: str) -> Path:
        self.manifest.write_text(text)
        return self.manifest

    # -- the CLI ------------------------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        command = args[0] if args else "apply"
        rest = list(args[1:])
        extra = ["--yes"] if command == "apply" and "--yes" not in rest else []
        events = ["--event-log", str(self.events)] if command in ("plan", "apply") else []  # only they emit events
        return [*cli_command(), command, *rest, *extra, str(self.manifest), "--state-dir", str(self.state_dir),
                *events]

    def spawn(self, *args: str) -> subprocess.Popen:
        """Start the CLI (default: apply --yes) as a process; its output goes to files under root."""
        self.runs += 1
        out = open(self.root / f"run{self.runs}.out", "w")  # noqa: SIM115 - closed by the process's end
        err = open(self.root / f"run{self.runs}.err", "w")  # noqa: SIM115
        proc = subprocess.Popen(self.argv(*(args or ("apply",))), stdout=out, stderr=err, env=self.env,
                                cwd=self.root, stdin=subprocess.DEVNULL)
        proc.out_path, proc.err_path = out.name, err.name  # type: ignore[attr-defined]
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 240) -> Run:
        code = proc.wait(timeout=timeout)
        return Run(code, Path(proc.out_path).read_text(), Path(proc.err_path).read_text())  # type: ignore[attr-defined]

    def run(self, *args: str, timeout: float = 240) -> Run:
        return self.finish(self.spawn(*args), timeout)

    def run_inprocess(self, *args: str, clients=None, environ=None) -> Run:
        from runner.cli import main

        out, err = io.StringIO(), io.StringIO()
        argv = self.argv(*(args or ("apply",)))[len(cli_command()):]
        code = main(argv, stdout=out, stderr=err, stdin=io.StringIO(""), environ=environ or self.env,
                    clients=clients)
        return Run(code, out.getvalue(), err.getvalue())

    def kill_when(self, proc: subprocess.Popen, reached: Callable[[], bool], what: str, timeout: float = 120,
                  *, may_finish: bool = False) -> bool:
        """SIGKILL `proc` as soon as `reached()` is true (return True); fail if it ends or times out first,
        unless `may_finish` (then return False when it ended with exit 0)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if reached():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return True
            if proc.poll() is not None:
                r = self.finish(proc)
                if may_finish and r.code == 0:
                    return False
                pytest.fail(f"the run ended (exit {r.code}) before the kill point {what!r}:\n{r.out}\n{r.err}")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pytest.fail(f"kill point {what!r} not reached within {timeout:g} s")

    def event_seen(self, kind: str, **match) -> Callable[[], bool]:
        """A condition: the event log holds an event of `kind` whose fields include `match`, after now."""
        start = self.events.stat().st_size if self.events.exists() else 0

        def seen() -> bool:
            try:
                with open(self.events, "rb") as f:
                    f.seek(start)
                    lines = f.read().splitlines()
            except FileNotFoundError:
                return False
            for line in lines:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == kind and all(str(ev.get(k, "")).find(str(v)) >= 0 for k, v in match.items()):
                    return True
            return False

        return seen

    # -- what exists ----------------------------------------------------------------------------------------

    def db(self):
        """A DB-API connection to the server's database (SQLite read-only, or PostgreSQL)."""
        if self.srv.db_url.startswith("postgresql"):
            import psycopg

            return psycopg.connect(self.srv.db_url, autocommit=True)
        return sqlite3.connect(f"file:{self.srv.db_url}?mode=ro", uri=True, timeout=10)

    def counts(self) -> dict[str, int]:
        with self.db() as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("datasets", "benchmark_datasets", "results")}

    def duplicates(self) -> list[str]:
        """Server records that exist twice where the workflow makes one."""
        found = []
        with self.db() as conn:
            names = Counter(r[0] for r in conn.execute("SELECT name FROM datasets"))
            found += [f"dataset {n} x{c}" for n, c in names.items() if c > 1]
            pairs = Counter(conn.execute("SELECT dataset, benchmark FROM benchmark_datasets").fetchall())
            found += [f"association {p} x{c}" for p, c in pairs.items() if c > 1]
            bmd = Counter(conn.execute("SELECT benchmark, model, dataset FROM results").fetchall())
            found += [f"result {k} x{c}" for k, c in bmd.items() if c > 1]
        return found

    def half_written(self) -> list[str]:
        """State-dir files that do not parse (YAML, JSON, JSON lines)."""
        bad = []
        if not self.state_dir.exists():
            return bad
        for p in self.state_dir.rglob("*"):
            if not p.is_file() or p.name.endswith(".tmp") or "/predictions/" in str(p):
                continue
            try:
                if p.suffix in (".yaml", ".yml"):
                    yaml.safe_load(p.read_text())
                elif p.suffix == ".json":
                    json.loads(p.read_text())
                elif p.suffix == ".jsonl":
                    for line in p.read_text().splitlines():
                        if line.strip():
                            json.loads(line)
            except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
                bad.append(f"{p.relative_to(self.state_dir)}: {e}")
        return bad

    def srv_datasets(self) -> list[dict]:
        """The data owner's datasets, asked of the server directly (not through the proxy)."""
        import requests

        r = requests.get(f"{self.srv.api}/me/datasets/", headers={"Authorization": f"Bearer {self.env['MEDPERF_TOKEN']}"},
                         timeout=10)
        r.raise_for_status()
        return r.json()["results"]

    def ledger_bodies(self) -> list[dict]:
        path = self.state_dir / "ledger.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


@pytest.fixture
def registry(request):
    """A seeded registry with the chest X-ray components, on loopback: SQLite, or PostgreSQL when a test
    parametrizes it indirectly with "postgresql"."""
    from tests.support.server import live_server

    url, drop = None, None
    if getattr(request, "param", "sqlite") == "postgresql":
        from tests.server.conftest import _fresh_pg_schema

        url, drop = _fresh_pg_schema(request.getfixturevalue("pg_database"))
    try:
        with live_server(url, components=COMPONENTS if COMPONENTS.exists() else None) as srv:
            yield srv
    finally:
        if drop:
            drop()


@pytest.fixture
def trial_factory(tmp_path, registry):
    """trial(proxy=None, cases=24) -> a Trial with raw data under tmp/raw and the dataset-only manifest."""
    made: list[Trial] = []

    def make(proxy=None, *, cases: int = 24, text: str | None = None, name: str = "w") -> Trial:
        root = tmp_path / name
        root.mkdir()
        make_data(root / "raw", cases)
        t = Trial(root, registry, proxy)
        t.write(text or manifest_text())
        made.append(t)
        return t

    yield make
    for t in made:
        t.cleanup()


def running_containers(docker_client, root: Path, task: str | None = None) -> list:
    """Task containers started by medperf-apply whose mounts lie under `root` (this test's, not another's)."""
    import docker

    filters = {"label": f"medperf-apply.task={task}" if task else "medperf-apply.task"}
    try:  # sparse: the list's own data, no second lookup of a container that may be gone by then
        found = docker_client.containers.list(all=task is None, filters=filters, sparse=True)
    except docker.errors.NotFound:
        return []
    out = []
    for c in found:
        sources = [m.get("Source", "") for m in c.attrs.get("Mounts") or []]
        if any(s.startswith(str(root)) for s in sources):
            out.append(c)
    return out


def reap_containers(docker_client, root: Path, timeout: float = 60) -> int:
    """Wait for this test's orphaned task containers (their runner was killed) to end, remove them; how many."""
    orphans = [c for c in running_containers(docker_client, root) if c.attrs.get("State") in ("running", "created")]
    deadline = time.monotonic() + timeout
    for c in orphans:
        try:
            c.wait(timeout=max(1.0, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - gone already, or still running: removed below
            pass
    for c in running_containers(docker_client, root):
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
    return len(orphans)
