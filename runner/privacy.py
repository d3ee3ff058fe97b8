"""The privacy allowlist: exactly which fields each endpoint may receive (a data owner's bodies, a benchmark owner's
decisions), and nothing else.

Pure: check_body raises PrivacyViolation before anything is sent; describe lists the fields for the plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import PrivacyViolation

_API_PREFIX = re.compile(r"^(?:https?://[^/]+)?/?(?:api/v0/)?")
_ID = r"[0-9]+"

# A value check returns None when the value is allowed, or why it is not.
Check = Callable[[Any], "str | None"]


def _is_int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "must be an id (an integer)"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _is_text(limit: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return "must be a string"
        return None if len(v) <= limit else f"is longer than {limit} characters"
    return check


def _is_hash(v: Any) -> str | None:
    ok = isinstance(v, str) and re.fullmatch(r"[0-9a-f]{40,128}", v)
    return None if ok else "must be a hex digest"


def _is_empty(v: Any) -> str | None:
    return None if v == {} else "must be empty ({})"


def _one_of(*values: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in values else f"must be one of {', '.join(values)}"
    return check


def _is_mapping(v: Any) -> str | None:
    """A free-form mapping (statistics, metrics): any nesting of scalars, lists and mappings."""
    return None if isinstance(v, Mapping) else "must be a mapping"


def _is_progress(v: Any) -> str | None:
    if not isinstance(v, Mapping):
        return "must be a mapping of stage to percentage"
    for k, pct in v.items():
        if not isinstance(k, str) or not isinstance(pct, str | int | float) or isinstance(pct, bool):
            return "must map each stage name to a percentage"
    return None


@dataclass(frozen=True)
class _Shape:
    """One allowed body: its fields, each with a check or a nested shape."""

    name: str
    fields: Mapping[str, Check | _Shape]
    required: frozenset[str] = frozenset()


_PREPARE_STATUS = _one_of("started", "running", "finished", "failed", "interrupted")
_RESULT_STATUS = _one_of("pending", "started", "finished", "failed", "interrupted")

_REGISTER = _Shape("register", {
    "name": _is_text(128), "description": _is_text(256), "location": _is_text(128),
    "input_data_hash": _is_hash, "generated_uid": _is_hash, "data_preparation_mlcube": _is_int,
    "split_seed": _is_int, "submitted_as_prepared": _is_bool, "for_test": _is_bool,
    "generated_metadata": _is_empty, "user_metadata": _is_empty,
}, frozenset({"name", "input_data_hash", "generated_uid", "data_preparation_mlcube"}))
_SET_OPERATIONAL = _Shape("set operational", {
    "input_data_hash": _is_hash, "generated_uid": _is_hash, "generated_metadata": _is_mapping,
    "state": _one_of("OPERATION"),
}, frozenset({"input_data_hash", "generated_uid", "generated_metadata", "state"}))
_UPDATE = _Shape("dataset update", {"description": _is_text(256), "location": _is_text(128)}, frozenset())
_PREPARE_REPORT = _Shape("preparation status", {
    "report": _Shape("report", {"execution_status": _PREPARE_STATUS, "progress": _is_progress},
                     frozenset({"execution_status"})),
}, frozenset({"report"}))
_ASSOCIATE = _Shape("association request", {
    "dataset": _is_int, "benchmark": _is_int, "approval_status": _one_of("PENDING"),
    "metadata": _Shape("metadata", {"test_result": _is_mapping}, frozenset({"test_result"})),
}, frozenset({"dataset", "benchmark", "approval_status", "metadata"}))
# The benchmark owner revokes an approval as MedPerf does: a new REJECTED row (allowed only after an APPROVED one).
_REVOKE = _Shape("association revocation", {
    "dataset": _is_int, "benchmark": _is_int, "approval_status": _one_of("REJECTED"), "metadata": _is_empty,
}, frozenset({"dataset", "benchmark", "approval_status", "metadata"}))
_APPROVE = _Shape("association decision", {"approval_status": _one_of("APPROVED", "REJECTED")},
                  frozenset({"approval_status"}))
_CREATE_RESULT = _Shape("result record", {
    "name": _is_text(128), "benchmark": _is_int, "model": _is_int, "dataset": _is_int,
    "results": _is_empty, "metadata": _is_empty, "user_metadata": _is_empty,
    "model_report": _is_empty, "evaluation_report": _is_empty,
}, frozenset({"benchmark", "model", "dataset"}))
_MODEL_STATUS = _Shape("model status", {
    "model_report": _Shape("model_report", {"execution_status": _RESULT_STATUS}, frozenset({"execution_status"})),
}, frozenset({"model_report"}))
_EVALUATION_STATUS = _Shape("evaluation status", {
    "evaluation_report": _Shape("evaluation_report", {"execution_status": _RESULT_STATUS},
                                frozenset({"execution_status"})),
}, frozenset({"evaluation_report"}))
_SUBMIT = _Shape("result submission", {
    "results": _is_mapping,
    "metadata": _Shape("metadata", {"partial": _is_bool}, frozenset({"partial"})),
}, frozenset({"results", "metadata"}))

# (method, path pattern relative to /api/v0/) -> the bodies allowed there, first match wins.
_ENDPOINTS: tuple[tuple[str, re.Pattern[str], tuple[_Shape, ...]], ...] = (
    ("POST", re.compile(r"datasets/"), (_REGISTER,)),
    ("PUT", re.compile(rf"datasets/{_ID}/"), (_SET_OPERATIONAL, _PREPARE_REPORT, _UPDATE)),
    ("POST", re.compile(r"datasets/benchmarks/"), (_ASSOCIATE, _REVOKE)),
    ("PUT", re.compile(rf"datasets/{_ID}/benchmarks/{_ID}/"), (_APPROVE,)),
    ("POST", re.compile(r"results/"), (_CREATE_RESULT,)),
    ("PUT", re.compile(rf"results/{_ID}/"), (_SUBMIT, _MODEL_STATUS, _EVALUATION_STATUS)),
)

# An absolute local path: /x/y, ~/x, ~user/x, C:\x, file:///x, at the start of a value or after a space,
# quote, '=' or bracket (a URL's "//host/..." is not a local path and is not matched).
_LOCAL_PATH = re.compile(
    r"""(?:^|[\s"'=(\[{,;])(?:/(?!/)[^\s/]+(?:/|$)|~[\w.-]*/|[A-Za-z]:[\\/])|file://""",
    re.IGNORECASE,
)


def normalize(path: str) -> str:
    """Return the endpoint path relative to /api/v0/ with a trailing slash, e.g. "datasets/7/"."""
    rel = _API_PREFIX.sub("", path.split("?", 1)[0], count=1)
    return rel if rel.endswith("/") else rel + "/"


def _shapes(method: str, path: str) -> tuple[str, tuple[_Shape, ...]]:
    method = method.upper()
    rel = normalize(path)
    for m, pattern, shapes in _ENDPOINTS:
        if m == method and pattern.fullmatch(rel):
            return rel, shapes
    raise PrivacyViolation(f"{method} /{rel} is not an endpoint the runner may send data to; nothing was sent",
                           hint="this is a bug in medperf-apply: please report it")


def describe(method: str, path: str, variant: str | None = None) -> tuple[str, ...]:
    """Return the field names this endpoint may receive (of one body variant, when named)."""
    _, shapes = _shapes(method, path)
    chosen = [s for s in shapes if variant is None or s.name == variant]
    if not chosen:
        raise PrivacyViolation(f"{method.upper()} /{normalize(path)} has no body called {variant!r}",
                               hint=f"one of: {', '.join(s.name for s in shapes)}")
    names: list[str] = []
    for shape in chosen:
        names.extend(n for n in shape.fields if n not in names)
    return tuple(names)


def check_body(method: str, path: str, body: Mapping) -> None:
    """Raise PrivacyViolation unless every field of body is allowed for this endpoint; nothing is sent then."""
    rel, shapes = _shapes(method, path)
    endpoint = f"{method.upper()} /{rel}"
    if not isinstance(body, Mapping):
        raise PrivacyViolation(f"{endpoint}: the body must be a mapping; nothing was sent")
    keys = set(body)
    candidates = [s for s in shapes if keys <= set(s.fields) and s.required <= keys] or \
        sorted(shapes, key=lambda s: len(keys - set(s.fields)))[:1]
    problems: list[str] = []
    for shape in candidates:  # the first that fits; else the problems of the closest one (fewest)
        found = _check(shape, body, "")
        if not found or not problems or len(found) < len(problems):
            problems = found
        if not found:
            break
    if not problems:
        problems = _local_paths(body, "")
    if problems:
        allowed = " | ".join(", ".join(s.fields) for s in shapes)
        raise PrivacyViolation(f"{endpoint}: {'; '.join(problems)}; nothing was sent",
                               hint=f"this endpoint may receive only: {allowed}")


def _check(shape: _Shape, body: Mapping, prefix: str) -> list[str]:
    problems = []
    for key in body:
        if key not in shape.fields:
            problems.append(f"field {prefix}{key!s} is not allowed")
    for key in sorted(shape.required - set(body)):
        problems.append(f"field {prefix}{key} is missing")
    for key, value in body.items():
        rule = shape.fields.get(key)
        if isinstance(rule, _Shape):
            if not isinstance(value, Mapping):
                problems.append(f"field {prefix}{key} must be a mapping")
            else:
                problems.extend(_check(rule, value, f"{prefix}{key}."))
        elif rule is not None:
            why = rule(value)
            if why:
                problems.append(f"field {prefix}{key} {why}")
    return problems


def _local_paths(value: Any, where: str) -> list[str]:
    """Find strings (values and keys, at any depth) that look like absolute local paths."""
    found = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            key_where = f"{where}.{k}" if where else str(k)
            if isinstance(k, str) and _LOCAL_PATH.search(k):
                found.append(f"field {key_where} has a key that looks like a local path")
            found.extend(_local_paths(v, key_where))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found.extend(_local_paths(v, f"{where}[{i}]"))
    elif isinstance(value, str) and _LOCAL_PATH.search(value):
        found.append(f"field {where} holds what looks like a local path")
    elif value is not None and not isinstance(value, str | int | float | bool):
        found.append(f"field {where} holds a {type(value).__name__}, not JSON data")
    return found


# -- the bodies apply sends, field by field (built from these lists; check_body guards them) -------------------

REGISTER_FIELDS = ("name", "description", "location", "input_data_hash", "generated_uid", "data_preparation_mlcube",
                   "split_seed", "submitted_as_prepared", "for_test", "generated_metadata", "user_metadata")
# What register always sends with the same value (MedPerf's registration constants), shown as such in the plan.
REGISTER_CONSTANTS = {"split_seed": 0, "submitted_as_prepared": False, "for_test": False, "generated_metadata": {},
                      "user_metadata": {}}
SET_OPERATIONAL_FIELDS = ("input_data_hash", "generated_uid", "generated_metadata", "state")
PREPARE_REPORT_FIELDS = ("report",)
# What a registered dataset's update may send (MedPerf lets its owner change them while it is in DEVELOPMENT).
UPDATABLE_FIELDS = ("description", "location")
# POST results/ (MedPerf's Execution schema, without the read-only and null keys)
RESULT_RECORD_FIELDS = ("name", "benchmark", "model", "dataset", "results", "metadata", "user_metadata",
                        "model_report", "evaluation_report")
# What the plan shows for the benchmark steps (the allowlist has the whole bodies).
ASSOCIATE_SHOWN = ("test_result",)  # with dataset, benchmark, approval_status=PENDING
RUN_SHOWN = ("model_report", "evaluation_report")  # status reports (execution_status only) on the result record
SUBMIT_SHOWN = ("results", "partial")


def is_interrupted_report(method: str, path: str, body: Mapping) -> bool:
    """The one kind of body sent after an interrupt: a status report marking the stopped task `interrupted`."""
    if method.upper() != "PUT" or not isinstance(body, Mapping) or len(body) != 1:
        return False
    rel = normalize(path)
    (key, value), = body.items()
    if re.fullmatch(rf"datasets/{_ID}/", rel) and key == "report" or \
            re.fullmatch(rf"results/{_ID}/", rel) and key in ("model_report", "evaluation_report"):
        return isinstance(value, Mapping) and value.get("execution_status") == "interrupted"
    return False


def json_safe(value: Any) -> Any:
    """As MedPerf sends them: NaN and infinities become the strings "nan", "Infinity", "-Infinity"."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "nan" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
