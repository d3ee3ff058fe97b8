"""The tutorial's world for the benches: a seeded registry on loopback, the tutorial manifest, toy data, a state dir.

`tutorial_world()` yields a World whose `medperf_apply(...)` runs the real console script as a fresh process
(as a user runs it) and whose `api(email)` is a plain requests session for seeding and inspection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from server.loopback import live_server  # noqa: E402
from server.seed import TESTBO, TESTDO, TESTMO  # noqa: E402

COMPONENTS = REPO / "examples" / "chestxray" / "build" / "components.json"
MANIFEST = REPO / "manifests" / "chestxray-tutorial.yaml"
EXE = str(Path(sys.executable).with_name("medperf-apply"))
BENCHMARK = "chestxray"
DATASET = "mytestdata"


class BenchError(SystemExit):
    """A bench could not set up what it measures: the message says which step and what came back."""

    def __init__(self, message: str):
        super().__init__(f"bench: {message}")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def docker_ready() -> str | None:
    """None when the engine answers, else why not (the benches that run containers skip then)."""
    if not COMPONENTS.exists():
        return f"{COMPONENTS.relative_to(REPO)} is missing (run `make images`)"
    try:
        import docker

        docker.from_env(timeout=10).ping()
    except Exception as e:  # noqa: BLE001 - any failure means: no engine to measure with
        return f"no Docker engine answers at DOCKER_HOST ({type(e).__name__})"
    return None


@dataclass
class Run:
    code: int
    seconds: float
    stdout: str
    stderr: str


@dataclass
class World:
    root: Path
    url: str
    tokens: dict[str, str]
    manifest: Path
    state: Path
    pycache: Path
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    def env(self, email: str = TESTDO, *, bytecode: bool = True) -> dict[str, str]:
        """The data owner's environment. `bytecode`: compiled modules are kept (in a temp folder), as after
        `pip install`; this machine sets PYTHONDONTWRITEBYTECODE, which would recompile runner/ every run."""
        env = {**os.environ, "MEDPERF_SERVER": self.url, "MEDPERF_TOKEN": self.tokens[email], "NO_COLOR": "1"}
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        return env

    def medperf_apply(self, *args: str, email: str = TESTDO, timeout: float = 900, bytecode: bool = True) -> Run:
        """Run the console script in a fresh process; return its exit code, wall time and output."""
        t = time.perf_counter()
        p = subprocess.run([EXE, *args], env=self.env(email, bytecode=bytecode), capture_output=True, text=True,
                           timeout=timeout)
        return Run(p.returncode, time.perf_counter() - t, p.stdout, p.stderr)

    def common(self) -> list[str]:
        return [str(self.manifest), "--state-dir", str(self.state)]

    def api(self, email: str) -> requests.Session:
        if email not in self.sessions:
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {self.tokens[email]}"
            self.sessions[email] = s
        return self.sessions[email]

    def call(self, email: str, method: str, path: str, body=None, expect: int = 200):
        r = self.api(email).request(method, f"{self.url}/api/v0/{path.lstrip('/')}", json=body, timeout=30)
        if r.status_code != expect:
            raise BenchError(f"{method} {path} as {email} answered {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()


WARM_MODULES = ("runner.cli", "runner.reconcile", "runner.load", "runner.validate", "runner.observe", "runner.plan",
                "runner.apply", "runner.report", "runner.clients.api", "runner.clients.containers", "runner.state",
                "runner.hashing", "runner.privacy", "jinja2", "yaml", "jsonschema", "docker", "requests")


def warm_bytecode(pycache: Path) -> None:
    """Compile what the commands import into `pycache` (as `pip install` compiles a package), before timing."""
    import pkgutil

    import runner

    names = list(WARM_MODULES) + [m.name for m in pkgutil.walk_packages(runner.__path__, "runner.")]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    try: importlib.import_module(n)\n" \
           "    except Exception: pass"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", code, *names], env={**env, "PYTHONPYCACHEPREFIX": str(pycache)},
                   check=True, capture_output=True)


@contextmanager
def tutorial_world(prefix: str, *, threads: int = 8, pycache: Path | None = None) -> Iterator[World]:
    """A fresh seeded server (real example components), the tutorial manifest and toy data in a temp dir.

    `pycache`: where the commands keep compiled bytecode (shared by the worlds of one bench run); by default
    a folder of this world, warmed before it is yielded."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, \
            live_server(components=COMPONENTS, threads=threads) as srv:
        root = Path(tmp)
        (root / "manifests").mkdir()
        manifest = root / "manifests" / MANIFEST.name
        manifest.write_text(MANIFEST.read_text())
        subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out",
                        str(root / "medperf_tutorial" / "sample_raw_data")], check=True, capture_output=True)
        if pycache is None:
            pycache = root / "pycache"
            warm_bytecode(pycache)
        world = World(root=root, url=srv.url, tokens=dict(srv.tokens), manifest=manifest, state=root / "state",
                      pycache=pycache)
        try:
            yield world
        finally:
            world.close()


