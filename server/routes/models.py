"""/models/: models, each wrapping a container created with it (nested on POST and GET)."""

from __future__ import annotations

from server import rules, store
from server.db import Connection
from server.errors import Invalid
from server.routes import add, filters, found, found_or_forbidden, list_page, paginated, unique_name
from server.routes.mlcubes import create_mlcube
from server.validation import fields_of, validate


def model_view(conn: Connection, model: dict) -> dict:
    """A model with its nested container dict (with the container's own id), as MedPerf returns it."""
    out = dict(model)
    out["container"] = store.get_mlcube(conn, model["container"]) if model["container"] is not None else None
    out["asset"] = None
    return out


def list_models(ctx):
    page = list_page(ctx, store.list_models, filters(ctx, store.FILTERABLE["models"]))
    return paginated(ctx, page, lambda m: model_view(ctx.conn, m))


def post_model(ctx):
    body = validate(ctx.body(), "api-model")
    if body["type"] != "CONTAINER":
        raise Invalid({"type": ["Only CONTAINER models are supported by this server."]})
    if not isinstance(body.get("container"), dict):
        raise Invalid({"container": ["This field is required."]})
    unique_name(store.get_model_by_name(ctx.conn, body["name"]), "model")
    container_body = {k: v for k, v in body["container"].items() if k in fields_of("api-mlcube")}
    try:
        container = create_mlcube(ctx.conn, ctx.user, rules.check_nested_container(body, container_body))
    except Invalid as e:  # the container's errors belong under "container", as nested serializers report them
        raise Invalid(e.body if set(e.body) == {"container"} else {"container": e.body}) from e
    values = {k: v for k, v in body.items() if k != "container"}
    model = store.insert_model(ctx.conn, {**values, "owner": ctx.user["id"], "container": container["id"]})
    return 201, model_view(ctx.conn, model)


def get_model(ctx, model_id):
    return model_view(ctx.conn, found(store.get_model(ctx.conn, model_id)))


def put_model(ctx, model_id):
    current = found_or_forbidden(ctx, store.get_model(ctx.conn, model_id))
    rules.require(rules.can_edit_owned(ctx.user, current))
    body = validate(ctx.body(), "api-model", partial=True)
    body.pop("container", None)
    body.pop("type", None)
    changes = rules.check_model_update(current, body)
    if "name" in changes:
        unique_name(store.get_model_by_name(ctx.conn, changes["name"]), "model")
    if not changes:
        return model_view(ctx.conn, current)
    model = store.update_model(ctx.conn, model_id, changes)
    propagated = {k: changes[k] for k in ("state", "is_valid") if k in changes}
    if propagated and model["container"] is not None:
        store.update_mlcube(ctx.conn, model["container"], propagated)
    return model_view(ctx.conn, model)


def register(app):
    add(app, "GET", "/models/", list_models)
    add(app, "POST", "/models/", post_model)
    add(app, "GET", "/models/<model_id:int>/", get_model)
    add(app, "PUT", "/models/<model_id:int>/", put_model)
