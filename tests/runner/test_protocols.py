"""The test doubles and the real clients implement the same Protocols: a fake missing a method, or taking
other arguments than the pipeline passes, fails here instead of hiding behind a passing fast test."""

from __future__ import annotations

import inspect

import pytest

from runner.clients import Api, ContainerRunner, Hasher, NoProgress, Progress
from runner.clients.api import ApiClient
from runner.clients.containers import DockerRunner
from runner.clients.slurm import SlurmRunner
from runner.console import LiveProgress
from runner.hashing import folders_hash
from tests.runner.fakes import FakeApi, FakeRunner


def _members(proto: type) -> dict[str, object]:
    names = {n for n in vars(proto) if not n.startswith("_")} | set(getattr(proto, "__annotations__", {}))
    return {n: getattr(proto, n, None) for n in names}


def _accepts(impl, proto_fn) -> list[str]:
    """What the protocol's signature passes that `impl` cannot take."""
    want = inspect.signature(proto_fn)
    have = inspect.signature(impl)
    if any(p.kind is p.VAR_KEYWORD for p in have.parameters.values()):
        return []
    missing = []
    for name, p in want.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in have.parameters:
            missing.append(name)
        elif p.default is not inspect.Parameter.empty and have.parameters[name].default is inspect.Parameter.empty:
            missing.append(f"{name} (optional in the protocol, required here)")
    return missing


CASES = [(Api, FakeApi), (Api, ApiClient), (ContainerRunner, FakeRunner), (ContainerRunner, DockerRunner),
         (ContainerRunner, SlurmRunner),
         (Progress, NoProgress), (Progress, LiveProgress)]


@pytest.mark.parametrize(("proto", "impl"), CASES, ids=[f"{p.__name__}-{i.__name__}" for p, i in CASES])
def test_implementation_has_every_member_with_compatible_arguments(proto, impl):
    for name, member in _members(proto).items():
        assert hasattr(impl, name) or name in getattr(impl, "__annotations__", {}) or \
            name in inspect.signature(impl.__init__).parameters or _set_in_init(impl, name), \
            f"{impl.__name__} lacks {proto.__name__}.{name}"
        if callable(member):
            problems = _accepts(getattr(impl, name), member)
            assert not problems, f"{impl.__name__}.{name} cannot take {problems} of {proto.__name__}.{name}"


def _set_in_init(impl: type, name: str) -> bool:
    """An attribute the constructor sets (e.g. request_count)."""
    return f"self.{name} =" in inspect.getsource(impl.__init__)


def test_the_hash_function_is_a_hasher():
    assert not _accepts(folders_hash, Hasher.__call__)


def test_the_check_can_fail():
    class Lacking:
        def get(self, path): ...

    assert _accepts(Lacking.get, Api.get) == ["params"]
    assert not hasattr(Lacking, "create")