def expect(run: Run, code: int, what: str) -> Run:
    if run.code != code:
        raise BenchError(f"{what}: exit {run.code} (expected {code})\n{run.stderr[-1500:]}")
    return run


def approve(world: World) -> Run:
    """The benchmark owner approves the data owner's association, with the real CLI."""
    run = world.medperf_apply("association", "approve", "--benchmark", BENCHMARK, "--dataset", DATASET,
                              "--server", world.url, "--token-env", "MEDPERF_TOKEN",
                              "--state-dir", str(world.root / "state-bo"), email=TESTBO)
    return expect(run, 0, "association approve as testbo")


def linear_record(world: World) -> dict:
    """The second model's container record (the linear image), as the server returns it."""
    models = world.call(TESTMO, "GET", "models/?limit=500")["results"]
    linear = next(m for m in models if "linear" in m["name"])
    return linear["container"]


def add_models(world: World, count: int, *, start: int = 0, benchmark_id: int = 1) -> list[int]:
    """testmo registers `count` models with the linear image (unique names and parameters), associates them
    with the benchmark; testbo approves each association. Returns the new model ids."""
    base = linear_record(world)
    keep = ("container_config", "image_hash", "additional_files_tarball_url", "additional_files_tarball_hash")
    ids = []
    for i in range(start, start + count):
        container = {k: base[k] for k in keep}
        container.update(name=f"bench_linear_{i}", state="OPERATION",
                         parameters_config={**(base.get("parameters_config") or {}), "bench_variant": i})
        model = world.call(TESTMO, "POST", "models/", {"name": f"bench_linear_{i}", "type": "CONTAINER",
                                                        "state": "OPERATION", "container": container}, expect=201)
        world.call(TESTMO, "POST", "models/benchmarks/", {"model": model["id"], "benchmark": benchmark_id,
                                                          "approval_status": "PENDING", "metadata": {}}, expect=201)
        world.call(TESTBO, "PUT", f"models/{model['id']}/benchmarks/{benchmark_id}/",
                   {"approval_status": "APPROVED"})
        ids.append(model["id"])
    return ids


def finalize_results(world: World, models: list[int], *, dataset_id: int, benchmark_id: int = 1) -> list[int]:
    """As the data owner, without running containers: POST results/ then PUT results/{id}/ with metrics, and
    write the matching local state (results/<id>/{results.yaml, result-info.yaml, .executed})."""
    import yaml

    ids = []
    for m in models:
        name = f"b{benchmark_id}m{m}d{dataset_id}"
        rec = world.call(TESTDO, "POST", "results/", {"name": name, "benchmark": benchmark_id, "model": m,
                                                      "dataset": dataset_id}, expect=201)
        metrics = {"Accuracy": 0.5, "AUC": 0.5}
        world.call(TESTDO, "PUT", f"results/{rec['id']}/", {"results": metrics, "metadata": {"partial": False}})
        d = world.state / "results" / str(rec["id"])
        d.mkdir(parents=True, exist_ok=True)
        (d / "results.yaml").write_text(yaml.safe_dump(metrics))
        (d / "result-info.yaml").write_text(yaml.safe_dump({"id": rec["id"], "name": name, "benchmark": benchmark_id,
                                                             "model": m, "dataset": dataset_id, "partial": False}))
        (d / ".executed").write_bytes(b"")
        ids.append(rec["id"])
    return ids


def my_dataset_id(world: World) -> int:
    rows = world.call(TESTDO, "GET", "me/datasets/?limit=500")["results"]
    return max(int(r["id"]) for r in rows if r["name"] == DATASET)


def events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
