"""The JSON Schemas shared by runner and server, loaded by name."""

import functools
import json
from importlib import resources


@functools.cache
def load(name: str) -> dict:
    """Return the parsed schema `name` (file `schemas/<name>.schema.json`)."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def names() -> list[str]:
    """List the schema names shipped in this package."""
    suffix = ".schema.json"
    return sorted(p.name[: -len(suffix)] for p in resources.files(__name__).iterdir() if p.name.endswith(suffix))
