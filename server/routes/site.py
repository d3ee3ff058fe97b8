"""The OpenAPI document at /api/v0/schema and the read-only HTML overview at /."""

from __future__ import annotations

import functools

import bottle
import jinja2

from server import openapi, store

PAGE_ALL = 10_000


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("server", "templates"), autoescape=True)


def overview(ctx):
    """Benchmarks, datasets, latest associations and submitted results per benchmark (public fields only)."""
    conn = ctx.conn
    _, benchmarks = store.list_benchmarks(conn, {}, PAGE_ALL, 0)
    _, datasets = store.list_datasets(conn, PAGE_ALL, 0)
    _, models = store.list_models(conn, {}, PAGE_ALL, 0)
    results = {b["id"]: store.finalized_results_of_benchmark(conn, b["id"]) for b in benchmarks}
    metrics = {bid: sorted({k for r in rows for k in (r["results"] or {})}) for bid, rows in results.items()}
    bottle.response.content_type = "text/html; charset=utf-8"
    return _templates().get_template("index.html").render(
        benchmarks=benchmarks, datasets=datasets, associations=store.all_latest_dataset_associations(conn),
        results=results, metrics=metrics, models={m["id"]: m["name"] for m in models},
    )


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
        app.route("/", "GET", overview, auth=False, raw=True)
