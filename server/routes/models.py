"""/models/: models, each wrapping a container created with it (nested on POST and GET)."""

from __future__ import annotations

from server import rules, store
from server.components import create_model, model_view
from server.http import add, filters, found, found_or_forbidden, list_page, paginated
from server.validation import validate


def list_models(ctx):
    page = list_page(ctx, store.list_models, filters(ctx, store.FILTERABLE["models"]))
    return paginated(ctx, page, lambda m: model_view(ctx.conn, m))


def post_model(ctx):
    return 201, create_model(ctx.conn, ctx.user, validate(ctx.body(), "api-model"))


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
        rules.check_unique_name(store.get_model_by_name(ctx.conn, changes["name"]), "model")
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
