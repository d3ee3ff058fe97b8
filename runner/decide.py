"""`medperf-apply association approve|reject|list`: the benchmark owner's side of the approval gate.

approve|reject: one PUT datasets/{D}/benchmarks/{B}/ {approval_status} on a PENDING request, as `medperf association
approve|reject` sends it; nothing when already so (exit 0); reject of an APPROVED one revokes it with a new REJECTED
row, as MedPerf allows. Bodies pass the privacy allowlist and the state dir's ledger. list: my benchmarks' requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.clients.retry import DEADLINE_S
from runner.console import Console
from runner.errors import ExitStatus, MedperfApplyError, ServerError, UsageError
from runner.load import load
from runner.model import FORMAT_VERSION, ApprovalStatus, Ref, RemoteBenchmark, ServerSpec, latest_associations
from runner.observe import fetch_ref, find_association, observe_owner
from runner.reconcile import Clients
from runner.report.owner import association_document, association_rows, association_text
from runner.state import root_for
from runner.validate import validate

DECISIONS = {"approve": ApprovalStatus.APPROVED, "reject": ApprovalStatus.REJECTED}
STATUSES = ("pending", "approved", "rejected")


@dataclass(frozen=True)
class Decision:
    decision: str  # approve | reject | list
    benchmark: str | None
    dataset: str | None
    server: str | None = None
    token_env: str = "MEDPERF_TOKEN"
    token_file: str | None = None
    state_dir: str | None = None
    request_timeout: float = DEADLINE_S  # --request-timeout: one request, answer included
    ca_file: str | None = None  # --ca-file: a private CA (overrides server.ca_file)
    manifest: str | None = None  # --manifest: the server section of this manifest (e.g. its oidc sign-in)
    status: str | None = None  # list --status: pending | approved | rejected


def decide(d: Decision, clients: Clients, console: Console) -> int:
    """Approve or reject the latest association request of a dataset with a benchmark."""
    server = _server(d, clients)
    state = clients.state(root_for(server.url, d.state_dir, clients.environ), read_only=d.decision == "list")
    api = clients.api(server, state)
    try:
        return _list(d, api, server, console) if d.decision == "list" else _decide(d, api, server, console)
    except ServerError as e:
        if e.status != 401:
            raise
        # The client's hint names the manifest's token settings; this command has none: name its own.
        source = f"the file {d.token_file} (--token-file)" if d.token_file else \
            f"the environment variable {d.token_env} (--token-env)"
        raise MedperfApplyError(f"the server at {server.url} does not accept the token in {source}",
                                hint="use the benchmark owner's API token") from e


def _decide(d: Decision, api, server: ServerSpec, console: Console) -> int:
    bench = _benchmark(api, server, d.benchmark or "")
    ds_id, ds_name = _dataset(api, d.dataset or "", bench.id)
    status = DECISIONS[d.decision]
    what = f"dataset {ds_name} ({ds_id}) with benchmark {bench.name} ({bench.id})"
    try:
        latest = find_association(api, ds_id, bench.id)
    except ServerError as e:
        raise _explain(e, d, ds_id, ds_name, bench) from e
    if latest is None:
        raise MedperfApplyError(f"there is no association request of {what}",
                                hint="the data owner requests it first (medperf-apply on their manifest)")
    path = f"datasets/{ds_id}/benchmarks/{bench.id}/"
    changed, now = True, status.value
    if latest.approval_status is status:
        changed = False
        when = f" since {latest.approved_at}" if latest.approved_at else ""
        text = f"association of {what}: already {status.value}{when}; nothing sent"
    elif latest.approval_status is ApprovalStatus.PENDING:
        try:
            now = api.update(path, {"approval_status": status.value}).get("approval_status", status.value)
        except ServerError as e:
            raise _explain(e, d, ds_id, ds_name, bench) from e
        text = f"association of {what}: {now}"
    elif status is ApprovalStatus.REJECTED:  # APPROVED: MedPerf revokes it with a new REJECTED row
        try:
            now = api.create("datasets/benchmarks/", {"dataset": ds_id, "benchmark": bench.id,
                                                      "approval_status": status.value, "metadata": {}}
                             ).get("approval_status", status.value)
        except ServerError as e:
            raise _explain(e, d, ds_id, ds_name, bench) from e
        text = f"association of {what}: {now} (the approval of {latest.approved_at or 'before'} is revoked)"
    else:  # approve a REJECTED request
        when = f" at {latest.approved_at}" if latest.approved_at else ""
        raise MedperfApplyError(f"the association request of {what} was rejected{when}: MedPerf approves only a "
                                "pending request", hint="the data owner requests again (medperf-apply apply "
                                "--request-again on their manifest); then approve that request")
    if console.json_mode:
        console.document({"format_version": FORMAT_VERSION, "kind": "association", "has_changes": changed,
                          "dataset": ds_id, "benchmark": bench.id, "approval_status": now,
                          "was": latest.approval_status.value})
    console.say(text)
    return ExitStatus.OK


def _benchmark(api, server: ServerSpec, value: str) -> RemoteBenchmark:
    bench = fetch_ref(api, Ref("benchmark", _id_or_name(value)))
    if not isinstance(bench, RemoteBenchmark):
        raise MedperfApplyError(f"no benchmark {value!r} on {server.url}", hint="give the benchmark's id or exact name")
    return bench


def _list(d: Decision, api, server: ServerSpec, console: Console) -> int:
    """My benchmarks' association requests (latest per dataset): who asked, when, the compatibility test."""
    obs = observe_owner(server.url, api, users=True)
    bench_id = None
    if d.benchmark:
        bench = obs.benchmark(_id_or_name(d.benchmark))
        if bench is None:
            yours = ", ".join(f"{b.name} ({b.id})" for b in obs.benchmarks) or "none"
            raise MedperfApplyError(f"benchmark {d.benchmark!r} is not one of yours on {server.url} (yours: {yours})",
                                    hint="give the id or exact name of a benchmark you own, with its owner's token")
        bench_id = bench.id
    status = ApprovalStatus(d.status.upper()) if d.status else None
    rows = association_rows(obs, benchmark=bench_id, status=status)
    if console.json_mode:
        console.document(association_document(rows, benchmark=bench_id, status=status))
    if not obs.benchmarks:
        console.say(f"You own no benchmark on {server.url}: no association requests to list.")
    else:
        console.say(association_text(rows, benchmark=d.benchmark, status=d.status).rstrip("\n"))
    return ExitStatus.OK


