"""What every route module shares about HTTP: paths (with and without the slash), ids in range, pagination,
lookups answered 403/404/400, and the query-string filters."""

from __future__ import annotations

import functools
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from server import rules
from server.db import BIGINT_MAX, fits_bigint
from server.errors import Forbidden, Invalid, NotFound

API = "/api/v0"


def is_id(value) -> bool:
    """True for an integer (not a bool) an id column can hold: any other value names no record."""
    return isinstance(value, int) and not isinstance(value, bool) and fits_bigint(value)


def _ids_in_range(callback):
    """An id in the path beyond BIGINT is 404, as any id that names nothing, not a database overflow (500)."""
    @functools.wraps(callback)
    def checked(*args, **kwargs):
        if any(isinstance(v, int) and not fits_bigint(v) for v in kwargs.values()):
            raise NotFound()
        return callback(*args, **kwargs)
    return checked


def add(app, method: str, path: str, callback, **config):
    """Register `callback` under API + path, with and without the trailing slash (MedPerf uses both)."""
    if "<" in path:
        callback = _ids_in_range(callback)
    full = API + path
    app.route(full, method, callback, **config)
    if full.endswith("/"):
        app.route(full.rstrip("/"), method, callback, **config)


# ---------------------------------------------------------------- pagination


def _positive_int(text, default: int, *, strict: bool) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return default
    if value < 0 or (strict and value == 0):
        return default
    return min(value, BIGINT_MAX)  # SQL's LIMIT/OFFSET are BIGINT: larger is "all" / "past the end" anyway


def page_args(ctx) -> tuple[int, int]:
    """limit/offset from the query string; invalid values fall back to the defaults (32, 0)."""
    query = ctx.request.query
    return (
        _positive_int(query.get("limit"), ctx.settings.page_size, strict=True),
        _positive_int(query.get("offset"), 0, strict=False),
    )


def _url_with(request, **params) -> str:
    parts = urlsplit(request.url)
    query = parse_qs(parts.query, keep_blank_values=True)
    for key, value in params.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = [str(value)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(sorted(query.items()), doseq=True), ""))


def paginated(ctx, page: tuple[int, list], transform=lambda row: row) -> dict:
    """MedPerf's LimitOffsetPagination body: count, absolute next/previous URLs, results."""
    count, rows = page
    limit, offset = page_args(ctx)
    next_url = None if offset + limit >= count else _url_with(ctx.request, limit=limit, offset=offset + limit)
    if offset <= 0:
        previous = None
    elif offset - limit <= 0:
        previous = _url_with(ctx.request, limit=limit, offset=None)
    else:
        previous = _url_with(ctx.request, limit=limit, offset=offset - limit)
    return {"count": count, "next": next_url, "previous": previous, "results": [transform(r) for r in rows]}


def list_page(ctx, query, *args):
    """Call store list `query(conn, *args, limit, offset)` with the request's page arguments."""
    limit, offset = page_args(ctx)
    return query(ctx.conn, *args, limit, offset)


# ---------------------------------------------------------------- lookups


def found(record):
    """The record, or 404."""
    if record is None:
        raise NotFound()
    return record


def found_or_forbidden(ctx, record):
    """Endpoints whose permission check looks the object up first: 403 for a missing id, 404 for an admin."""
    if record is None:
        if rules.is_admin(ctx.user):
            raise NotFound()
        raise Forbidden()
    return record


def invalid_pk(field: str, value) -> Invalid:
    """400 `{field: ['Invalid pk ...']}` for a primary key in a body that names nothing."""
    return Invalid({field: [f'Invalid pk "{value}" - object does not exist.']})


def related(conn, getter, value, field: str):
    """Resolve a primary key sent in a body, or 400 `{field: ['Invalid pk ...']}`."""
    record = getter(conn, value) if value is not None else None
    if record is None:
        raise invalid_pk(field, value)
    return record


# ---------------------------------------------------------------- filters


INT_FILTERS = {"owner", "benchmark", "model", "dataset", "data_preparation_mlcube"}
BOOL_FILTERS = {"is_valid", "is_active"}


def filters(ctx, allowed: set[str]) -> dict:
    """Typed equality filters from the query string (MedPerf's filterset_fields)."""
    out = {}
    for key in allowed:
        value = ctx.request.query.get(key)
        if value is None or value == "":
            continue
        if "\x00" in value:
            raise Invalid({key: ["Null characters are not allowed."]})
        if key in INT_FILTERS:
            try:
                out[key] = int(value)
            except ValueError as e:
                raise Invalid({key: ["Enter a number."]}) from e
            if not fits_bigint(out[key]):
                raise Invalid({key: ["Enter a number."]})
        elif key in BOOL_FILTERS:
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = value
    return out
