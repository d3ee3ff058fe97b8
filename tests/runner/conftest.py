"""Fixtures for the runner tests: a data owner's workspace, fake clients, the CLI run in-process."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.cli import before_send_for, main
from runner.hashing import folders_hash
from runner.reconcile import Clients
from runner.signals import Interruption
from runner.state import StateDir
from tests.runner.fakes import FakeApi, FakeRunner

TOKEN = "s3cret-token-value"

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

    def clients(self) -> Clients:
        interruption = Interruption()

        def make_api(server, state):
            self.api.before_send = before_send_for(server, state, interruption)  # the CLI's own checks
            return self.api

        return Clients(state=StateDir, api=make_api, runner=lambda state, runtime=None: self.runner, hasher=folders_hash,
                       environ=self.environ, sleep=self.clock.sleep, clock=self.clock, interruption=interruption)

    def run(self, *argv: str, stdin=None, tty: bool = False) -> Result:
        out, err = (TTY(), TTY()) if tty else (io.StringIO(), io.StringIO())
        argv = list(argv)
        if argv[:1] != ["validate"]:
            argv += ["--state-dir", str(self.state_dir)]
        code = main(argv, stdout=out, stderr=err, stdin=stdin or io.StringIO(""), environ=self.environ,
                    clients=self.clients())
        return Result(code, out.getvalue(), err.getvalue())

    def raw_hash(self) -> str:
        return folders_hash([self.images, self.labels])


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
