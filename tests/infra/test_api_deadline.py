"""A registry that trickles its answer or sends an endless one cannot hold a command: every request has an overall
deadline and every answer a size limit (real sockets on loopback)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from runner.clients.api import ApiClient
from runner.errors import ServerError, ServerUnavailable


class _Hostile:
    """A loopback HTTP server that answers every request with `answer(conn)`; stops with the test."""

    def __init__(self, answer):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn) -> None:
        with conn:
            conn.recv(65536)
            try:
                self.answer(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def hostile():
    servers = []

    def make(answer):
        s = _Hostile(answer)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def trickle(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.2):
        conn.sendall(b" ")  # a byte at a time: each read succeeds, the answer never ends


def trickled_headers(conn, stop):
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
        if stop.wait(0.2):
            return
        conn.sendall(bytes([byte]))


def endless(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    chunk = b'"x",' * 16384
    while not stop.is_set():
        conn.sendall(chunk)


@pytest.mark.parametrize("answer", [trickle, trickled_headers], ids=["body", "headers"])
def test_a_trickled_answer_ends_at_the_deadline_naming_the_server_and_endpoint(hostile, answer):
    server = hostile(answer)
    client = ApiClient(f"http://127.0.0.1:{server.port}", "t", deadline=1.0, max_attempts=2, sleep=lambda s: None)
    start = time.monotonic()
    with pytest.raises(ServerUnavailable) as e:
        client.get("benchmarks/1/")
    # two attempts of one second; without the deadline it would never end (each byte resets a read timeout): the
    # bound only tells the two apart, with room for a loaded machine
    assert time.monotonic() - start < 20.0
    text = str(e.value)
    assert "GET /api/v0/benchmarks/1/" in text and f"127.0.0.1:{server.port}" in text
    assert "no complete answer within 1 s" in text


def test_an_endless_answer_is_refused_past_the_size_limit(hostile):
    server = hostile(endless)
    client = ApiClient(f"http://127.0.0.1:{server.port}", "t", max_body=1 << 20, deadline=30.0)
    with pytest.raises(ServerError) as e:
        client.get("benchmarks/")
    assert not isinstance(e.value, ServerUnavailable)  # permanent: not retried
    assert "larger than 1 MiB" in str(e.value)


def test_a_declared_oversized_answer_is_refused_before_reading_it(hostile):
    def declared(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n[]")
        stop.wait(60)  # the rest never comes: a client reading it would meet its deadline, not the size limit

    server = hostile(declared)
    client = ApiClient(f"http://127.0.0.1:{server.port}", "t", max_body=1 << 20, deadline=30.0)
    with pytest.raises(ServerError, match="larger than 1 MiB") as e:
        client.get("benchmarks/")
    assert not isinstance(e.value, ServerUnavailable)  # refused from the declared length, not timed out
