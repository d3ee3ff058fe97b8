"""`medperf-server run --workers N` on its own (SQLite, no nginx): the workers share the port, SIGTERM stops every
one of them, a port taken by another program is an error before any worker starts."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import requests

from server.cli import main
from server.cluster import registry_process
from server.wsgi import WORKER_HEADER


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_the_port_and_stop_together(tmp_path):
    with registry_process(str(tmp_path / "s.sqlite3"), tmp_path / "server.log", workers=2, threads=2) as backend:
        def answer(_):  # a new connection each: the kernel spreads connections, not requests
            r = requests.get(f"http://{backend.address}/api/v0/benchmarks/", timeout=30)
            return r.status_code, r.headers[WORKER_HEADER]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(answer, range(16)))
        workers = {int(pid) for _, pid in answers}
        assert {status for status, _ in answers} == {401}  # no token: the API's answer, from either worker
        assert len(workers) == 2 and backend.pid not in workers
        assert f"2 workers of 2 threads, pids {' '.join(map(str, sorted(workers)))}" in backend.log.read_text()
    assert not any(_alive(pid) for pid in workers | {backend.pid})


def test_a_port_in_use_is_an_error_before_any_worker_starts(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["--db", str(tmp_path / "s.sqlite3"), "run", "--port", str(port), "--workers", "2"])
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
