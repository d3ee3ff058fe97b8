"""Dataset and model associations with benchmarks: history rows, latest wins (POST request, PUT decide)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from server import decisions, rules, store
from server.db import now
from server.http import add, found, list_page, paginated, related
from server.validation import validate


@dataclass(frozen=True)
class _Subject:
    """What differs between a dataset's and a model's association with a benchmark."""

    field: str  # "dataset" | "model": the body key and the auto-approval fields' prefix
    schema: str
    get: Callable
    can_request: Callable
    check_create: Callable
    latest: Callable
    insert: Callable
    can_see: Callable
    history: Callable


_DATASET = _Subject("dataset", "api-dataset-association", store.get_dataset, rules.can_request_dataset_association,
                    rules.check_dataset_association_create, store.latest_dataset_association,
                    store.insert_dataset_association, rules.can_see_dataset_association,
                    store.dataset_association_history)
_MODEL = _Subject("model", "api-model-association", store.get_model, rules.can_request_model_association,
                  rules.check_model_association_create, store.latest_model_association,
                  store.insert_model_association, rules.can_see_model_association,
                  store.model_association_history)


def _request_association(ctx, subject: _Subject):
    """POST a new association row; its status follows the history and the benchmark's auto-approval mode."""
    body = validate(ctx.body(), subject.schema)
    entity = related(ctx.conn, subject.get, body[subject.field], subject.field)
    benchmark = related(ctx.conn, store.get_benchmark, body["benchmark"], "benchmark")
    rules.require(subject.can_request(ctx.user, entity, benchmark))
    subject.check_create(entity, benchmark)
    status = rules.association_status_on_create(
        initiator=ctx.user,
        requested=body.get("approval_status", rules.PENDING),
        latest=subject.latest(ctx.conn, entity["id"], benchmark["id"]),
        subject_owner=store.get_user(ctx.conn, entity["owner"]),
        benchmark=benchmark,
        mode_field=f"{subject.field}_auto_approval_mode",
        allow_list_field=f"{subject.field}_auto_approval_allow_list",
    )
    row = subject.insert(ctx.conn, {
        subject.field: entity["id"], "benchmark": benchmark["id"], "initiated_by": ctx.user["id"],
        "metadata": body["metadata"], "approval_status": status, "approved_at": rules.approved_at_for(status, now()),
    })
    return 201, row


# ---------------------------------------------------------------- datasets


def post_dataset_association(ctx):
    return _request_association(ctx, _DATASET)


def list_dataset_associations(ctx, dataset_id):
    dataset = found(store.get_dataset(ctx.conn, dataset_id))
    rules.require(rules.can_list_dataset_associations(ctx.user, dataset))
    return paginated(ctx, list_page(ctx, store.list_associations_of_dataset, dataset_id))


def _pair(ctx, subject: _Subject, entity_id, benchmark_id):
    """Both records of the pair (404 if either is missing), once the caller may see their association."""
    entity = found(subject.get(ctx.conn, entity_id))
    benchmark = found(store.get_benchmark(ctx.conn, benchmark_id))
    rules.require(subject.can_see(ctx.user, entity, benchmark))
    return entity, benchmark


def _history(ctx, subject: _Subject, entity_id, benchmark_id):
    """Every row of the pair, a plain list ordered by modified_at (clients take the latest by created_at)."""
    _pair(ctx, subject, entity_id, benchmark_id)
    return subject.history(ctx.conn, entity_id, benchmark_id)


def get_dataset_association(ctx, dataset_id, benchmark_id):
    return _history(ctx, _DATASET, dataset_id, benchmark_id)


def put_dataset_association(ctx, dataset_id, benchmark_id):
    decisions.dataset_pair(ctx.conn, ctx.user, dataset_id, benchmark_id)
    latest = decisions.latest_request(ctx.conn, dataset_id, benchmark_id)
    body = validate(ctx.body(), "api-association-update", partial=True)
    if "approval_status" not in body:
        return latest
    return decisions.decide_latest(ctx.conn, ctx.user, latest, body["approval_status"])


def delete_dataset_association(ctx, dataset_id, benchmark_id):
    _pair(ctx, _DATASET, dataset_id, benchmark_id)
    rules.require(rules.is_admin(ctx.user))
    store.delete_dataset_associations(ctx.conn, dataset_id, benchmark_id)
    return 204, None


# ---------------------------------------------------------------- models


def post_model_association(ctx):
    return _request_association(ctx, _MODEL)


def list_model_associations(ctx, model_id):
    model = found(store.get_model(ctx.conn, model_id))
    rules.require(rules.can_edit_owned(ctx.user, model))
    return paginated(ctx, list_page(ctx, store.list_associations_of_model, model_id))


def get_model_association(ctx, model_id, benchmark_id):
    return _history(ctx, _MODEL, model_id, benchmark_id)


def put_model_association(ctx, model_id, benchmark_id):
    _model, benchmark = _pair(ctx, _MODEL, model_id, benchmark_id)
    latest = found(store.latest_model_association(ctx.conn, model_id, benchmark_id))
    body = validate(ctx.body(), "api-association-update", partial=True)
    changes: dict = {}
    if "priority" in body:
        rules.require(rules.can_set_priority(ctx.user, benchmark))
        changes["priority"] = body["priority"]
    if "approval_status" in body:
        rules.check_association_decision(ctx.user, latest, body["approval_status"])
        changes["approval_status"] = body["approval_status"]
        changes["approved_at"] = now()
    if "approval_status" in changes:
        return decisions.decided(store.decide_model_association(ctx.conn, latest["id"], changes))
    return store.update_model_association(ctx.conn, latest["id"], changes) if changes else latest


def register(app):
    add(app, "POST", "/datasets/benchmarks/", post_dataset_association)
    add(app, "GET", "/datasets/<dataset_id:int>/benchmarks/", list_dataset_associations)
    add(app, "GET", "/datasets/<dataset_id:int>/benchmarks/<benchmark_id:int>/", get_dataset_association)
    add(app, "PUT", "/datasets/<dataset_id:int>/benchmarks/<benchmark_id:int>/", put_dataset_association)
    add(app, "DELETE", "/datasets/<dataset_id:int>/benchmarks/<benchmark_id:int>/", delete_dataset_association)
    add(app, "POST", "/models/benchmarks/", post_model_association)
    add(app, "GET", "/models/<model_id:int>/benchmarks/", list_model_associations)
    add(app, "GET", "/models/<model_id:int>/benchmarks/<benchmark_id:int>/", get_model_association)
    add(app, "PUT", "/models/<model_id:int>/benchmarks/<benchmark_id:int>/", put_model_association)