def _server(d: Decision, clients: Clients) -> ServerSpec:
    """--manifest's server section, or --server (or $MEDPERF_SERVER) with --token-env / --token-file."""
    if d.manifest:
        if d.server:
            raise UsageError("--server and --manifest both name the server: give one")
        return validate(load([d.manifest], environ=clients.environ), check_paths=False).server
    url = d.server or clients.environ.get("MEDPERF_SERVER")
    if not url:
        raise UsageError("no server: pass --server URL (or set MEDPERF_SERVER), or --manifest MANIFEST")
    return ServerSpec(url=url.rstrip("/"), token_env=None if d.token_file else d.token_env,
                      token_file=Path(d.token_file) if d.token_file else None)


def _id_or_name(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _dataset(api, value: str, benchmark_id: int) -> tuple[int, str]:
    """A dataset by id, or by name among the datasets that asked to join this benchmark (one only)."""
    if value.isdigit():
        try:
            rec = api.get(f"datasets/{int(value)}/")
            return int(value), str(rec.get("name", value))
        except ServerError as e:
            if e.status == 404:
                raise MedperfApplyError(f"no dataset {value} on the server") from e
            raise
    rows = api.list("me/datasets/associations/")  # rows of my benchmarks (and my own datasets)
    candidates = {a.dataset for (ds, b), a in latest_associations(rows).items() if b == benchmark_id}
    named = [r for r in api.list("datasets/") if r.get("name") == value and int(r["id"]) in candidates]
    if not named:
        raise MedperfApplyError(f"no dataset named {value!r} has asked to join benchmark {benchmark_id}",
                                hint="give the dataset's id (`medperf-apply association list` shows it)")
    if len(named) > 1:
        raise MedperfApplyError(f"{len(named)} datasets named {value!r} asked to join benchmark {benchmark_id} "
                                f"(ids {', '.join(str(r['id']) for r in named)})", hint="give the dataset's id")
    return int(named[0]["id"]), value


def _explain(e: ServerError, d: Decision, ds_id: int, ds_name: str, bench) -> MedperfApplyError:
    what = f"dataset {ds_name} ({ds_id}) with benchmark {bench.name} ({bench.id})"
    if e.status == 403:
        return MedperfApplyError(f"not allowed to {d.decision} the association of {what}",
                                 hint="only the benchmark owner, the dataset owner or an admin may decide it: "
                                      "check the token")
    if e.status == 404:
        return MedperfApplyError(f"there is no association request of {what}",
                                 hint="the data owner requests it first (medperf-apply on their manifest)")
    if e.status == 400:
        return MedperfApplyError(f"the server refused to {d.decision} the association of {what}: {e.message}",
                                 hint="only a PENDING request can be decided, and not by the user who made it")
    return e


def parse_decision(ns: Mapping) -> Decision:
    """The association command's options; approve|reject need --benchmark and --dataset, --status is list's."""
    decision = ns["decision"]
    if decision in DECISIONS:
        missing = [f"--{k}" for k in ("benchmark", "dataset") if not ns.get(k)]
        if missing:
            raise UsageError(f"association {decision} needs {' and '.join(missing)}",
                             hint=f"e.g. medperf-apply association {decision} --benchmark B --dataset D")
        if ns.get("status"):
            raise UsageError("--status applies to association list only")
    elif ns.get("dataset"):
        raise UsageError("association list takes no --dataset", hint="filter with --benchmark B and --status S")
    return Decision(decision=decision, benchmark=ns.get("benchmark"), dataset=ns.get("dataset"), server=ns.get("server"),
                    token_env=ns.get("token_env") or "MEDPERF_TOKEN", token_file=ns.get("token_file"),
                    state_dir=ns.get("state_dir"), request_timeout=ns.get("request_timeout") or DEADLINE_S,
                    ca_file=ns.get("ca_file"), manifest=ns.get("manifest"), status=ns.get("status"))
