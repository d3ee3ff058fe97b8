"""The read-only commands: `status` (observed state per dataset and benchmark) and `results` (local metrics).

Both observe exactly as plan does (nothing is sent, nothing is run, no lock) and print through runner/views.py.
"""

from __future__ import annotations

import json
from typing import Any

from runner import views
from runner.errors import EXIT_OK, UsageError
from runner.model import Ref, RemoteBenchmark


def _observe(opts, clients, console):
    from runner.load import load
    from runner.observe import observe
    from runner.plan import select
    from runner.reconcile import _state_root
    from runner.validate import validate

    docs = load(opts.manifests, variables=opts.variables, environ=clients.environ)
    state_root = _state_root(docs, opts)
    manifest = validate(docs, cache_dir=state_root / "validated")
    selected = select(manifest, opts.targets)
    state = clients.state(state_root)
    api = clients.api(manifest.server, state)
    obs = observe(manifest, api=api, state=state, hasher=clients.hasher, names=set(selected),
                  progress=console.progress())
    return manifest, obs, state


def status(opts, clients, console) -> int:
    """Print datasets, associations and each model's result (none / computed / submitted)."""
    manifest, obs, _ = _observe(opts, clients, console)
    doc = views.status_document(manifest, obs)
    if console.json_mode:
        console.document(doc)
    else:
        console.say(views.status_text(doc))
    return EXIT_OK


def results(opts, clients, console) -> int:
    """Print my results of the manifest's datasets (local metrics; the server's once submitted)."""
    from runner.state import read_yaml

    manifest, obs, state = _observe(opts, clients, console)
    wanted = _benchmark_filter(opts.benchmark, manifest, obs)
    rows: list[dict[str, Any]] = []
    for spec in manifest.datasets:
        if spec.name not in obs.raw_hashes:
            continue
        record = obs.refs.get(spec.prepare_with.key)
        prep = record.data_preparation_mlcube if isinstance(record, RemoteBenchmark) else getattr(record, "id", None)
        ds = views.my_dataset(spec.name, prep, obs)
        if ds is None:
            continue
        benches = {r.id for b in spec.benchmarks if isinstance(r := obs.refs.get(Ref("benchmark", b.benchmark).key),
                                                                     RemoteBenchmark)}
        for (b, m, d), res in sorted(obs.results.items()):
            if d != ds.id or b not in benches or (wanted is not None and b != wanted):
                continue
            local = obs.local_results.get(res.id)
            executed = bool(local and local.executed)
            metrics = read_yaml(state.result_dir(res.id) / "results.yaml") if executed else None
            if not isinstance(metrics, dict) or not metrics:
                metrics = dict(res.results) if res.finalized else {}
            partial = res.partial if res.finalized else bool(local and local.partial)
            rows.append({"id": res.id, "name": res.name, "benchmark": b, "model": m, "dataset": d,
                         "results": metrics, "metadata": {"partial": partial}, "finalized": res.finalized,
                         "executed": executed})
    records = views.result_records(rows)
    fmt = opts.format
    if fmt == "json" or console.json_mode:
        console.document({"format_version": 1, "kind": "results", "has_changes": False, "results": records})
    elif fmt == "yaml":
        import yaml

        console.stdout.write(yaml.safe_dump(records, sort_keys=False))
    else:
        console.say(views.results_table(records))
    return EXIT_OK


def _benchmark_filter(value: str | None, manifest, obs) -> int | None:
    if value is None:
        return None
    for record in obs.refs.values():
        if isinstance(record, RemoteBenchmark) and value in (str(record.id), record.name):
            return record.id
    names = sorted({str(b.benchmark) for d in manifest.datasets for b in d.benchmarks})
    raise UsageError(f"--benchmark {value!r} is none of the manifest's benchmarks",
                     hint=f"its benchmarks: {', '.join(names) or 'none'}")


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str)
