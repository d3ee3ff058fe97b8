"""A fault-injecting, recording HTTP proxy on loopback, in front of the real registry.

    with FaultProxy(srv.url, rate=0.25, seed=7) as proxy:    # a quarter of the API requests go wrong
        ... point the manifest's server.url at proxy.url ...
    proxy.exchanges      # every request (method, path, body) and what the proxy did with it
    proxy.injected       # Counter of faults by kind

Faults (seeded, at `rate`, at most `max_faults`, only on /api/v0/ paths):
  503_before    answer 503 without forwarding (the server never saw it)
  500_after     forward, then answer 500 instead of the server's answer (the server did it!)
  429           answer 429 with Retry-After: 0 without forwarding
  reset_before  TCP reset without forwarding
  reset_after   forward, then TCP reset instead of the answer
  stall_after   forward, then say nothing for `stall` seconds and close (the client's read timeout)
  slow          wait `slow` seconds, then forward normally

`hold(method, regex)` forwards the next matching request, keeps the server's answer and waits until
`release()` (or its own bound): a test kills the client meanwhile, between the server's write and the
client's. `garble(method, regex, answer)` forwards it and answers `answer` instead of the server's body. `down = True` answers every request 503 (a server that stays down).
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("503_before", "500_after", "429", "reset_before", "reset_after", "stall_after", "slow")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
        "content-length"}


@dataclass
class Exchange:
    """One request through the proxy: what was sent and what the proxy did."""

    method: str
    path: str  # with the query string
    body: bytes
    fault: str | None = None
    status: int | None = None  # what the client was answered (None: reset, stalled or held)
    forwarded: bool = False


@dataclass
class Hold:
    """A request held after the server answered it; `reached` is set once one is held."""

    method: str
    pattern: re.Pattern
    body: re.Pattern | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    replace: bytes | None = None  # answer this instead of the server's body (a garbled answer to a write)
    exchange: Exchange | None = None
    upstream_status: int | None = None
    upstream_body: bytes = b""

    def release(self) -> None:
        self.released.set()


class FaultProxy:
    """Forward to `upstream` on 127.0.0.1:<free port>, injecting faults and recording every body."""

    def __init__(self, upstream: str, *, rate: float = 0.0, seed: int = 0, faults: tuple[str, ...] = FAULTS,
                 max_faults: int | None = None, stall: float = 2.0, slow: float = 0.3,
                 methods: tuple[str, ...] = ("GET", "POST", "PUT"), hold_bound: float = 120.0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        self.rate, self.faults, self.max_faults = rate, tuple(faults), max_faults
        self.stall, self.slow, self.methods, self.hold_bound = stall, slow, methods, hold_bound
        self.down = False
        self.exchanges: list[Exchange] = []
        self.injected: Counter = Counter()
        self.holds: list[Hold] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the proxy first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def hold(self, method: str, regex: str, body: bytes | None = None) -> Hold:
        """Hold the server's answer to the next `method` request whose path fully matches `regex` (and whose
        body matches the `body` regex, when given)."""
        h = Hold(method, re.compile(regex), re.compile(body) if body is not None else None)
        with self._lock:
            self.holds.append(h)
        return h

    def garble(self, method: str, regex: str, answer: bytes) -> Hold:
        """Forward the next matching request, then answer `answer` (same status) instead of the server's body."""
        h = Hold(method, re.compile(regex), replace=answer)
        h.released.set()
        with self._lock:
            self.holds.append(h)
        return h

    def release_all(self) -> None:
        with self._lock:
            for h in self.holds:
                h.release()

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [e.body for e in self.exchanges]

    def _decide(self, method: str, path: str, body: bytes) -> tuple[str | None, Hold | None]:
        with self._lock:
            for h in self.holds:
                if h.exchange is None and h.method == method and h.pattern.fullmatch(path.split("?", 1)[0]) and \
                        (h.body is None or h.body.search(body)):
                    h.exchange = Exchange(method, path, body)  # claimed: the next match is not held
                    return None, h
            if self.down:
                return "down", None
            if not path.startswith("/api/v0/") or method not in self.methods or self.rate <= 0:
                return None, None
            if self.max_faults is not None and sum(self.injected.values()) >= self.max_faults:
                return None, None
            if self._random.random() >= self.rate:
                return None, None
            fault = self._random.choice(self.faults)
            self.injected[fault] += 1
            return fault, None

    # -- the server ---------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reset(self):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _answer(self, ex: Exchange, status: int, headers: list[tuple[str, str]], body: bytes):
                ex.status = status
                try:
                    self.send_response(status)
                    for k, v in headers:
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client is gone (killed, or gave up)
                    self.close_connection = True

            def _forward(self, ex: Exchange) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    headers["Host"] = f"{proxy.upstream[0]}:{proxy.upstream[1]}"
                    conn.request(self.command, self.path, body=ex.body or None, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    ex.forwarded = True
                    return resp.status, resp.getheaders(), body
                finally:
                    conn.close()

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ex = Exchange(self.command, self.path, body)
                with proxy._lock:
                    proxy.exchanges.append(ex)
                fault, hold = proxy._decide(self.command, self.path, body)
                ex.fault = fault
                if hold is not None:
                    status, headers, answer = self._forward(ex)
                    hold.exchange, hold.upstream_status, hold.upstream_body = ex, status, answer
                    hold.reached.set()
                    hold.released.wait(proxy.hold_bound)
                    if hold.replace is not None:
                        answer = hold.replace
                    self._answer(ex, status, headers, answer)
                    return
                json_ct = [("Content-Type", "application/json")]
                if fault == "down":
                    self._answer(ex, 503, json_ct, b'{"detail": "Service unavailable (proxy: down)."}')
                elif fault == "503_before":
                    self._answer(ex, 503, json_ct, b'{"detail": "Service unavailable (injected)."}')
                elif fault == "429":
                    self._answer(ex, 429, [*json_ct, ("Retry-After", "0")], b'{"detail": "Slow down (injected)."}')
                elif fault == "reset_before":
                    self._reset()
                elif fault == "500_after":
                    self._forward(ex)
                    self._answer(ex, 500, json_ct, b'{"detail": "A server error occurred (injected)."}')
                elif fault == "reset_after":
                    self._forward(ex)
                    self._reset()
                elif fault == "stall_after":
                    self._forward(ex)
                    time.sleep(proxy.stall)
                    self.connection.close()
                    self.close_connection = True
                else:
                    if fault == "slow":
                        time.sleep(proxy.slow)
                    try:
                        status, headers, answer = self._forward(ex)
                    except OSError:
                        self._answer(ex, 502, json_ct, b'{"detail": "Bad gateway (proxy: upstream unreachable)."}')
                        return
                    self._answer(ex, status, headers, answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
