"""The OpenAPI 3.1 document: paths from the app's routes, request bodies from schemas/api-*.schema.json."""

from __future__ import annotations

import copy
import re

import schemas
from server.validation import API_SCHEMAS

# (method, path) -> request body schema name
REQUEST_BODIES = {
    ("POST", "/api/v0/mlcubes/"): "api-mlcube",
    ("PUT", "/api/v0/mlcubes/{mlcube_id}/"): "api-mlcube",
    ("POST", "/api/v0/models/"): "api-model",
    ("PUT", "/api/v0/models/{model_id}/"): "api-model",
    ("POST", "/api/v0/benchmarks/"): "api-benchmark",
    ("PUT", "/api/v0/benchmarks/{benchmark_id}/"): "api-benchmark",
    ("POST", "/api/v0/datasets/"): "api-dataset",
    ("PUT", "/api/v0/datasets/{dataset_id}/"): "api-dataset",
    ("POST", "/api/v0/datasets/benchmarks/"): "api-dataset-association",
    ("PUT", "/api/v0/datasets/{dataset_id}/benchmarks/{benchmark_id}/"): "api-association-update",
    ("POST", "/api/v0/models/benchmarks/"): "api-model-association",
    ("PUT", "/api/v0/models/{model_id}/benchmarks/{benchmark_id}/"): "api-association-update",
    ("POST", "/api/v0/results/"): "api-result",
    ("PUT", "/api/v0/results/{result_id}/"): "api-result",
}
_PARAM = re.compile(r"<(\w+)(?::\w+)?>")


def _component(name: str) -> dict:
    schema = copy.deepcopy(schemas.load(name))
    schema.pop("$schema", None)
    schema.pop("$id", None)
    for prop in schema.get("properties", {}).values():
        ref = prop.get("$ref")
        if ref and ref.endswith(".schema.json"):
            prop["$ref"] = "#/components/schemas/" + ref[: -len(".schema.json")]
    return schema


def _common_components() -> dict:
    return {
        "Error": {"type": "object", "description": "401/403/404: {detail}; 400: {field: [messages]} or "
                  "{non_field_errors: [messages]}", "additionalProperties": True},
        "Page": {"type": "object", "required": ["count", "next", "previous", "results"], "properties": {
            "count": {"type": "integer"}, "next": {"type": ["string", "null"], "format": "uri"},
            "previous": {"type": ["string", "null"], "format": "uri"}, "results": {"type": "array"}}},
    }


def build(app) -> dict:
    """Return the OpenAPI document describing the app's /api/v0 routes."""
    paths: dict = {}
    for route in app.routes:
        if not route.rule.startswith("/api/v0/") or not route.rule.endswith("/"):
            continue
        path = _PARAM.sub(r"{\1}", route.rule)
        doc = (route.callback.__doc__ or route.callback.__name__.replace("_", " ")).strip().splitlines()[0]
        op: dict = {
            "operationId": f"{route.method.lower()}_{route.callback.__name__}",
            "summary": doc,
            "responses": {
                "200" if route.method != "POST" else "201": {"description": "OK",
                                                             "content": {"application/json": {}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
        if route.config.get("auth", True):
            op["security"] = [{"bearer": []}]
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "integer"}}
                  for n in _PARAM.findall(route.rule)]
        if params:
            op["parameters"] = params
        body = REQUEST_BODIES.get((route.method, path))
        if body:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body}"}}}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "medperf-apply registry (MedPerf API v0)", "version": "v0"},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**{n: _component(n) for n in API_SCHEMAS}, **_common_components()},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "API token (medperf-server user create) or RS256 JWT"}},
        },
    }
