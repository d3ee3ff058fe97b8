"""Pre-fork workers for `medperf-server run --workers N`: N processes, each its own cheroot server on one port
(SO_REUSEPORT: the kernel spreads connections), supervised here: ready before "serving" is said, a worker that
dies is replaced, SIGTERM/SIGINT stop them all. The rules hold across workers through the database alone."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

FAST_FAILURE_S = 5.0  # a worker that dies this soon after its start is failing at start, not serving
FAST_FAILURES_MAX = 3  # ... this many times in a row: give up instead of respawning forever
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class WorkerError(RuntimeError):
    """The workers could not start (or kept dying at start): the message says which and why."""


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) host:port with SO_REUSEPORT, so a port taken by another program is an error
    before any worker starts and port 0 becomes one free port the workers share; keep the socket open while the
    workers run (it receives no connections: only listening sockets do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise WorkerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return sock, sock.getsockname()[1]


def _stop_on_sigterm(signum, frame):
    raise SystemExit(0)


class Supervisor:
    """Forks workers running `serve(ready)`; `serve` calls `ready()` once it listens, then serves until
    SystemExit or KeyboardInterrupt (both are delivered to it as SIGTERM / SIGINT)."""

    def __init__(self, count: int, serve: Callable[[Callable[[], None]], None], log: Callable[[str], None]):
        if count < 1:
            raise ValueError("--workers must be at least 1")
        self.count, self.serve, self.log = count, serve, log
        self.pids: dict[int, float] = {}  # pid -> start time
        self.stopping = False

    def _spawn(self) -> int:
        """Start one worker; return its pid once it says it listens (or raise WorkerError)."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            code = 0
            try:
                # not the supervisor's handlers: a worker must never signal its siblings
                signal.signal(signal.SIGTERM, _stop_on_sigterm)
                signal.signal(signal.SIGHUP, _stop_on_sigterm)
                signal.signal(signal.SIGINT, signal.default_int_handler)

                def ready():
                    os.write(write_fd, b"1")
                    os.close(write_fd)

                self.serve(ready)
            except (SystemExit, KeyboardInterrupt):
                pass
            except BaseException as e:  # noqa: BLE001 - a worker reports and exits; the supervisor decides
                self.log(f"worker {os.getpid()} failed: {type(e).__name__}: {e}")
                code = 1
            finally:
                os._exit(code)  # never return into the supervisor's code (its finally blocks, atexit)
        os.close(write_fd)
        try:
            if not _read_ready(read_fd, READY_TIMEOUT_S):
                _reap(pid)
                raise WorkerError(f"worker {pid} did not start listening (see the lines above)")
        finally:
            os.close(read_fd)
        self.pids[pid] = time.monotonic()
        return pid

    def run(self, on_ready: Callable[[list[int]], None]) -> int:
        """Start the workers, call `on_ready(pids)`, then supervise until a signal stops them; return the exit
        status (0 after a stop, 1 when workers kept failing at start)."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            try:
                for _ in range(self.count):
                    self._spawn()
            except WorkerError:
                self._stop_all()
                raise
            on_ready(sorted(self.pids))
            return self._supervise()
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _supervise(self) -> int:
        fast_failures = 0
        while not self.stopping:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return 0
            except InterruptedError:
                continue
            started = self.pids.pop(pid, None)
            if started is None or self.stopping:
                continue
            fast_failures = fast_failures + 1 if time.monotonic() - started < FAST_FAILURE_S else 0
            self.log(f"worker {pid} ended ({_describe(status)}); starting another")
            if fast_failures >= FAST_FAILURES_MAX:
                self.log(f"workers failed {fast_failures} times in a row right after starting: stopping")
                return 1
            try:
                self._spawn()
            except WorkerError as e:
                self.log(str(e))
                return 1
        return 0

    def _stop(self, signum, frame):
        self.stopping = True
        for pid in list(self.pids):
            _signal(pid, signal.SIGTERM)

    def _stop_all(self):
        self.stopping = True
        for pid in list(self.pids):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for pid in list(self.pids):
            if not _reap(pid, max(0.0, deadline - time.monotonic())):
                _signal(pid, signal.SIGKILL)
                _reap(pid, 5.0)
            self.pids.pop(pid, None)


def _read_ready(fd: int, timeout: float) -> bool:
    import select

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            return os.read(fd, 1) == b"1"  # b"": the worker exited before it was ready


def _signal(pid: int, sig: int):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int, timeout: float = 5.0) -> bool:
    """Wait up to `timeout` for `pid` to end; True once it is reaped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # a short poll: waitpid has no timeout of its own


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
