"""Fixtures for the runner tests: a data owner's workspace, fake clients, the CLI run in-process."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.cli import before_send_for, main
from runner.clients.auth import read_token
from runner.hashing import folders_hash
from runner.reconcile import Clients
from runner.signals import Interruption
from runner.state import StateDir
from tests.runner.fakes import ADMIN, BENCHMARK_OWNER, DATA_OWNER, DATA_OWNER_2, FakeApi, FakeRunner, Unauthorized

TOKEN = "s3cret-token-value"
BO_TOKEN = "benchmark-owner-token"
ADMIN_TOKEN = "admin-token"
DO2_TOKEN = "second-data-owner-token"
USER_OF_TOKEN = {TOKEN: DATA_OWNER, BO_TOKEN: BENCHMARK_OWNER, ADMIN_TOKEN: ADMIN, DO2_TOKEN: DATA_OWNER_2}

MANIFEST = """\
apiVersion: medperf-apply/v1
kind: DataOwner
server:
  url: {{ env.MEDPERF_SERVER | default("http://registry.test:8000") }}
  token_env: MEDPERF_TOKEN
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
"""

BENCHMARKS = """\
    consent:
      statistics: true
      compatibility_results: true
      results: true
    benchmarks:
      - benchmark: chestxray
        association: approved
        models: all
        results: submitted
        ignore_model_errors: false
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


class Workspace:
    """A folder with raw data and a manifest, a state dir, and the fakes the CLI talks to."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "raw" / "images"
        self.labels = root / "raw" / "labels"
        self.images.mkdir(parents=True)
        self.labels.mkdir(parents=True)
        for i in range(3):
            (self.images / f"img{i}.png").write_bytes(f"png-bytes-{i}".encode())
        (self.labels / "labels.csv").write_text("Image ID,Label\nimg0,effusion\nimg1,mass\nimg2,hernia\n")
        self.manifest = root / "manifest.yaml"
        self.manifest.write_text(MANIFEST)
        self.state_dir = root / "state"
        self.api = FakeApi()
        self.runner = FakeRunner()
        self.environ = {"MEDPERF_TOKEN": TOKEN}
        self.clock = FakeClock()  # --wait's pauses advance it instead of sleeping

    def state(self) -> StateDir:
        return StateDir(self.state_dir)

    def clients(self, environ=None) -> Clients:
        """The fakes as the CLI builds its clients: the registry answers as the user whose token is set."""
        environ = self.environ if environ is None else environ
        interruption = Interruption()

        def make_api(server, state):
            before_send = before_send_for(server, state, interruption)  # the CLI's own checks
            user = USER_OF_TOKEN.get(read_token(server, environ))
            if user is None:
                return Unauthorized(self.api.calls)
            if user == self.api.owner:
                self.api.before_send = before_send
                return self.api
            return self.api.as_user(user, before_send)

        return Clients(state=StateDir, api=make_api, runner=lambda state, runtime=None: self.runner,
                       hasher=folders_hash, environ=environ, sleep=self.clock.sleep, clock=self.clock,
                       interruption=interruption)

    def run(self, *argv: str, stdin=None, tty: bool = False, token: str | None = None) -> Result:
        """The CLI in-process; `token` runs it with another user's token (e.g. BO_TOKEN, the benchmark owner)."""
        out, err = (TTY(), TTY()) if tty else (io.StringIO(), io.StringIO())
        argv = list(argv)
        if argv[:1] != ["validate"]:
            argv += ["--state-dir", str(self.state_dir)]
        environ = self.environ if token is None else {**self.environ, "MEDPERF_TOKEN": token}
        code = main(argv, stdout=out, stderr=err, stdin=stdin or io.StringIO(""), environ=environ,
                    clients=self.clients(environ))
        return Result(code, out.getvalue(), err.getvalue())

    def raw_hash(self) -> str:
        return folders_hash([self.images, self.labels])


def participating(ws: Workspace, **replace: str) -> Workspace:
    """The workspace's dataset also takes part in benchmark chestxray (all consents given); `replace` edits the
    manifest's text (old=new)."""
    text = ws.manifest.read_text().replace("    consent:\n      statistics: true\n", BENCHMARKS)
    for old, new in replace.items():
        text = text.replace(old, new)
    ws.manifest.write_text(text)
    return ws


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path)


class FakeClock:
    """A monotonic clock that sleeping advances; `on_sleep` lets a test act between polls."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = lambda n: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


class TTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True
