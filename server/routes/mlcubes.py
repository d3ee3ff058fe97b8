"""/mlcubes/: containers (MedPerf's MlCube records), with their datasets and wrapping model."""

from __future__ import annotations

from server import rules, store
from server.db import Connection
from server.errors import Invalid
from server.routes import add, filters, found, found_or_forbidden, list_page, paginated, unique_name
from server.validation import validate


def create_mlcube(conn: Connection, owner: dict, body: dict) -> dict:
    """Insert a container after MedPerf's checks (unique name, tarball fields, unique content)."""
    unique_name(store.get_mlcube_by_name(conn, body["name"]), "mlcube")
    url = body.get("additional_files_tarball_url", "")
    tarball_hash = body.get("additional_files_tarball_hash", "")
    rules.check_tarball_fields(url, tarball_hash)
    duplicate = store.find_mlcube_duplicate(
        conn, body["image_hash"], tarball_hash, body["container_config"], body.get("parameters_config")
    )
    if duplicate is not None:
        raise Invalid(
            "The fields image_hash, additional_files_tarball_hash, container_config, parameters_config "
            f"must make a unique set (same as container {duplicate['id']})"
        )
    return store.insert_mlcube(conn, {**body, "owner": owner["id"]})


def list_mlcubes(ctx):
    page = list_page(ctx, store.list_mlcubes, filters(ctx, store.FILTERABLE["mlcubes"]))
    return paginated(ctx, page)


def post_mlcube(ctx):
    body = validate(ctx.body(), "api-mlcube")
    return 201, create_mlcube(ctx.conn, ctx.user, body)


def get_mlcube(ctx, mlcube_id):
    return found(store.get_mlcube(ctx.conn, mlcube_id))


def put_mlcube(ctx, mlcube_id):
    current = found_or_forbidden(ctx, store.get_mlcube(ctx.conn, mlcube_id))
    rules.require(rules.can_edit_owned(ctx.user, current))
    body = validate(ctx.body(), "api-mlcube", partial=True)
    changes = rules.check_mlcube_update(current, body)
    if "name" in changes:
        unique_name(store.get_mlcube_by_name(ctx.conn, changes["name"]), "mlcube")
    merged = {**current, **changes}
    rules.check_tarball_fields(merged["additional_files_tarball_url"], merged["additional_files_tarball_hash"])
    return store.update_mlcube(ctx.conn, mlcube_id, changes) if changes else current


def mlcube_datasets(ctx, mlcube_id):
    mlcube = found(store.get_mlcube(ctx.conn, mlcube_id))
    rules.require(rules.can_edit_owned(ctx.user, mlcube))
    return paginated(ctx, list_page(ctx, store.list_datasets_of_mlcube, mlcube_id))


def mlcube_model(ctx, mlcube_id):
    from server.routes.models import model_view

    found(store.get_mlcube(ctx.conn, mlcube_id))
    return model_view(ctx.conn, found(store.get_model_of_mlcube(ctx.conn, mlcube_id)))


def register(app):
    add(app, "GET", "/mlcubes/", list_mlcubes)
    add(app, "POST", "/mlcubes/", post_mlcube)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/", get_mlcube)
    add(app, "PUT", "/mlcubes/<mlcube_id:int>/", put_mlcube)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/datasets/", mlcube_datasets)
    add(app, "GET", "/mlcubes/<mlcube_id:int>/model/", mlcube_model)
