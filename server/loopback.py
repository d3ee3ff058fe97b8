"""The real app, seeded with the tutorial world, for tests, benches and demos: on a loopback port (the production
server, cheroot, in a background thread; HTTPS with a certificate) or in-process (no socket; call it with server.inprocess or a WSGI transport).

    with live_server() as srv:                 # fresh temp SQLite, seeded with the tutorial world
        requests.get(srv.api + "/me/", headers=srv.headers(TESTDO))
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server import auth
from server.app import make_app
from server.seed import SeedError, files_under, load_components, seed_demo
from server.settings import Settings
from server.wsgi import make_server


@dataclass
class LiveServer:
    """A running server: `url` ("http://127.0.0.1:PORT"), `api` (url + "/api/v0"), tokens by email."""

    url: str
    api: str
    tokens: dict[str, str]
    settings: Settings
    db_url: str
    app: object = field(repr=False)

    def headers(self, email: str) -> dict[str, str]:
        """Authorization header for a seeded (or created) user."""
        return {"Authorization": f"Bearer {self.tokens[email]}"}

    def create_user(self, email: str, *, admin: bool = False) -> str:
        """Create a user, remember and return their new API token."""
        with self.app.config["medperf.db"].connection() as conn:
            conn.begin_write()
            _user, token = auth.create_user_with_token(conn, email, admin)
            conn.commit()
        self.tokens[email] = token
        return token


@contextmanager
def static_files(folder: str | Path) -> Iterator[str]:
    """Serve `folder`'s files over plain HTTP on 127.0.0.1:<free port> (a thread); yield the base URL ("http://
    127.0.0.1:PORT/"). Additional files, image archives and demo data are fetched from it as from any web server."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(Path(folder).resolve()))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="static-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextmanager
def live_server(
    db_url: str | None = None,
    *,
    seed: bool = True,
    components: str | Path | None = None,
    threads: int = 8,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    archive_model: bool = False,
    second_benchmark: bool = False,
) -> Iterator[LiveServer]:
    """Run the real app on 127.0.0.1:<free port> in a background thread (HTTPS with `certfile` and `keyfile`);
    stop it on exit.

    db_url None means a fresh SQLite file in a temp dir (removed afterwards); a given database must be
    empty when `seed` is true. `seed` creates the tutorial world (`medperf-server seed --demo data`,
    with `components` if given, their file:// files served over HTTP meanwhile; `archive_model`: the archive model
    too; `second_benchmark`: chestxray-external too) and fills `.tokens`; `.create_user(email)` adds more users. `settings` sets other Settings fields, e.g. an
    OpenID provider's jwt_jwks_url, jwt_issuer, jwt_audience and jwt_email_claim.
    """
    tmp = tempfile.mkdtemp(prefix="medperf-server-") if db_url is None else None
    db_url = db_url or str(Path(tmp) / "server.sqlite3")
    config = Settings(**{"db_url": db_url, "pool_size": threads + 2, **(settings or {})})
    app = make_app(config)
    files = contextlib.ExitStack()
    try:
        tokens = seed_demo(app, _components(components, files), archive_model=archive_model,
                           second_benchmark=second_benchmark) if seed else {}
        server = make_server(app, host="127.0.0.1", port=0, threads=threads, certfile=certfile, keyfile=keyfile,
                             max_body=config.max_body_bytes)
        server.prepare()
        thread = threading.Thread(target=server.serve, name="medperf-server", daemon=True)
        thread.start()
        try:
            scheme = "https" if certfile else "http"
            url = f"{scheme}://127.0.0.1:{server.bind_addr[1]}"
            yield LiveServer(url=url, api=url + "/api/v0", tokens=tokens, settings=config, db_url=db_url, app=app)
        finally:
            server.stop()
            thread.join(timeout=10)
    finally:
        files.close()
        app.config["medperf.db"].close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _components(path: str | Path | None, files: contextlib.ExitStack) -> dict:
    """The components to seed; their folder served over HTTP (for as long as `files` is open) when they name files
    by file://, as `make demo` serves examples/chestxray/build/."""
    try:
        return load_components(path)
    except SeedError:
        if path is None:
            raise
    return load_components(path, files_url=files.enter_context(static_files(files_under(path))))


@contextmanager
def inprocess_server(db_url: str | None = None, *, seed: bool = True, components: str | Path | None = None):
    """Like live_server without a socket: `.url` is "http://inprocess"; use `inprocess_session(srv.app)`."""
    tmp = tempfile.mkdtemp(prefix="medperf-server-") if db_url is None else None
    db_url = db_url or str(Path(tmp) / "server.sqlite3")
    settings = Settings(db_url=db_url)
    app = make_app(settings)
    files = contextlib.ExitStack()
    try:
        tokens = seed_demo(app, _components(components, files)) if seed else {}
        url = "http://inprocess"
        yield LiveServer(url=url, api=url + "/api/v0", tokens=tokens, settings=settings, db_url=db_url, app=app)
    finally:
        files.close()
        app.config["medperf.db"].close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
