"""Call a WSGI app without a socket: used by `seed` (which drives the API like MedPerf's seed script) and tests."""

from __future__ import annotations

import io
import json
import sys
from urllib.parse import unquote, urlsplit


def wsgi_call(app, method: str, url: str, *, headers: dict | None = None, body: bytes = b""):
    """Run one request through `app`; return (status code, [(header, value)], body bytes)."""
    parts = urlsplit(url)
    host = parts.hostname or "inprocess"
    port = str(parts.port or (443 if parts.scheme == "https" else 80))
    environ = {
        "REQUEST_METHOD": method.upper(),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(parts.path or "/").encode("utf-8").decode("latin-1"),
        "QUERY_STRING": parts.query,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": parts.netloc or host,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": parts.scheme or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for key, value in (headers or {}).items():
        name = key.upper().replace("-", "_")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name != "CONTENT_LENGTH":
            environ["HTTP_" + name] = value
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"] = int(status.split()[0])
        captured["headers"] = response_headers

    chunks = app(environ, start_response)
    try:
        data = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return captured["status"], captured["headers"], data


class ApiCaller:
    """JSON calls to an in-process app as one user: `call("POST", "/mlcubes/", body)` -> (status, json)."""

    def __init__(self, app, token: str | None, base: str = "http://inprocess/api/v0"):
        self.app, self.token, self.base = app, token, base

    def call(self, method: str, path: str, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        raw = json.dumps(body).encode() if body is not None else b""
        status, _, data = wsgi_call(self.app, method, self.base + path, headers=headers, body=raw)
        return status, (json.loads(data) if data else None)
