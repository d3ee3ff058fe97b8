"""The OpenAPI document at /api/v0/schema, and the web page at / behind a sign-in with an API token.

The page shows a signed-in user what the API lets them read, through the API's own store queries and
rules.py permissions; an anonymous visitor gets the sign-in form and nothing else. POST /login checks
the pasted token as the API does and keeps it in an HttpOnly, SameSite=Strict cookie; POST /logout
clears it. A token is read from the form body or that cookie only, never from a URL.
"""

from __future__ import annotations

import functools

import bottle
import jinja2

from server import openapi, rules, store
from server.errors import NotAuthenticated

PAGE_ALL = 10_000
SESSION_COOKIE = "medperf_token"
MAX_TOKEN_CHARS = 4000  # a longer cookie is dropped by browsers (4 KiB per cookie)
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


# ---------------------------------------------------------------- what a user sees


def latest_per_pair(rows: list[dict]) -> list[dict]:
    """The latest row of each (benchmark, dataset) pair (latest wins: created_at, then id), sorted by pair."""
    latest: dict = {}
    for row in rows:
        key = (row["benchmark"], row["dataset"])
        if key not in latest or (row["created_at"], row["id"]) > (latest[key]["created_at"], latest[key]["id"]):
            latest[key] = row
    return [latest[key] for key in sorted(latest)]


def visible_to(conn, user: dict) -> dict:
    """The page's records for `user`: each list is what the API endpoint named beside it answers them."""
    admin = rules.is_admin(user)
    _, all_benchmarks = store.list_benchmarks(conn, {}, PAGE_ALL, 0)  # GET /benchmarks/
    _, models = store.list_models(conn, {}, PAGE_ALL, 0)  # GET /models/
    if admin:
        _, datasets = store.list_datasets(conn, PAGE_ALL, 0)  # GET /datasets/
        associations = store.all_latest_dataset_associations(conn)  # GET /datasets/{id}/benchmarks/ for each
    else:
        _, datasets = store.list_datasets_of_owner(conn, user["id"], PAGE_ALL, 0)  # GET /me/datasets/
        _, rows = store.list_dataset_associations_for_user(conn, user["id"], PAGE_ALL, 0)  # /me/datasets/associations/
        associations = latest_per_pair(rows)
    _, own_results = store.list_results_of_owner(conn, user["id"], PAGE_ALL, 0)  # GET /me/results/
    results: dict = {}  # benchmark id -> (whose results, submitted rows)
    for benchmark in all_benchmarks:
        if rules.can_list_benchmark_results(user, benchmark):  # GET /benchmarks/{id}/results/
            _, rows = store.list_results_of_benchmark(conn, benchmark["id"], PAGE_ALL, 0)
            results[benchmark["id"]] = ("all", [r for r in rows if r["finalized"]])
        else:
            mine = [r for r in own_results if r["benchmark"] == benchmark["id"] and r["finalized"]]
            if mine:
                results[benchmark["id"]] = ("yours", mine)
    metrics = {bid: sorted({k for r in rows for k in (r["results"] or {})}) for bid, (_, rows) in results.items()}
    return {
        "admin": admin,
        "benchmarks": [rules.benchmark_view(user, b) for b in all_benchmarks],
        "models": {m["id"]: m["name"] for m in models},
        "datasets": datasets,
        "associations": associations,
        "results": results,
        "metrics": metrics,
    }


# ---------------------------------------------------------------- session cookie


def _cookie_options(request) -> dict:
    return {"path": request.script_name, "httponly": True, "samesite": "strict",
            "secure": request.urlparts.scheme == "https"}


def signed_in_user(ctx) -> dict | None:
    """The user whose API token the session cookie holds, authenticated as the API does; None if none is valid."""
    token = ctx.request.get_cookie(SESSION_COOKIE)
    if not token:
        return None
    try:
        return ctx.authenticator.authenticate(ctx.conn, f"Bearer {token}")
    except NotAuthenticated:
        return None


def _from_another_site(request) -> bool:
    """True for a form another site made the browser post (login CSRF).

    Browsers say so in Sec-Fetch-Site, which a reverse proxy leaves alone (an Origin compared with the
    Host header would refuse every sign-in behind a proxy that rewrites Host); curl sends neither.
    """
    return (request.get_header("Sec-Fetch-Site") or "").lower() == "cross-site"


def _page(request, status: int, template: str, **values) -> bottle.HTTPResponse:
    body = _templates().get_template(template).render(root=request.script_name, **values)
    res = bottle.HTTPResponse(status=status, body=body)
    res.content_type = "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        res.set_header(name, value)
    return res


def _back_home(request) -> bottle.HTTPResponse:
    res = bottle.HTTPResponse(status=303)
    res.set_header("Location", request.script_name)
    for name, value in PAGE_HEADERS.items():
        res.set_header(name, value)
    return res


# ---------------------------------------------------------------- routes


def home(ctx):
    """The sign-in form, or what the signed-in user may read."""
    user = signed_in_user(ctx)
    if user is not None:
        return _page(ctx.request, 200, "index.html", user=user, **visible_to(ctx.conn, user))
    stale = bool(ctx.request.get_cookie(SESSION_COOKIE))
    res = _page(ctx.request, 200, "signin.html",
                message="That token is no longer valid: sign in again." if stale else None)
    if stale:
        res.delete_cookie(SESSION_COOKIE, **_cookie_options(ctx.request))
    return res


def login(ctx):
    """Check the token posted in the form body as the API would; keep it in the session cookie."""
    request = ctx.request
    if _from_another_site(request):
        return _page(request, 403, "signin.html", message="Sign in from this server's own page.")
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
    res.set_cookie(SESSION_COOKIE, token, **_cookie_options(request))
    return res


def logout(ctx):
    """Forget the session cookie (the API token itself stays valid)."""
    if _from_another_site(ctx.request):
        return _page(ctx.request, 403, "signin.html", message="Sign out from this server's own page.")
    res = _back_home(ctx.request)
    res.delete_cookie(SESSION_COOKIE, **_cookie_options(ctx.request))
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
        # auth=False: these read the session cookie themselves; late_write: no write lock for a sign-in
        app.route("/", "GET", home, auth=False, raw=True)
        app.route("/login", "POST", login, auth=False, raw=True, late_write=True)
        app.route("/logout", "POST", logout, auth=False, raw=True, late_write=True)
