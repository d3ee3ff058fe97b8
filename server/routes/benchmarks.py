"""/benchmarks/: benchmarks and their models, datasets and results lists."""

from __future__ import annotations

from server import rules, store
from server.db import now
from server.http import add, filters, found, found_or_forbidden, list_page, paginated, related
from server.validation import validate


def _components(conn, values: dict) -> list[dict]:
    return [
        related(conn, store.get_mlcube, values["data_preparation_mlcube"], "data_preparation_mlcube"),
        related(conn, store.get_model, values["reference_model"], "reference_model"),
        related(conn, store.get_mlcube, values["data_evaluator_mlcube"], "data_evaluator_mlcube"),
    ]


def list_benchmarks(ctx):
    page = list_page(ctx, store.list_benchmarks, filters(ctx, store.FILTERABLE["benchmarks"]))
    return paginated(ctx, page, lambda b: rules.benchmark_view(ctx.user, b))


def post_benchmark(ctx):
    body = validate(ctx.body(), "api-benchmark")
    body.pop("approval_status", None)  # read-only: set by the auto-approve list or later by an admin
    components = _components(ctx.conn, body)
    rules.check_unique_name(store.get_benchmark_by_name(ctx.conn, body["name"]), "benchmark")
    status = rules.initial_benchmark_approval(
        ctx.user["email"],
        ctx.settings.auto_approve_benchmarks_from,
        store.count_pending_benchmarks_of_owner(ctx.conn, ctx.user["id"]),
    )
    rules.check_benchmark_components(body.get("state", rules.DEVELOPMENT), [c["state"] for c in components])
    values = {**body, "owner": ctx.user["id"], "approval_status": status,
              "approved_at": rules.approved_at_for(status, now())}
    return 201, store.insert_benchmark(ctx.conn, values)


def get_benchmark(ctx, benchmark_id):
    return rules.benchmark_view(ctx.user, found(store.get_benchmark(ctx.conn, benchmark_id)))


def put_benchmark(ctx, benchmark_id):
    current = found_or_forbidden(ctx, store.get_benchmark(ctx.conn, benchmark_id))
    rules.require(rules.can_edit_owned(ctx.user, current))
    body = validate(ctx.body(), "api-benchmark", partial=True)
    components = _components(ctx.conn, {**current, **body})
    changes = rules.check_benchmark_update(ctx.user, current, body, [c["state"] for c in components])
    if "name" in changes:
        rules.check_unique_name(store.get_benchmark_by_name(ctx.conn, changes["name"]), "benchmark")
    if "approval_status" in changes:
        changes["approved_at"] = rules.approved_at_for(changes["approval_status"], now())
    return store.update_benchmark(ctx.conn, benchmark_id, changes) if changes else current


def benchmark_models(ctx, benchmark_id):
    """Every model association row of the benchmark, priority first; refused to unapproved data owners."""
    benchmark = found(store.get_benchmark(ctx.conn, benchmark_id))
    approved = ctx.user is not None and store.user_has_approved_dataset_in(ctx.conn, ctx.user["id"], benchmark_id)
    rules.require(rules.can_list_benchmark_models(ctx.user, benchmark, approved))
    page = list_page(ctx, store.list_model_associations_of_benchmark, benchmark_id)
    fields = ("model", "approval_status", "priority", "created_at")
    return paginated(ctx, page, lambda row: {k: row[k] for k in fields})


def benchmark_datasets(ctx, benchmark_id):
    benchmark = found(store.get_benchmark(ctx.conn, benchmark_id))
    approved = ctx.user is not None and store.user_has_approved_model_in(ctx.conn, ctx.user["id"], benchmark_id)
    rules.require(rules.can_list_benchmark_datasets(ctx.user, benchmark, approved))
    page = list_page(ctx, store.list_dataset_associations_of_benchmark, benchmark_id)
    fields = ("dataset", "approval_status", "created_at")
    return paginated(ctx, page, lambda row: {k: row[k] for k in fields})


def benchmark_results(ctx, benchmark_id):
    benchmark = found(store.get_benchmark(ctx.conn, benchmark_id))
    rules.require(rules.can_list_benchmark_results(ctx.user, benchmark))
    return paginated(ctx, list_page(ctx, store.list_results_of_benchmark, benchmark_id))


def register(app):
    add(app, "GET", "/benchmarks/", list_benchmarks)
    add(app, "POST", "/benchmarks/", post_benchmark)
    add(app, "GET", "/benchmarks/<benchmark_id:int>/", get_benchmark)
    add(app, "PUT", "/benchmarks/<benchmark_id:int>/", put_benchmark)
    add(app, "GET", "/benchmarks/<benchmark_id:int>/models/", benchmark_models)
    add(app, "GET", "/benchmarks/<benchmark_id:int>/datasets/", benchmark_datasets)
    add(app, "GET", "/benchmarks/<benchmark_id:int>/results/", benchmark_results)
