"""JSON Schema -> typed Manifest: every error at once, each with file:line:col, JSON path and a hint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import schemas
from runner.errors import InvalidManifest, ManifestError
from runner.load import Document
from runner.model import (
    AssociationGoal,
    BenchmarkSpec,
    Consent,
    DatasetSpec,
    DecisionGoal,
    DesiredState,
    Manifest,
    OidcSpec,
    OwnedBenchmarkSpec,
    OwnedDatasetSpec,
    OwnerManifest,
    Ref,
    ResultsGoal,
    RuntimeSpec,
    ServerSpec,
    SlurmSpec,
    Where,
)

SCHEMA_NAME = "manifest"
DATA_OWNER, BENCHMARK_OWNER = "DataOwner", "BenchmarkOwner"
KIND_KEYS = {DATA_OWNER: ("datasets", "runtime"), BENCHMARK_OWNER: ("benchmarks",)}  # top-level keys of one kind


@dataclass(frozen=True)
class Problem:
    where: Where
    path: str  # JSON path, e.g. datasets[0].state
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.where}: {self.path or '(document)'}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


def json_path(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _schema_text() -> str:
    from importlib import resources

    return resources.files("schemas").joinpath(f"{SCHEMA_NAME}.schema.json").read_text(encoding="utf-8")


def digest(docs: Sequence[Document]) -> str:
    """A key for the validation cache: the schema and the documents' data."""
    h = hashlib.sha256(_schema_text().encode())
    for d in docs:
        h.update(json.dumps(d.data, sort_keys=True, default=str).encode())
    return h.hexdigest()


