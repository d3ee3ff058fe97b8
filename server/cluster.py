"""The registry as several processes behind nginx on loopback, for tests and the bench: `medperf-server run`
subprocesses on free ports, and an nginx of their own (a config written under a prefix folder, run with
`-p`/`-c` in the foreground, stopped by pid) whose upstream lists them.

    with registry_processes(db_url, folder, workers=2) as backends, nginx(folder / "nginx", backends) as lb:
        requests.get(lb.url + "/api/v0/benchmarks/1/", headers=...)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
ROOT = Path(__file__).resolve().parents[1]


class ClusterError(RuntimeError):
    """A server process or nginx did not start; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_binary() -> str | None:
    """Debian's nginx (in /usr/sbin, often not on a user's PATH), or None when it is not installed."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class Backend:
    """One `medperf-server run` process (with its workers): where it listens, its pid, its log file."""

    port: int
    pid: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Nginx:
    url: str
    pid: int
    prefix: Path

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def registry_process(db_url: str, log: Path, *, workers: int = 1, threads: int = 4, port: int | None = None,
                     args: Sequence[str] = ()) -> Iterator[Backend]:
    """`medperf-server --db DB_URL run --worker-header` on 127.0.0.1:<a free port>, its stderr in `log`; yield
    once it said "serving" (every worker listens), stop it (SIGTERM, by pid) on exit."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "server.cli", "--db", db_url, "run", "--port", str(port), "--threads", str(threads),
           "--workers", str(workers), "--worker-header", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:  # a fresh log: "serving" must be this run's
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "medperf-server: serving " not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"medperf-server on port {port} did not start (exit {proc.poll()}):\n{_tail(log)}")
            time.sleep(0.05)  # polling the log: the process says "serving" only once every worker listens
        yield Backend(port=port, pid=proc.pid, log=log)
    finally:
        _stop(proc)


@contextmanager
def registry_processes(db_url: str, folder: Path, *, processes: int = 1, workers: int = 1,
                       threads: int = 4) -> Iterator[list[Backend]]:
    """`processes` servers of `workers` workers each on one database; logs as folder/server-<i>.log."""
    with ExitStack() as stack:
        yield [stack.enter_context(registry_process(db_url, folder / f"server-{i}.log", workers=workers,
                                                    threads=threads)) for i in range(processes)]


def nginx_config(prefix: Path, upstreams: Sequence[str], port: int, *, worker_processes: int = 1) -> str:
    """An nginx.conf that proxies 127.0.0.1:`port` to the registry `upstreams` (host:port), every path under
    `prefix` (pid, logs, temp files): no root-owned path is written. Keep-alive to the upstreams; a request
    whose upstream failed before it was sent goes to the other one (POST/PUT are never retried once sent)."""
    tmp = prefix / "tmp"
    servers = "\n".join(f"        server {u} max_fails=0;" for u in upstreams)
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
    return f"""# written by server/cluster.py: nginx in front of the registry's processes
daemon off;
worker_processes {worker_processes};
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '$remote_addr "$request" $status $upstream_addr '
                         'worker=$upstream_http_x_medperf_worker $request_time';
    access_log {prefix / "logs" / "access.log"} upstreams;
{temp_paths}
    client_max_body_size 3m;
    upstream medperf {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://medperf;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@contextmanager
def nginx(prefix: Path, backends: Sequence[Backend | str], *, port: int | None = None,
          worker_processes: int = 1) -> Iterator[Nginx]:
    """Run nginx (foreground, `-p prefix -c prefix/nginx.conf`) on 127.0.0.1:<a free port> in front of
    `backends`; yield once it accepts connections; stop it by pid (SIGQUIT: finish what it serves) on exit."""
    binary = nginx_binary()
    if binary is None:
        raise ClusterError("nginx is not installed (Debian: apt-get install nginx; .ci/services.sh install does it)")
    port = port or free_port()
    prefix = Path(prefix).resolve()
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    upstreams = [b.address if isinstance(b, Backend) else b for b in backends]
    conf.write_text(nginx_config(prefix, upstreams, port, worker_processes=worker_processes))
    error_log = prefix / "logs" / "error.log"
    with open(prefix / "logs" / "stderr.log", "ab") as out:
        proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e", str(error_log)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(f"nginx on port {port} did not start (exit {proc.poll()}):\n"
                                       f"{_tail(error_log)}\n{_tail(prefix / 'logs' / 'stderr.log')}") from None
                time.sleep(0.05)  # no readiness signal from nginx but its port
        yield Nginx(url=f"http://127.0.0.1:{port}", pid=proc.pid, prefix=prefix)
    finally:
        _stop(proc, signal.SIGQUIT)
