"""Containers (MedPerf's MlCube records) and the models wrapping them: creation with MedPerf's checks, and
a model as the API returns it, with its container nested. Used by the /mlcubes/, /models/ and /me/ routes."""

from __future__ import annotations

from server import rules, store
from server.db import Connection
from server.errors import Invalid
from server.validation import fields_of


def create_container(conn: Connection, owner: dict, body: dict) -> dict:
    """Insert a container after MedPerf's checks (unique name, tarball fields, unique content)."""
    rules.check_unique_name(store.get_mlcube_by_name(conn, body["name"]), "mlcube")
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


def create_model(conn: Connection, owner: dict, body: dict) -> dict:
    """Insert a CONTAINER model and the container nested in its (validated) body; return the model's view."""
    if body["type"] != "CONTAINER":
        raise Invalid({"type": ["Only CONTAINER models are supported by this server."]})
    if not isinstance(body.get("container"), dict):
        raise Invalid({"container": ["This field is required."]})
    rules.check_unique_name(store.get_model_by_name(conn, body["name"]), "model")
    container_body = {k: v for k, v in body["container"].items() if k in fields_of("api-mlcube")}
    try:
        container = create_container(conn, owner, rules.check_nested_container(body, container_body))
    except Invalid as e:  # the container's errors belong under "container", as nested serializers report them
        raise Invalid(e.body if set(e.body) == {"container"} else {"container": e.body}) from e
    values = {k: v for k, v in body.items() if k != "container"}
    model = store.insert_model(conn, {**values, "owner": owner["id"], "container": container["id"]})
    return model_view(conn, model)


def model_view(conn: Connection, model: dict) -> dict:
    """A model with its nested container dict (with the container's own id), as MedPerf returns it."""
    out = dict(model)
    out["container"] = store.get_mlcube(conn, model["container"]) if model["container"] is not None else None
    out["asset"] = None
    return out
