"""/version, /me/ and /users/{id}/."""

from __future__ import annotations

from server import rules, store
from server.http import add, found

USER_FIELDS = ("id", "username", "email", "first_name", "last_name", "metadata", "is_admin")


def user_view(user: dict) -> dict:
    return {k: user[k] for k in USER_FIELDS}


def version(ctx):
    return {"version": "v0"}


def me(ctx):
    return user_view(ctx.user)


def get_user(ctx, user_id):
    target = found(store.get_user(ctx.conn, user_id))
    prepares = ctx.user is not None and store.user_prepares_with_mlcube_of(ctx.conn, user_id, ctx.user["id"])
    rules.require(rules.can_view_user(ctx.user, user_id, prepares))
    return user_view(target)


def register(app):
    for path in ("/version", "/api/v0/version", "/api/v0/version/"):
        app.route(path, "GET", version, auth=False)
    add(app, "GET", "/me/", me)
    add(app, "GET", "/users/<user_id:int>/", get_user)
