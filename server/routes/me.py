"""/me/...: the caller's own records and the associations that concern them."""

from __future__ import annotations

from server import store
from server.components import model_view
from server.http import add, list_page, paginated


def my_datasets(ctx):
    return paginated(ctx, list_page(ctx, store.list_datasets_of_owner, ctx.user["id"]))


def my_dataset_associations(ctx):
    """Every row where the caller owns the dataset or the benchmark (incl. metadata.test_result)."""
    return paginated(ctx, list_page(ctx, store.list_dataset_associations_for_user, ctx.user["id"]))


def my_model_associations(ctx):
    return paginated(ctx, list_page(ctx, store.list_model_associations_for_user, ctx.user["id"]))


def my_results(ctx):
    return paginated(ctx, list_page(ctx, store.list_results_of_owner, ctx.user["id"]))


def my_benchmarks(ctx):
    return paginated(ctx, list_page(ctx, store.list_benchmarks_of_owner, ctx.user["id"]))


def my_models(ctx):
    return paginated(ctx, list_page(ctx, store.list_models_of_owner, ctx.user["id"]), lambda m: model_view(ctx.conn, m))


def my_mlcubes(ctx):
    return paginated(ctx, list_page(ctx, store.list_mlcubes_of_owner, ctx.user["id"]))


def register(app):
    add(app, "GET", "/me/datasets/", my_datasets)
    add(app, "GET", "/me/datasets/associations/", my_dataset_associations)
    add(app, "GET", "/me/models/associations/", my_model_associations)
    add(app, "GET", "/me/results/", my_results)
    add(app, "GET", "/me/benchmarks/", my_benchmarks)
    add(app, "GET", "/me/models/", my_models)
    add(app, "GET", "/me/mlcubes/", my_mlcubes)
