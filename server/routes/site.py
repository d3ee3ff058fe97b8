"""The OpenAPI document at /api/v0/schema, and the web page at / behind a sign-in with an API token.

The page (server/webpage.py) shows a signed-in user what the API lets them read; an anonymous visitor gets the
sign-in form and nothing else. POST /login checks the pasted token as the API does and keeps it in an HttpOnly,
SameSite=Strict cookie, after a random nonce drawn at each sign-in; the page's forms carry a CSRF token bound to
both (an HMAC of the nonce keyed by the API token), checked on every POST that changes something. POST /decide approves or
rejects an association request through server/decisions.py, the API's own code path, then redirects (303) back
with a flash message. A token is read from the form body or that cookie only, never from a URL.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets

import bottle
import jinja2

from server import charts, decisions, openapi, rules, store, webpage
from server.errors import ApiError, NotAuthenticated

SESSION_COOKIE = "medperf_token"  # "NONCE.TOKEN": a random nonce per sign-in, then the API token
FLASH_COOKIE = "medperf_flash"  # the message the next GET shows once, after a POST's 303
CSRF_FIELD = "csrf_token"
MAX_TOKEN_CHARS = 4000  # a longer cookie is dropped by browsers (4 KiB per cookie)
DECISIONS = {"approve": rules.APPROVED, "reject": rules.REJECTED}
PAGE_HEADERS = {
    "Cache-Control": "no-store",  # the page holds what one user may see: no shared cache keeps it
    "Vary": "Cookie",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("server", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined)


# ---------------------------------------------------------------- session cookie and CSRF token


def _cookie_options(request) -> dict:
    return {"path": request.script_name, "httponly": True, "samesite": "strict",
            "secure": request.urlparts.scheme == "https"}


def _session(request) -> tuple[str, str] | None:
    """(nonce, API token) from the session cookie, or None without a well-formed one."""
    nonce, dot, token = (request.get_cookie(SESSION_COOKIE) or "").partition(".")
    return (nonce, token) if nonce and dot and token else None


def _session_value(token: str) -> str:
    return f"{secrets.token_urlsafe(16)}.{token}"  # token_urlsafe has no dot: the first one ends the nonce


def signed_in_user(ctx) -> dict | None:
    """The user whose API token the session cookie holds, authenticated as the API does; None if none is valid."""
    session = _session(ctx.request)
    if session is None:
        return None
    token = session[1]
    try:
        return ctx.authenticator.authenticate(ctx.conn, f"Bearer {token}")
    except NotAuthenticated:
        return None


def csrf_token(nonce: str, token: str) -> str:
    """The forms' token for one session: unguessable without the HttpOnly API token, new at each sign-in."""
    return hmac.new(token.encode(), b"medperf-web-form:" + nonce.encode(), hashlib.sha256).hexdigest()


def _csrf_ok(request) -> bool:
    session = _session(request)
    sent = request.forms.getunicode(CSRF_FIELD) or ""
    return session is not None and bool(sent) and hmac.compare_digest(sent, csrf_token(*session))


def _from_another_site(request) -> bool:
    """True for a form another site made the browser post (login CSRF).

    Browsers say so in Sec-Fetch-Site, which a reverse proxy leaves alone (an Origin compared with the
    Host header would refuse every sign-in behind a proxy that rewrites Host); curl sends neither.
    """
    return (request.get_header("Sec-Fetch-Site") or "").lower() == "cross-site"


# ---------------------------------------------------------------- flash messages


def _set_flash(res, request, ok: bool, text: str):
    raw = json.dumps({"ok": ok, "text": text}).encode()
    res.set_cookie(FLASH_COOKIE, base64.urlsafe_b64encode(raw).decode(), **_cookie_options(request))


def _take_flash(request) -> dict | None:
    """The flash message the last POST left, or None (a cookie that does not decode is ignored)."""
    value = request.get_cookie(FLASH_COOKIE)
    if not value:
        return None
    try:
        flash = json.loads(base64.urlsafe_b64decode(value.encode()))
        return {"ok": flash["ok"] is True, "text": str(flash["text"])[:500]}
    except (ValueError, KeyError, TypeError):
        return None


def _error_text(error: ApiError) -> str:
    """The first message of an API error body ({"detail": ...} or {field: [messages]})."""
    for value in error.body.values():
        if isinstance(value, list) and value:
            return str(value[0])
        if value:
            return str(value)
    return f"refused ({error.status})"


# ---------------------------------------------------------------- responses


def _page(request, status: int, template: str, **values) -> bottle.HTTPResponse:
    body = _templates().get_template(template).render(root=request.script_name, **values)
    res = bottle.HTTPResponse(status=status, body=body)
    res.content_type = "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        res.set_header(name, value)
    return res


