"""The registry's credentials: the API token from server.token_env or server.token_file (never printed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runner.errors import MedperfApplyError
from runner.model import ServerSpec


def read_token(server: ServerSpec, environ: Mapping[str, str]) -> str:
    """The API token from server.token_env or server.token_file."""
    where = str(server.where) if server.where else None
    if server.token_env:
        token = environ.get(server.token_env, "").strip()
        if not token:
            raise MedperfApplyError(f"the environment variable {server.token_env} (server.token_env) is not set",
                                    where=where, hint=f"export {server.token_env}=<your API token>")
        return token
    try:
        token = Path(server.token_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise MedperfApplyError(f"cannot read server.token_file {server.token_file}: {e.strerror}",
                                where=where) from e
    if not token:
        raise MedperfApplyError(f"server.token_file {server.token_file} is empty")
    return token