def schema_problems(docs: Sequence[Document]) -> list[Problem]:
    """Check every document against the manifest schema; return all problems found."""
    import jsonschema  # heavy (60 ms): a manifest validated before is not checked again (the validation cache)

    validator = jsonschema.Draft202012Validator(schemas.load(SCHEMA_NAME))
    problems: list[Problem] = []
    for doc in docs:
        errors = sorted(validator.iter_errors(doc.data), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        for e in errors:
            problems.extend(_explain(doc, e))
        problems.extend(_kind_problems(doc))
    return problems


def kind_of(doc: Document) -> str:
    """The document's kind (DataOwner when it says none or something else: the schema reports that)."""
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    return BENCHMARK_OWNER if kind == BENCHMARK_OWNER else DATA_OWNER


def by_kind(docs: Sequence[Document]) -> dict[str, list[Document]]:
    """The documents grouped by kind, in the order given."""
    out: dict[str, list[Document]] = {}
    for d in docs:
        out.setdefault(kind_of(d), []).append(d)
    return out


def _kind_problems(doc: Document) -> list[Problem]:
    """Top-level keys of the other kind (the schema's one object holds both kinds' keys)."""
    if not isinstance(doc.data, dict) or doc.data.get("kind") not in KIND_KEYS:
        return []
    kind = doc.data["kind"]
    other = BENCHMARK_OWNER if kind == DATA_OWNER else DATA_OWNER
    return [Problem(doc.where((key,), key=True), key, f"'{key}' belongs to kind {other}, not {kind}",
                    f"give the {other}'s part in a document of its own (kind: {other})")
            for key in KIND_KEYS[other] if key in doc.data]


def _explain(doc: Document, e) -> list[Problem]:
    import difflib  # only an invalid manifest needs suggestions

    path = tuple(e.absolute_path)
    jp = json_path(path)
    where = doc.where(path)
    v = e.validator
    if v == "additionalProperties" and isinstance(e.instance, dict):
        known = sorted((e.schema.get("properties") or {}).keys())
        out = []
        for key in sorted(set(e.instance) - set(known), key=str):
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
            out.append(Problem(doc.where((*path, key), key=True), json_path((*path, key)), f"unknown key '{key}'", hint))
        return out
    if v == "required":
        missing = e.message.split("'")[1] if "'" in e.message else e.message
        if not path and "allOf" in e.schema_path and isinstance(doc.data.get("kind"), str):  # the kind's own key
            kind = doc.data["kind"]
            return [Problem(doc.where(("kind",)), json_path(("kind",)), f"{kind} needs the key '{missing}'",
                            f"add '{missing}', or give the kind this document is (DataOwner: datasets; "
                            "BenchmarkOwner: benchmarks)")]
        return [Problem(where, jp, f"missing required key '{missing}'")]
    if v == "enum":
        options = [str(o) for o in e.validator_value]
        close = difflib.get_close_matches(str(e.instance), options, n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        return [Problem(where, jp, f"{e.instance!r} is not one of: {', '.join(options)}", hint)]
    if v == "const":
        return [Problem(where, jp, f"must be {e.validator_value!r}, not {e.instance!r}")]
    if v == "type":
        return [Problem(where, jp, f"must be of type {e.validator_value}, not {type(e.instance).__name__}")]
    if v in ("minProperties", "maxProperties") and path and path[-1] == "prepare_with":
        return [Problem(where, jp, "give exactly one of 'benchmark' or 'container'",
                        "e.g. prepare_with: {benchmark: chestxray}")]
    if v == "oneOf":
        last = path[-1] if path else None
        if last == "server":
            return [Problem(where, jp, "give exactly one of 'token_env' or 'token_file', or an 'oidc' sign-in",
                            "the token itself never goes in a manifest")]
        if last == "models":
            return [Problem(where, jp, "must be 'all' or a list of model ids or names")]
        return [Problem(where, jp, f"{e.instance!r} must be an id (integer >= 1) or a name (string)")]
    if v == "pattern" and path and path[-1] == "issuer":
        return [Problem(where, jp, f"{e.instance!r} is not an http(s) URL", "the provider's issuer, e.g. "
                        "https://login.example.org/")]
    if v == "pattern" and len(path) > 1 and path[-2] == "scopes":
        return [Problem(where, jp, f"{e.instance!r} is not one scope", "list each scope as its own item, without "
                        "spaces or quotes")]
    if v == "pattern" and path and path[-1] == "url":
        return [Problem(where, jp, f"{e.instance!r} is not an http(s) URL", "e.g. http://127.0.0.1:8000")]
    if v == "not" and path and path[-1] == "oidc":
        return [Problem(where, jp, "give at most one of 'refresh_token_env' or 'client_secret_env'",
                        "a refresh token signs in as a user, a client secret as the client itself")]
    if v == "pattern" and path and path[-1] in ("token_env", "refresh_token_env", "client_secret_env"):
        return [Problem(where, jp, f"{e.instance!r} is not an environment variable name",
                        "name the variable (MEDPERF_TOKEN), never the token itself")]
    return [Problem(where, jp, e.message)]


def validate(docs: Sequence[Document], *, check_paths: bool = True, known_valid: bool = False
             ) -> Manifest | OwnerManifest:
    """Return the typed Manifest of `docs` (an OwnerManifest when they are of kind BenchmarkOwner), or raise
    InvalidManifest listing every problem; documents of both kinds in one run are a ManifestError.

    known_valid: these exact documents passed the schema before (the caller's cache): only paths are checked."""
    if not docs:
        raise ManifestError("no manifest document found", hint="give a file or folder holding a DataOwner or a "
                            "BenchmarkOwner manifest")
    problems = [] if known_valid else schema_problems(docs)
    if check_paths:
        problems.extend(path_problems(docs))
    if problems:
        raise InvalidManifest(sorted(problems, key=lambda p: (p.where.file, p.where.line, p.where.col)))
    kinds = by_kind(docs)
    if len(kinds) > 1:
        files = {k: ", ".join(dict.fromkeys(d.file for d in v)) for k, v in kinds.items()}
        raise ManifestError(f"documents of both kinds in one run: DataOwner ({files[DATA_OWNER]}) and BenchmarkOwner "
                            f"({files[BENCHMARK_OWNER]})", hint="a data owner and a benchmark owner sign in as "
                            "different users: give each kind's files in a run of its own (validate checks both)")
    return build_owner(docs) if BENCHMARK_OWNER in kinds else build(docs)


def validate_each(docs: Sequence[Document], *, check_paths: bool = True) -> list[Manifest | OwnerManifest]:
    """`validate` for documents of both kinds (the validate command on a folder): one manifest per kind, every
    problem of every document reported at once."""
    if not docs:
        return [validate(docs)]
    problems = schema_problems(docs) + (path_problems(docs) if check_paths else [])
    if problems:
        raise InvalidManifest(sorted(problems, key=lambda p: (p.where.file, p.where.line, p.where.col)))
    return [validate(group, check_paths=False, known_valid=True) for group in by_kind(docs).values()]


def path_problems(docs: Sequence[Document]) -> list[Problem]:
    """Paths that do not exist (relative to each manifest's folder); tolerant of schema errors."""
    problems = []
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        s = data.get("server")
        for key in ("token_file", "ca_file"):
            if isinstance(s, dict) and isinstance(s.get(key), str):
                f = doc.folder / s[key]
                if not f.is_file():
                    problems.append(Problem(doc.where(("server", key)), f"server.{key}", f"no such file: {f}"))
        datasets = data.get("datasets")
        for i, d in enumerate(datasets if isinstance(datasets, list) else ()):
            for k in ("data_path", "labels_path"):
                if isinstance(d, dict) and isinstance(d.get(k), str) and d[k]:
                    p = (doc.folder / d[k]).resolve()
                    if not p.is_dir():
                        problems.append(Problem(doc.where(("datasets", i, k)), json_path(("datasets", i, k)),
                                                f"no such folder: {p}" if not p.exists() else f"not a folder: {p}",
                                                "paths are relative to the manifest's folder"))
    return problems


def _ref(kind: str, value: Any) -> Ref:
    return Ref(kind, int(value) if isinstance(value, int) else str(value))


def _repeated_benchmarks(doc: Document, base: tuple, benchmarks: Sequence[dict]) -> list[Problem]:
    """A benchmark listed twice for one dataset (a template produces this easily): both places named."""
    problems, seen = [], {}
    for j, b in enumerate(benchmarks):
        key = str(b["benchmark"])
        path = (*base, "benchmarks", j, "benchmark")
        if key in seen:
            problems.append(Problem(doc.where(path), json_path(path),
                                    f"benchmark {key!r} is listed twice for this dataset (also at {seen[key]})",
                                    "list each benchmark once per dataset"))
        seen.setdefault(key, doc.where(path))
    return problems


def _oidc(o: dict | None) -> OidcSpec | None:
    if o is None:
        return None
    scopes = tuple(o["scopes"]) if "scopes" in o else OidcSpec.scopes
    return OidcSpec(issuer=o["issuer"], client_id=o["client_id"], audience=o.get("audience"),
                    scopes=scopes, refresh_token_env=o.get("refresh_token_env"),
                    client_secret_env=o.get("client_secret_env"))


def _one_server(doc: Document, server: ServerSpec | None, problems: list[Problem]) -> ServerSpec:
    """This document's server section: the run's server, or a problem when it names another one."""
    s = doc.data["server"]
    token_file = (doc.folder / s["token_file"]) if s.get("token_file") else None
    ca_file = (doc.folder / s["ca_file"]).resolve() if s.get("ca_file") else None
    this = ServerSpec(url=s["url"].rstrip("/"), token_env=s.get("token_env"), token_file=token_file,
                      where=doc.where(("server",)), ca_file=ca_file, oidc=_oidc(s.get("oidc")))
    if server is None:
        return this
    if (this.url, this.token_env, this.token_file, this.oidc) != (server.url, server.token_env, server.token_file,
                                                                  server.oidc):
        problems.append(Problem(this.where, "server", f"names another server ({this.url}) than {server.where} "
                                f"({server.url})", "reconcile one server per run: give its manifests separately"))
    return server


def build_owner(docs: Sequence[Document]) -> OwnerManifest:
    """Turn schema-valid BenchmarkOwner documents into an OwnerManifest: one server, each benchmark once, each
    dataset once per benchmark (as written: an id and a name of the same record are caught by the planner)."""
    problems: list[Problem] = []
    server: ServerSpec | None = None
    benchmarks: list[OwnedBenchmarkSpec] = []
    seen: dict[str, Where] = {}
    for doc in docs:
        server = _one_server(doc, server, problems)
        for i, b in enumerate(doc.data["benchmarks"]):
            base = ("benchmarks", i)
            key = str(b["benchmark"])
            if key in seen:
                problems.append(Problem(doc.where((*base, "benchmark")), json_path((*base, "benchmark")),
                                        f"benchmark {key!r} is already listed at {seen[key]}",
                                        "list each benchmark once"))
            seen.setdefault(key, doc.where(base))
            datasets, named = [], {}
            for j, d in enumerate(b.get("datasets") or ()):
                path = (*base, "datasets", j)
                dkey = str(d["dataset"])
                if dkey in named:
                    problems.append(Problem(doc.where((*path, "dataset")), json_path((*path, "dataset")),
                                            f"dataset {dkey!r} is listed twice for this benchmark (also at "
                                            f"{named[dkey]})", "decide each dataset once per benchmark"))
                named.setdefault(dkey, doc.where(path))
                datasets.append(OwnedDatasetSpec(dataset=d["dataset"], association=DecisionGoal(d["association"]),
                                                 where=doc.where(path)))
            benchmarks.append(OwnedBenchmarkSpec(benchmark=b["benchmark"], datasets=tuple(datasets),
                                                 default=DecisionGoal(b.get("default", "pending")),
                                                 where=doc.where(base)))
    if problems:
        raise InvalidManifest(problems)
    assert server is not None
    return OwnerManifest(server=server, benchmarks=tuple(benchmarks), files=tuple(dict.fromkeys(d.file for d in docs)))


def build(docs: Sequence[Document]) -> Manifest:
    """Turn schema-valid documents into a Manifest; check duplicates and that one server is named."""
    problems: list[Problem] = []
    server: ServerSpec | None = None
    runtime: RuntimeSpec | None = None
    datasets: list[DatasetSpec] = []
    seen: dict[str, Where] = {}
    for doc in docs:
        server = _one_server(doc, server, problems)
        if "runtime" in doc.data:
            r = doc.data["runtime"] or {}
            sl = r.get("slurm") or {}
            this_runtime = RuntimeSpec(gpus=r.get("gpus"), shm_size=r.get("shm_size"), where=doc.where(("runtime",)),
                                       executor=r.get("executor", "docker"),
                                       slurm=SlurmSpec(partition=sl.get("partition"), account=sl.get("account"),
                                                       time_limit=sl.get("time_limit"), gres=sl.get("gres"),
                                                       extra_args=tuple(sl.get("extra_args") or ())))
            if runtime is None:
                runtime = this_runtime
            elif dataclasses.replace(this_runtime, where=None) != dataclasses.replace(runtime, where=None):
                problems.append(Problem(this_runtime.where, "runtime", f"differs from the runtime at {runtime.where}",
                                        "one site, one runtime: give it in one document"))
        for i, d in enumerate(doc.data["datasets"]):
            base = ("datasets", i)
            where = doc.where(base)
            if d["name"] in seen:
                problems.append(Problem(doc.where((*base, "name")), json_path((*base, "name")),
                                        f"dataset '{d['name']}' is already declared at {seen[d['name']]}",
                                        "dataset names are their identity: use each once"))
            seen.setdefault(d["name"], where)
            paths = {k: (doc.folder / d[k]).resolve() for k in ("data_path", "labels_path")}
            (kind, value), = d["prepare_with"].items()
            c = d.get("consent") or {}
            benchmarks = tuple(
                BenchmarkSpec(
                    benchmark=b["benchmark"], association=AssociationGoal(b.get("association", "approved")),
                    models="all" if b.get("models", "all") == "all" else tuple(b["models"]),
                    results=ResultsGoal(b.get("results", "submitted")),
                    ignore_model_errors=bool(b.get("ignore_model_errors", False)),
                    where=doc.where((*base, "benchmarks", j)),
                )
                for j, b in enumerate(d.get("benchmarks") or ())
            )
            problems.extend(_repeated_benchmarks(doc, base, d.get("benchmarks") or ()))
            datasets.append(DatasetSpec(
                name=d["name"], data_path=paths["data_path"], labels_path=paths["labels_path"],
                prepare_with=_ref(kind, value), state=DesiredState(d.get("state", "operational")),
                description=d.get("description", ""), location=d.get("location", ""),
                consent=Consent(statistics=c.get("statistics"), compatibility_results=c.get("compatibility_results"),
                                results=c.get("results")),
                benchmarks=benchmarks, where=where, prepared=bool(d.get("prepared", False)),
            ))
    if problems:
        raise InvalidManifest(problems)
    assert server is not None
    return Manifest(server=server, datasets=tuple(datasets), files=tuple(dict.fromkeys(d.file for d in docs)),
                    runtime=runtime or RuntimeSpec())
