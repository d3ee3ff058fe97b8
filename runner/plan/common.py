"""PURE: what the planner's parts share: resolving a manifest reference, step keys, the consent gate, and the
fields a step sends (as the privacy allowlist lets that endpoint receive them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner import privacy
from runner.errors import ReferenceNotFound
from runner.model import Action, Change, DatasetSpec, Observation, Ref, RemoteBenchmark, RemoteContainer, Step


def sends(method: str, path: str, variant: str, fields: Sequence[str]) -> tuple[str, ...]:
    """The fields of `fields` the privacy allowlist lets this endpoint receive, in the body's order."""
    allowed = set(privacy.describe(method, path, variant))
    return tuple(f for f in fields if f in allowed)


def step_key(dataset: str, action: Action, benchmark: str | None = None, model: str | None = None) -> str:
    key = f"dataset/{dataset}/{action.value}"
    if benchmark is not None:
        key = f"dataset/{dataset}/benchmark/{benchmark}/{action.value}"
        if model is not None:
            key += f"/model/{model}"
    return key


def resolve(ref: Ref, obs: Observation, *, where: object = None, dataset: str = "") -> RemoteBenchmark | RemoteContainer:
    """The server record a manifest reference names, or ReferenceNotFound."""
    if ref.key not in obs.refs:
        raise ReferenceNotFound(f"{ref} was not observed (internal error)", where=str(where) if where else None)
    record = obs.refs[ref.key]
    if record is None:
        by = "id" if isinstance(ref.value, int) else "name"
        raise ReferenceNotFound(
            f"dataset {dataset}: unknown {ref.kind} {ref.value!r} (no {ref.kind} with that {by} on {obs.server_url})",
            where=str(where) if where else None,
            hint=f"check the {ref.kind}'s {by} (the server's web page lists them)",
        )
    return record


def preparation_container(spec: DatasetSpec, obs: Observation) -> int | None:
    """The data preparation container `prepare_with` names (ReferenceNotFound when it names nothing)."""
    resolve(spec.prepare_with, obs, where=spec.where, dataset=spec.name)
    return obs.preparation_container(spec.prepare_with)


def with_consent(spec: DatasetSpec, what: str, shown: str, reason: str, base: dict[str, Any], *, interactive: bool,
                 consequence: str = "") -> Step:
    """The step `base` as consent.<what> allows it: to do (given), a gate (refused, or not said without a
    terminal), or to do after asking once (not said, in a terminal)."""
    given = getattr(spec.consent, what)
    where = f" ({spec.where})" if spec.where else ""
    if given is True:
        return Step(change=Change.TODO, reason=reason, **base)
    if given is False:
        return Step(change=Change.GATE, reason=f"consent.{what} is false for dataset {spec.name}{where}: "
                    f"{shown} may not be sent{consequence}", **base)
    if interactive:
        return Step(change=Change.TODO, reason=f"{reason}; needs consent to send {shown}: asked once before sending",
                    consent=what, **base)
    return Step(change=Change.GATE, reason=f"waits for consent to send {shown}: set consent.{what}: true under "
                f"dataset {spec.name}{where}", **base)