def _back_home(request, anchor: str = "") -> bottle.HTTPResponse:
    res = bottle.HTTPResponse(status=303)
    res.set_header("Location", request.script_name + anchor)
    for name, value in PAGE_HEADERS.items():
        res.set_header(name, value)
    return res


def _forbidden(request, message: str) -> bottle.HTTPResponse:
    return _page(request, 403, "signin.html", message=message)


# ---------------------------------------------------------------- routes


def home(ctx):
    """The sign-in form, or what the signed-in user may read (with the message the last POST left)."""
    request = ctx.request
    user = signed_in_user(ctx)
    if user is not None:
        view = webpage.visible_to(ctx.conn, user)
        chart_sets = {b["record"]["id"]: charts.metric_charts(b["results"]) for b in view["benchmarks"] if b["results"]}
        res = _page(request, 200, "index.html", user=user, flash=_take_flash(request), charts=chart_sets,
                    csrf=csrf_token(*_session(request)), csrf_field=CSRF_FIELD, **view)
        if request.get_cookie(FLASH_COOKIE):
            res.delete_cookie(FLASH_COOKIE, **_cookie_options(request))
        return res
    stale = bool(request.get_cookie(SESSION_COOKIE))
    res = _page(request, 200, "signin.html",
                message="That token is no longer valid: sign in again." if stale else None)
    if stale:
        res.delete_cookie(SESSION_COOKIE, **_cookie_options(request))
    return res


def login(ctx):
    """Check the token posted in the form body as the API would; keep it in the session cookie after a new nonce."""
    request = ctx.request
    if _from_another_site(request):
        return _forbidden(request, "Sign in from this server's own page.")
    token = (request.forms.getunicode("token") or "").strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        return _page(request, 400, "signin.html", message="Paste your API token into the field.")
    try:
        ctx.authenticator.authenticate(ctx.conn, f"Bearer {token}")
    except NotAuthenticated:
        res = _page(request, 401, "signin.html", message="That token is not valid on this server.")
        res.set_header("WWW-Authenticate", 'Bearer realm="web"')
        return res
    res = _back_home(request)
    res.set_cookie(SESSION_COOKIE, _session_value(token), **_cookie_options(request))
    return res


def logout(ctx):
    """Forget the session cookie (the API token itself stays valid)."""
    if _from_another_site(ctx.request):
        return _forbidden(ctx.request, "Sign out from this server's own page.")
    res = _back_home(ctx.request)
    res.delete_cookie(SESSION_COOKIE, **_cookie_options(ctx.request))
    return res


def _name(record: dict | None) -> str:
    return record["name"] if record else "?"


def decide(ctx):
    """Approve or reject the latest association request of (dataset, benchmark) as PUT .../benchmarks/{bid}/ does."""
    request = ctx.request
    if _from_another_site(request):
        return _forbidden(request, "Decide from this server's own page.")
    user = signed_in_user(ctx)
    if user is None:
        return _forbidden(request, "Sign in first: that form needs a signed-in session.")
    if not _csrf_ok(request):
        return _forbidden(request, "That form is out of date or did not come from this page: reload the page and "
                                   "try again.")
    try:
        dataset_id = int(request.forms.get("dataset", ""))
        benchmark_id = int(request.forms.get("benchmark", ""))
        status = DECISIONS[request.forms.get("decision", "")]
    except (ValueError, KeyError):
        return _page(request, 400, "signin.html", message="The form names no dataset, benchmark or decision.")
    ctx.write()  # the rules' check and the update in one serialized transaction, as the API's PUT
    what = (f"dataset {_name(store.get_dataset(ctx.conn, dataset_id))} ({dataset_id}) with benchmark "
            f"{_name(store.get_benchmark(ctx.conn, benchmark_id))} ({benchmark_id})")
    res = _back_home(request, "#pending")
    try:
        row = decisions.decide(ctx.conn, user, dataset_id, benchmark_id, status)
    except ApiError as e:
        ctx.conn.rollback()
        _set_flash(res, request, False, f"Could not {request.forms.get('decision')} the association of {what}: "
                                        f"{_error_text(e)}")
        return res
    _set_flash(res, request, True, f"The association of {what} is now {row['approval_status']}.")
    return res


def register(app):
    @functools.cache
    def document():
        return openapi.build(app)

    def schema(ctx):
        """The OpenAPI 3.1 document of this API."""
        return document()

    for path in ("/api/v0/schema", "/api/v0/schema/"):
        app.route(path, "GET", schema, auth=False)
    if app.config["medperf.settings"].web_ui:
        # auth=False: these read the session cookie themselves; late_write: no write lock before the checks
        app.route("/", "GET", home, auth=False, raw=True)
        app.route("/login", "POST", login, auth=False, raw=True, late_write=True)
        app.route("/logout", "POST", logout, auth=False, raw=True, late_write=True)
        app.route("/decide", "POST", decide, auth=False, raw=True, late_write=True)
