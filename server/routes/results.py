"""/results/: execution records, created before running and finalized by the PUT that carries `results`."""

from __future__ import annotations

from server import rules, store
from server.db import now
from server.http import add, filters, found_or_forbidden, invalid_pk, is_id, list_page, paginated, related
from server.validation import validate


def post_result(ctx):
    raw = ctx.body()
    # Permission first, from the dataset named in the body (admin or its owner), as MedPerf does.
    named = raw.get("dataset") if isinstance(raw, dict) else None
    dataset = store.get_dataset(ctx.conn, named) if is_id(named) else None
    if not rules.is_admin(ctx.user):
        rules.require(dataset is not None and rules.can_create_result(ctx.user, dataset))
    body = validate(raw, "api-result")
    if dataset is None:  # an admin naming a dataset that does not exist
        dataset = related(ctx.conn, store.get_dataset, body["dataset"], "dataset")
    # The association states are read under the write lock, in the transaction of the insert: a revoke
    # (or a dataset deletion) either commits before the read or waits until the result is committed.
    ctx.write()
    facts = store.result_creation_facts(ctx.conn, body["benchmark"], body["model"], dataset["id"])
    if facts is None:
        raise invalid_pk("benchmark", body["benchmark"])
    if not facts["model_exists"]:
        raise invalid_pk("model", body["model"])
    if not facts["dataset_exists"]:  # deleted by an admin since the permission check above
        raise invalid_pk("dataset", dataset["id"])
    rules.check_result_create(
        {"reference_model": facts["reference_model"]},
        body["model"],
        {"approval_status": facts["dataset_status"]} if facts["dataset_status"] else None,
        {"approval_status": facts["model_status"]} if facts["model_status"] else None,
    )
    return 201, store.insert_result(ctx.conn, {**body, "owner": ctx.user["id"]})


def list_results(ctx):
    rules.require(rules.can_list_all_results(ctx.user))
    return paginated(ctx, list_page(ctx, store.list_results, filters(ctx, store.FILTERABLE["results"])))


def _result_and_parents(ctx, result_id):
    result = found_or_forbidden(ctx, store.get_result(ctx.conn, result_id))
    return result, store.get_dataset(ctx.conn, result["dataset"]), store.get_benchmark(ctx.conn, result["benchmark"])


def get_result(ctx, result_id):
    result, dataset, benchmark = _result_and_parents(ctx, result_id)
    rules.require(rules.can_view_result(ctx.user, result, dataset, benchmark))
    return result


def put_result(ctx, result_id):
    result, dataset, _benchmark = _result_and_parents(ctx, result_id)
    rules.require(rules.can_edit_result(ctx.user, result, dataset))
    body = validate(ctx.body(), "api-result", partial=True)
    changes = rules.check_result_update(result, body, now())
    updated = store.update_result(ctx.conn, result_id, changes)
    if updated is None:  # finalized meanwhile by a writer that did not take the write lock
        raise rules.finalized_error()
    return updated


def register(app):
    add(app, "POST", "/results/", post_result, late_write=True)
    add(app, "GET", "/results/", list_results)
    add(app, "GET", "/results/<result_id:int>/", get_result)
    add(app, "PUT", "/results/<result_id:int>/", put_result)
