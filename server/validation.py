"""Request bodies checked against schemas/api-*.schema.json; errors in MedPerf's `{field: [messages]}` shape.

Like MedPerf's serializers, keys a schema does not list (read-only or unknown fields such as `id`,
`owner`, `created_at`) are dropped, not refused; text fields are stripped of surrounding whitespace before they are
checked and stored (DRF's CharField), so "  " is blank.
"""

from __future__ import annotations

import functools
import json

import jsonschema
from referencing import Registry, Resource

import schemas
from server.db import BIGINT_MAX, fits_bigint
from server.errors import Invalid

API_SCHEMAS = (
    "api-mlcube", "api-model", "api-benchmark", "api-dataset", "api-dataset-association",
    "api-model-association", "api-association-update", "api-result",
)


@functools.cache
def _registry() -> Registry:
    resources = [(schemas.load(n)["$id"], Resource.from_contents(schemas.load(n))) for n in API_SCHEMAS]
    return Registry().with_resources(resources)


@functools.cache
def _validator(name: str, partial: bool):
    schema = json.loads(json.dumps(schemas.load(name)))
    if partial:
        schema["required"] = []
        for prop in schema["properties"].values():
            if "$ref" in prop:  # nested bodies are not partial-updated through their parent
                prop.clear()
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _message(error: jsonschema.ValidationError) -> str:
    v, value = error.validator, error.validator_value
    if v == "required":
        return "This field is required."
    if v == "type":
        kinds = value if isinstance(value, list) else [value]
        if error.instance is None:
            return "This field may not be null."
        if "integer" in kinds:
            return "A valid integer is required."
        if "boolean" in kinds:
            return "Must be a valid boolean."
        if "object" in kinds:
            return f'Expected a dictionary of items but got type "{type(error.instance).__name__}".'
        if "array" in kinds:
            return f'Expected a list of items but got type "{type(error.instance).__name__}".'
        return "Not a valid string."
    if v == "enum":
        return f'"{error.instance}" is not a valid choice.'
    if v == "maxLength":
        return f"Ensure this field has no more than {value} characters."
    if v == "minLength":
        return "This field may not be blank."
    return error.message


def _place(errors: dict, path: list, message: str):
    node = errors
    for key in path[:-1]:
        node = node.setdefault(str(key), {})
        if isinstance(node, list):  # a message already sits at this level; keep it flat
            node.append(message)
            return
    messages = node.setdefault(str(path[-1]), [])
    if message not in messages:
        messages.append(message)


def _is_text(prop: dict) -> bool:
    kinds = prop.get("type")
    return "enum" not in prop and (kinds == "string" or isinstance(kinds, list) and "string" in kinds)


def _trimmed(body: dict, name: str) -> dict:
    """The body with its text fields stripped, nested records (a model's container) too."""
    props = schemas.load(name)["properties"]
    out = dict(body)
    for key, value in body.items():
        prop = props.get(key) or {}
        if isinstance(value, str) and _is_text(prop):
            out[key] = value.strip()
        elif isinstance(value, dict) and "$ref" in prop:
            out[key] = _trimmed(value, prop["$ref"].removesuffix(".schema.json"))
    return out


def validate(body, name: str, *, partial: bool = False) -> dict:
    """Return the body restricted to the schema's fields, or raise Invalid with every error at once."""
    if not isinstance(body, dict):
        raise Invalid(f"Invalid data. Expected a dictionary, but got {type(body).__name__}.")
    body = _trimmed(body, name)
    validator = _validator(name, partial)
    errors: dict = {}
    for error in validator.iter_errors(body):
        path = list(error.absolute_path)
        if error.validator == "required":
            missing = [p for p in error.validator_value if p not in error.instance]
            for prop in missing:
                _place(errors, path + [prop], _message(error))
            continue
        _place(errors, path or ["non_field_errors"], _message(error))
    for key, value in body.items():
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL TEXT cannot hold it; DRF refuses it too
            _place(errors, [key], "Null characters are not allowed.")
        if isinstance(value, int) and not fits_bigint(value):
            _place(errors, [key], f"Ensure this value is less than or equal to {BIGINT_MAX}.")
    if errors:
        raise Invalid(errors)
    fields = schemas.load(name)["properties"]
    return {k: v for k, v in body.items() if k in fields}


def fields_of(name: str) -> tuple[str, ...]:
    return tuple(schemas.load(name)["properties"])
