"""/mlcubes/: containers (MedPerf's MlCube records), with their datasets and wrapping model."""

from __future__ import annotations

from server import rules, store
from server.components import create_container, model_view
from server.http import add, filters, found, found_or_forbidden, list_page, paginated
from server.validation import validate


def list_mlcubes(ctx):
    page = list_page(ctx, store.list_mlcubes, filters(ctx, store.FILTERABLE["mlcubes"]))
    return paginated(ctx, page)


def post_mlcube(ctx):
    body = validate(ctx.body(), "api-mlcube")
    return 201, create_container(ctx.conn, ctx.user, body)


def get_mlcube(ctx, mlcube_id):
    return found(store.get_mlcube(ctx.conn, mlcube_id))


def put_mlcube(ctx, mlcube_id):
    current = found_or_forbidden(ctx, store.get_mlcube(ctx.conn, mlcube_id))
    rules.require(rules.can_edit_owned(ctx.user, current))
    body = validate(ctx.body(), "api-mlcube", partial=True)
    changes = rules.check_mlcube_update(current, body)
    if "name" in changes:
        rules.check_unique_name(store.get_mlcube_by_name(ctx.conn, changes["name"]), "mlcube")
    merged = {**current, **changes}
    rules.check_tarball_fields(merged["additional_files_tarball_url"], merged["additional_files_tarball_hash"])
    return store.update_mlcube(ctx.conn, mlcube_id, changes) if changes else current


def mlcube_datasets(ctx, mlcube_id):
    mlcube = found(store.get_mlcube(ctx.conn, mlcube_id))
    rules.require(rules.can_edit_owned(ctx.user, mlcube))
    return paginated(ctx, list_page(ctx, store.list_datasets_of_mlcube, mlcube_id))


def mlcube_model(ctx, mlcube_id):
    found(store.get_mlcube(ctx.conn, mlcube_id))
    return model_view(ctx.conn, found(store.get_model_of_mlcube(ctx.conn, mlcube_id)))


def register(app):
    add(app, "GET", "/mlcubes/", list_mlcubes)
    add(app, "POST", "/mlcubes/", post_mlcube)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/", get_mlcube)
    add(app, "PUT", "/mlcubes/<mlcube_id:int>/", put_mlcube)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/datasets/", mlcube_datasets)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/model/", mlcube_model)
