"""The real app, seeded with the tutorial world, for tests, benches and demos: on a loopback port (waitress in
a background thread) or in-process (no socket; call it with server.inprocess or a WSGI transport).

    with live_server() as srv:                 # fresh temp SQLite, seeded with the tutorial world
        requests.get(srv.api + "/me/", headers=srv.headers(TESTDO))
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import waitress

from server import auth
from server.app import make_app
from server.seed import load_components, seed_demo
from server.settings import Settings


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


def _stop(server, thread: threading.Thread) -> None:
    # waitress has no public stop for a server started with run(). Its loop runs while its channel
    # map is not empty: stop accepting, empty the map until the loop thread ends, stop the workers,
    # and only then close the sockets (closing them under a running select() is a race).
    # Its select() waits up to asyncore_loop_timeout: the trigger (a pipe in the map) wakes it at once.
    server.accepting = False
    channels = []
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        channels += list(server._map.values())
        server._map.clear()
        try:
            server.trigger.pull_trigger()
        except OSError:
            pass
        thread.join(timeout=0.05)
    server.task_dispatcher.shutdown()
    for channel in channels:
        try:
            channel.close()
        except OSError:
            pass


@contextmanager
def live_server(
    db_url: str | None = None,
    *,
    seed: bool = True,
    components: str | Path | None = None,
    threads: int = 8,
) -> Iterator[LiveServer]:
    """Run the real app with waitress on 127.0.0.1:<free port> in a background thread; stop it on exit.

    db_url None means a fresh SQLite file in a temp dir (removed afterwards); a given database must be
    empty when `seed` is true. `seed` creates the tutorial world (`medperf-server seed --demo data`,
    with `components` if given) and fills `.tokens`; `.create_user(email)` adds more users.
    """
    tmp = tempfile.mkdtemp(prefix="medperf-server-") if db_url is None else None
    db_url = db_url or str(Path(tmp) / "server.sqlite3")
    settings = Settings(db_url=db_url, pool_size=threads + 2)
    app = make_app(settings)
    try:
        tokens = seed_demo(app, load_components(components)) if seed else {}
        # asyncore_loop_timeout is a whole number of seconds (waitress casts it with int(): 0.2 became 0, a
        # select() that never waited, one core spinning for as long as the server ran); _stop wakes the loop.
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads, asyncore_loop_timeout=1,
                                        ident="medperf-server")
        thread = threading.Thread(target=server.run, name="medperf-server", daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.effective_port}"
            yield LiveServer(url=url, api=url + "/api/v0", tokens=tokens, settings=settings, db_url=db_url, app=app)
        finally:
            _stop(server, thread)
    finally:
        app.config["medperf.db"].close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def inprocess_server(db_url: str | None = None, *, seed: bool = True, components: str | Path | None = None):
    """Like live_server without a socket: `.url` is "http://inprocess"; use `inprocess_session(srv.app)`."""
    tmp = tempfile.mkdtemp(prefix="medperf-server-") if db_url is None else None
    db_url = db_url or str(Path(tmp) / "server.sqlite3")
    settings = Settings(db_url=db_url)
    app = make_app(settings)
    try:
        tokens = seed_demo(app, load_components(components)) if seed else {}
        url = "http://inprocess"
        yield LiveServer(url=url, api=url + "/api/v0", tokens=tokens, settings=settings, db_url=db_url, app=app)
    finally:
        app.config["medperf.db"].close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
