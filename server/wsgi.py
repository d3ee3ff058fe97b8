"""The production WSGI server: cheroot (threaded, pure Python, well kept), plain HTTP or HTTPS with a certificate
and key. Chosen over waitress because waitress cannot serve TLS, and MedPerf's own CLI speaks only HTTPS."""

from __future__ import annotations

import io
import os
import ssl
import sys
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

IDENT = "medperf-server"


class TLSFileError(ValueError):
    """The certificate or key cannot be loaded."""


def _dechunked(app, max_body: int):
    """cheroot hands a chunked request's body to the app already decoded (wsgi.input_terminated) and without a
    length, which Bottle cannot read: it is read here (one byte past the limit at most, so the app's own check
    answers 413 in the API's shape) and handed on with its length."""

    def wrapped(environ, start_response):
        if environ.get("wsgi.input_terminated") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            data = environ["wsgi.input"].read(max_body + 1)
            environ = {k: v for k, v in environ.items() if k != "HTTP_TRANSFER_ENCODING"}
            environ.update({"wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data))})
        return app(environ, start_response)

    return wrapped


WORKER_HEADER = "X-Medperf-Worker"


def _with_worker_header(app):
    """Name the serving process in every response (`run --worker-header`): which worker behind a load balancer
    answered, for the scale-out tests and a deployer's checks. The pid only, read per response (a fork's own)."""

    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, (WORKER_HEADER, str(os.getpid()))], exc_info)

        return app(environ, start)

    return wrapped


class _HandshakeInWorker(BuiltinSSLAdapter):
    """The TLS handshake happens in the worker that serves the connection, not in cheroot's accepting thread,
    where one client that connects and sends nothing would hold every other client's handshake (measured: an
    idle socket stalled an HTTPS request for the whole connection timeout)."""

    def wrap(self, sock):
        s = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return s, {"wsgi.url_scheme": "https", "HTTPS": "on"}


def _without_handshake_failures(log):
    """A client that gives up its TLS handshake (an unknown CA, plain HTTP, a port scan) is the client's business:
    one line, not a traceback per connection."""

    def error_log(msg="", level=20, traceback=False):
        failure = sys.exc_info()[1]
        if isinstance(failure, ssl.SSLError | ConnectionError):
            return log(f"TLS handshake with a client failed: {failure}", level, False)
        return log(msg, level, traceback)

    return error_log


def check_tls_files(certfile: str | Path, keyfile: str | Path | None):
    """Load the certificate and key once, so a wrong file is an error at start, not at the first handshake."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as e:
        raise TLSFileError(f"cannot load the TLS certificate {certfile} (key {keyfile}): {e}") from e


def make_server(app, *, host: str, port: int, threads: int, certfile: str | Path | None = None,
                keyfile: str | Path | None = None, max_body: int = 2_621_440, reuse_port: bool = False,
                worker_header: bool = False) -> wsgi.Server:
    """A bound-on-start server for `app`; HTTPS when `certfile` (and its `keyfile`) are given. `reuse_port`: bind
    with SO_REUSEPORT, so several worker processes listen on one port; `worker_header`: X-Medperf-Worker: <pid>."""
    wrapped = _dechunked(app, max_body)
    if worker_header:
        wrapped = _with_worker_header(wrapped)
    server = wsgi.Server((host, port), wrapped, numthreads=threads, server_name=IDENT, request_queue_size=128,
                         timeout=30, shutdown_timeout=5, reuse_port=reuse_port)
    server.version = IDENT  # the Server header
    if certfile:
        check_tls_files(certfile, keyfile)
        server.ssl_adapter = _HandshakeInWorker(str(certfile), str(keyfile) if keyfile else str(certfile))
        server.error_log = _without_handshake_failures(server.error_log)
    return server
