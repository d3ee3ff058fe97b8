"""/datasets/: dataset records (metadata, hashes, statistics; never the data)."""

from __future__ import annotations

from server import rules, store
from server.http import add, found, found_or_forbidden, list_page, paginated, related
from server.validation import validate


def dataset_view(conn, user, dataset: dict) -> dict:
    """Full record (with `report`) for admin, owner and the preparation container's owner."""
    if rules.is_admin(user) or rules.owns(user, dataset):
        return dataset
    prep = store.get_mlcube(conn, dataset["data_preparation_mlcube"])
    return dataset if rules.sees_full_dataset(user, dataset, prep) else rules.public_dataset(dataset)


def list_datasets(ctx):
    return paginated(ctx, list_page(ctx, store.list_datasets), rules.public_dataset)


def post_dataset(ctx):
    body = validate(ctx.body(), "api-dataset")
    body.pop("state", None)  # read-only at creation: every dataset starts in DEVELOPMENT
    related(ctx.conn, store.get_mlcube, body["data_preparation_mlcube"], "data_preparation_mlcube")
    return 201, store.insert_dataset(ctx.conn, {**body, "owner": ctx.user["id"]})


def get_dataset(ctx, dataset_id):
    return dataset_view(ctx.conn, ctx.user, found(store.get_dataset(ctx.conn, dataset_id)))


def put_dataset(ctx, dataset_id):
    current = found_or_forbidden(ctx, store.get_dataset(ctx.conn, dataset_id))
    rules.require(rules.can_edit_owned(ctx.user, current))
    body = validate(ctx.body(), "api-dataset", partial=True)
    if "data_preparation_mlcube" in body:
        related(ctx.conn, store.get_mlcube, body["data_preparation_mlcube"], "data_preparation_mlcube")
    uid = body.get("generated_uid", current["generated_uid"])
    taken = store.operational_dataset_with_uid(ctx.conn, uid, dataset_id) is not None
    changes = rules.check_dataset_update(current, body, taken)
    return store.update_dataset(ctx.conn, dataset_id, changes) if changes else current


def delete_dataset(ctx, dataset_id):
    found_or_forbidden(ctx, store.get_dataset(ctx.conn, dataset_id))
    rules.require(rules.is_admin(ctx.user))
    store.delete_dataset(ctx.conn, dataset_id)
    return 204, None


def register(app):
    add(app, "GET", "/datasets/", list_datasets)
    add(app, "POST", "/datasets/", post_dataset)
    add(app, "GET", "/datasets/<dataset_id:int>/", get_dataset)
    add(app, "PUT", "/datasets/<dataset_id:int>/", put_dataset)
    add(app, "DELETE", "/datasets/<dataset_id:int>/", delete_dataset)
