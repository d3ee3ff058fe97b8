"""make_app(settings): the Bottle application: the API plugin (connection, auth, JSON), routes, one error handler."""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass

import bottle

from server import routes, rules, store
from server.auth import Authenticator
from server.db import Connection, ConstraintViolation, Database
from server.errors import ApiError, ParseError, TooLarge
from server.settings import Settings

log = logging.getLogger("medperf_server")


@dataclass
class Ctx:
    """What a route handler receives: the request's connection, caller, settings and request."""

    conn: Connection
    user: dict | None
    settings: Settings
    request: bottle.BaseRequest
    db: Database
    authenticator: Authenticator
    """The API's authenticator, for the web page's session cookie (routes registered with auth=False)."""

    def write(self):
        """Start the serialized write transaction now (routes registered with late_write=True)."""
        if not self.conn.in_transaction:
            self.conn.begin_write()

    def body(self):
        """The parsed JSON body ({} when empty); 400 when it is not JSON, 413 when it is too large."""
        limit = self.settings.max_body_bytes
        raw = self.request.body.read(limit + 1)  # a chunked body has no Content-Length to check first
        if len(raw) > limit:
            raise TooLarge(limit)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        except ValueError as e:
            raise ParseError(f"JSON parse error - {e}") from e
        except RecursionError as e:  # [[[[...]]]]: the decoder's recursion limit, not a server error
            raise ParseError("JSON parse error - nested too deeply") from e


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999: stored, it would be served as non-JSON Infinity
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (send it as a string, e.g. \"nan\")")


def error_response(status: int, body: dict, headers: dict | None = None) -> bottle.HTTPResponse:
    """The one JSON error shape of the server: status + JSON body (+ headers such as WWW-Authenticate)."""
    res = bottle.HTTPResponse(status=status, body=json.dumps(body))
    res.content_type = "application/json"
    for k, v in (headers or {}).items():
        res.set_header(k, v)
    return res


_BOTTLE_DETAILS = {404: "Not found.", 405: "Method not allowed.", 500: "A server error occurred."}


class ApiPlugin:
    """Hands each route a Ctx; writes run in one serialized transaction; results become JSON."""

    name = "medperf_api"
    api = 2

    def __init__(self, db: Database, authenticator: Authenticator, settings: Settings):
        self.db, self.authenticator, self.settings = db, authenticator, settings

    def apply(self, callback, route):
        if "ctx" not in inspect.signature(route.callback).parameters:
            return callback
        needs_auth = route.config.get("auth", True)
        raw = route.config.get("raw", False)
        # Writes run in one serialized transaction from the start, so a rule's check and the write it
        # guards cannot interleave with another request. A route registered with late_write=True parses,
        # validates and checks permissions first and calls ctx.write() before it reads the state its rule
        # checks (POST /results/, the hot path): the lock then covers the check and the write, no more.
        writes = route.method in ("POST", "PUT", "PATCH", "DELETE") and not route.config.get("late_write", False)
        db, authenticator, settings = self.db, self.authenticator, self.settings

        def wrapper(*args, **kwargs):
            request = bottle.request
            if request.content_length > settings.max_body_bytes:  # refused before a connection or a read
                e = TooLarge(settings.max_body_bytes)
                return error_response(e.status, e.body)
            conn = db.acquire()
            broken = False
            try:
                user = authenticator.authenticate(conn, request.get_header("Authorization")) if needs_auth else None
                if writes:
                    conn.begin_write()
                out = callback(Ctx(conn, user, settings, request, db, authenticator), *args, **kwargs)
                conn.commit()
            except ApiError as e:
                conn.rollback()
                return error_response(e.status, e.body, e.headers)
            except ConstraintViolation as e:  # a unique index stopped a racing write: the rule's 400
                conn.rollback()
                log.info("%s %s: %s", request.method, request.path, e)
                invalid = rules.constraint_error(store.broken_rule(e))
                return error_response(invalid.status, invalid.body)
            except BaseException:
                broken = True
                raise
            finally:
                db.release(conn, broken=broken)
            if raw:
                return out
            status, payload = out if isinstance(out, tuple) else (200, out)
            bottle.response.status = status
            if status == 204:
                return ""
            bottle.response.content_type = "application/json"
            return json.dumps(payload)

        return wrapper


def make_app(settings: Settings, *, migrate: bool = True) -> bottle.Bottle:
    """Build the WSGI app for `settings` (migrating the database first unless told not to)."""
    db = Database(settings.db_url, pool_size=settings.pool_size)
    if migrate:
        db.migrate()
    app = bottle.Bottle(catchall=True)
    app.config["medperf.settings"] = settings
    app.config["medperf.db"] = db
    app.install(ApiPlugin(db, Authenticator(settings), settings))
    for module in routes.MODULES:
        module.register(app)

    def json_errors(res: bottle.HTTPError):
        if res.status_code >= 500:  # bottle has written the traceback to wsgi.errors
            log.error("%s %s failed: %r", bottle.request.method, bottle.request.path, res.exception)
        detail = _BOTTLE_DETAILS.get(res.status_code, res.body if isinstance(res.body, str) else res.status_line)
        bottle.response.content_type = "application/json"
        return json.dumps({"detail": detail})

    app.default_error_handler = json_errors
    return app

