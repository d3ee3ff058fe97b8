"""status | results (read-only): load -> validate -> observe -> report. Nothing is sent, nothing is run, no lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.clients.retry import DEADLINE_S
from runner.console import Console
from runner.errors import ExitStatus, UsageError
from runner.load import load
from runner.model import FORMAT_VERSION, Manifest, Observation, Ref, RemoteBenchmark
from runner.observe import observe
from runner.plan import select
from runner.reconcile import Clients, state_root_of, validate_cached
from runner.report import status as views
from runner.state import StateDir, ValidationCache


@dataclass(frozen=True)
class InspectOptions:
    """What status and results are asked to show."""

    command: str  # "status" | "results"
    manifests: tuple[str, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)
    output: str = "text"
    targets: tuple[str, ...] = ()
    state_dir: str | None = None
    benchmark: str | None = None  # results --benchmark
    format: str = "table"  # results --format table|yaml|json
    request_timeout: float = DEADLINE_S  # --request-timeout: one request, answer included
    ca_file: str | None = None  # --ca-file: a private CA (overrides server.ca_file)


def inspect(opts: InspectOptions, clients: Clients, console: Console) -> int:
    """Run status or results; return the exit status."""
    return status(opts, clients, console) if opts.command == "status" else results(opts, clients, console)


def _observe(opts: InspectOptions, clients: Clients, console: Console) -> tuple[Manifest, Observation, StateDir]:
    docs = load(opts.manifests, variables=opts.variables, environ=clients.environ)
    state_root = state_root_of(docs, opts.state_dir, clients.environ)
    manifest = validate_cached(docs, ValidationCache(state_root))
    if not isinstance(manifest, Manifest):
        raise UsageError(f"{opts.command} reads a DataOwner manifest; {', '.join(manifest.files)} is a BenchmarkOwner "
                         "manifest", hint="`medperf-apply association list` shows your benchmarks' requests")
    selected = select(manifest, opts.targets)
    state = clients.state(state_root, read_only=True)
    api = clients.api(manifest.server, state)
    obs = observe(manifest, api=api, state=state, hasher=clients.hasher, names=set(selected),
                  progress=console.progress())
    return manifest, obs, state


def status(opts: InspectOptions, clients: Clients, console: Console) -> int:
    """Print datasets, associations and each model's result (none / computed / submitted)."""
    manifest, obs, _ = _observe(opts, clients, console)
    doc = views.status_document(manifest, obs)
    if console.json_mode:
        console.document(doc)
    else:
        console.say(views.status_text(doc))
    return ExitStatus.OK


def results(opts: InspectOptions, clients: Clients, console: Console) -> int:
    """Print my results of the manifest's datasets (local metrics; the server's once submitted)."""
    manifest, obs, state = _observe(opts, clients, console)
    wanted = _benchmark_filter(opts.benchmark, manifest, obs)
    rows: list[dict[str, Any]] = []
    for spec in manifest.datasets:
        if spec.name not in obs.raw_hashes:
            continue
        ds = views.my_dataset(spec, obs)
        if ds is None:
            continue
        benches = {r.id for b in spec.benchmarks if isinstance(r := obs.refs.get(Ref("benchmark", b.benchmark).key),
                                                                     RemoteBenchmark)}
        for (b, m, d), res in sorted(obs.results.items()):
            if d != ds.id or b not in benches or (wanted is not None and b != wanted):
                continue
            local = obs.local_results.get(res.id)
            executed = bool(local and local.executed)
            metrics = state.result(res.id).read_metrics() if executed else None
            if not metrics:
                metrics = dict(res.results) if res.finalized else {}
            partial = res.partial if res.finalized else bool(local and local.partial)
            rows.append({"id": res.id, "name": res.name, "benchmark": b, "model": m, "dataset": d,
                         "results": metrics, "metadata": {"partial": partial}, "finalized": res.finalized,
                         "executed": executed})
    records = views.result_records(rows)
    if opts.format == "json" or console.json_mode:
        console.document({"format_version": FORMAT_VERSION, "kind": "results", "has_changes": False,
                          "results": records})
    elif opts.format == "yaml":
        console.stdout.write(yaml.safe_dump(records, sort_keys=False))
    else:
        console.say(views.results_table(records))
    return ExitStatus.OK


def _benchmark_filter(value: str | None, manifest: Manifest, obs: Observation) -> int | None:
    if value is None:
        return None
    for record in obs.refs.values():
        if isinstance(record, RemoteBenchmark) and value in (str(record.id), record.name):
            return record.id
    names = sorted({str(b.benchmark) for d in manifest.datasets for b in d.benchmarks})
    raise UsageError(f"--benchmark {value!r} is none of the manifest's benchmarks",
                     hint=f"its benchmarks: {', '.join(names) or 'none'}")
