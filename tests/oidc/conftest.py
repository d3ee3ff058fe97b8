"""Fixtures for the OpenID Connect tests: the real provider (.ci/oidc, started per session with 3-second access
tokens), a seeded registry trusting it, and a data owner's workspace whose manifest signs in with server.oidc."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from runner.cli import main, real_clients
from runner.signals import Interruption
from tests.oidc.provider import AUDIENCE, DEVICE_CLIENT, Provider, approve, shown_code, start_provider

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "medperf-apply"
TTL = 3  # seconds an access token lives

MANIFEST = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: {{ env.MEDPERF_SERVER }}
  oidc:
    issuer: {{ env.OIDC_ISSUER }}
    client_id: CLIENT
    audience: AUDIENCE
EXTRA
datasets:
  - name: mytestdata
    description: A tutorial dataset
    location: My machine
    data_path: raw/images
    labels_path: raw/labels
    prepare_with: {benchmark: chestxray}
    state: operational
    consent:
      statistics: true
      compatibility_results: true
      results: true
BENCHMARKS"""

BENCHMARKS = """\
    benchmarks:
      - benchmark: chestxray
        association: approved
        models: all
        results: submitted
"""


def manifest_text(*, client: str = DEVICE_CLIENT, extra: str = "", benchmarks: bool = False) -> str:
    return (MANIFEST.replace("CLIENT", client).replace("AUDIENCE", AUDIENCE)
            .replace("EXTRA\n", "".join(f"    {line}\n" for line in extra.splitlines()))
            .replace("BENCHMARKS", BENCHMARKS if benchmarks else ""))


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli_command() -> list[str]:
    return [str(CLI)] if CLI.exists() else [sys.executable, "-m", "runner.cli"]


class Site:
    """A data owner's folder: toy raw data, an OIDC manifest, a state dir, an event log and a credentials folder."""

    def __init__(self, root: Path, provider: Provider, registry):
        self.root, self.provider, self.registry = root, provider, registry
        images, labels = root / "raw" / "images", root / "raw" / "labels"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for i in range(3):
            (images / f"img{i}.png").write_bytes(f"png-bytes-{i}".encode())
        (labels / "labels.csv").write_text("Image ID,Label\nimg0,effusion\nimg1,mass\nimg2,hernia\n")
        self.manifest = root / "manifest.yaml"
        self.manifest.write_text(manifest_text())
        self.state_dir = root / "state"
        self.events = root / "events.jsonl"
        self.credentials = root / "credentials"
        self.env = {**os.environ, "MEDPERF_SERVER": registry.url, "OIDC_ISSUER": provider.issuer,
                    "MEDPERF_APPLY_CREDENTIALS": str(self.credentials), "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        self.env.pop("MEDPERF_TOKEN", None)
        self.outputs: list[str] = []  # every stdout and stderr of every run, to search for tokens

    def write(self, text: str) -> None:
        self.manifest.write_text(text)

    def run(self, *argv: str, runner=None, env: dict | None = None, manifest: bool = True,
            state_dir: Path | None = None) -> Run:
        """The CLI in-process with the real clients (registry and provider over HTTP); `runner` replaces Docker."""
        environ = env or self.env
        clients = real_clients(environ, interruption=Interruption())
        if runner is not None:
            clients = replace(clients, runner=lambda state, runtime=None: runner)
        args = [*argv, *([str(self.manifest)] if manifest else [])]
        if argv[0] not in ("login", "logout"):
            args += ["--state-dir", str(state_dir or self.state_dir)]
        if argv[0] in ("plan", "apply"):
            args += ["--event-log", str(self.events)]
        out, err = io.StringIO(), io.StringIO()
        code = main(args, stdout=out, stderr=err, stdin=io.StringIO(""), environ=environ, clients=clients)
        self.outputs += [out.getvalue(), err.getvalue()]
        return Run(code, out.getvalue(), err.getvalue())

    def start_login(self, *extra: str) -> tuple[subprocess.Popen, str, str]:
        """`medperf-apply login MANIFEST` as a process, read until it shows the page and the code."""
        proc = subprocess.Popen([*cli_command(), "login", str(self.manifest), *extra], env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        seen = ""
        while (found := shown_code(seen)) is None:
            line = proc.stderr.readline()
            if not line:
                out, err = proc.communicate(timeout=30)
                pytest.fail(f"login ended (exit {proc.returncode}) without showing a code:\n{seen}{err}\n{out}")
            seen += line
        proc.shown = seen  # type: ignore[attr-defined]
        return proc, found[0], found[1]

    def login(self, user: str = "testdo") -> Run:
        """Sign in as `user` through the device flow: the CLI polls, the scripted user approves in the 'browser'."""
        proc, page, code = self.start_login()
        approve(page, code, user, verify=self.provider.verify)
        return self.finish(proc)

    def finish(self, proc: subprocess.Popen, timeout: float = 60) -> Run:
        proc.wait(timeout=timeout)
        # read(), not communicate(): what readline() already buffered would be lost (the outputs are small)
        run = Run(proc.returncode, proc.stdout.read(), proc.shown + proc.stderr.read())  # type: ignore[attr-defined]
        proc.stdout.close()
        proc.stderr.close()
        self.outputs += [run.out, run.err]
        return run

    def credentials_file(self) -> Path:
        (path,) = list(self.credentials.glob("*.json"))
        return path


@pytest.fixture(scope="session")
def provider(tmp_path_factory):
    p = start_provider(tmp_path_factory.mktemp("oidc"), access_ttl=TTL, interval=1)
    yield p
    p.stop()


@pytest.fixture
def registry(provider):
    """A seeded registry (built-in container records) that trusts the provider's access tokens."""
    from server.loopback import live_server

    with live_server(settings=provider.registry_settings()) as srv:
        yield srv


@pytest.fixture
def site(tmp_path, provider, registry) -> Site:
    return Site(tmp_path, provider, registry)
