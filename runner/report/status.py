"""PURE: the `status` and `results` views (text, YAML-ready and JSON documents) from an Observation.

No I/O here: runner/inspect.py observes and reads the local metrics, then hands them to these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.model import FORMAT_VERSION, ApprovalStatus, Manifest, Observation, Ref, RemoteBenchmark, RemoteDataset
from runner.model import identify as identify_dataset
from runner.report.tables import align


def _dataset_state(ds: RemoteDataset | None, obs: Observation) -> str:
    if ds is None:
        return "not registered"
    if ds.operational:
        return "operational"
    local = obs.local.get(ds.id)
    return "prepared" if local is not None and local.ready else "registered"


def my_dataset(spec, obs: Observation) -> RemoteDataset | None:
    """The server's record of a manifest dataset, chosen as the planner chooses it."""
    ds, _ = identify_dataset(obs.my_datasets, spec.name, obs.preparation_container(spec.prepare_with),
                             obs.raw_hashes.get(spec.name))
    return ds


def status_document(manifest: Manifest, obs: Observation) -> dict[str, Any]:
    """Datasets with their state, associations with their status, each model's result: none/computed/submitted."""
    datasets = []
    for spec in manifest.datasets:
        if spec.name not in obs.raw_hashes:
            continue  # not selected
        ds = my_dataset(spec, obs)
        entry: dict[str, Any] = {"name": spec.name, "id": ds.id if ds else None, "state": _dataset_state(ds, obs),
                                 "wants": spec.state.value, "benchmarks": []}
        for b in spec.benchmarks:
            bench = obs.refs.get(Ref("benchmark", b.benchmark).key)
            if not isinstance(bench, RemoteBenchmark):
                entry["benchmarks"].append({"benchmark": str(b.benchmark), "id": None, "association": "unknown benchmark",
                                            "models": []})
                continue
            assoc = obs.associations.get((ds.id, bench.id)) if ds else None
            models = _status_models(bench, ds, obs)
            entry["benchmarks"].append({
                "benchmark": bench.name, "id": bench.id,
                "association": str(assoc.approval_status) if assoc else "none",
                "requested_at": assoc.created_at if assoc else None,
                "approved_at": (assoc.approved_at or None) if assoc else None,
                "models": models,
            })
        datasets.append(entry)
    return {"format_version": FORMAT_VERSION, "kind": "status", "has_changes": False, "server": obs.server_url,
            "datasets": datasets}


def _status_models(bench: RemoteBenchmark, ds: RemoteDataset | None, obs: Observation) -> list[dict[str, Any]]:
    listed = obs.benchmark_models.get(bench.id)
    ref = bench.reference_model
    ids = [m for m in (listed or ()) if m != ref]
    if ds is not None:  # models with a record of mine (e.g. listed before the server shows the benchmark's models)
        ids += [m for (b, m, d) in sorted(obs.results) if b == bench.id and d == ds.id and m not in ids and m != ref]
    if ref is not None:
        ids.append(ref)
    out = []
    for m in ids:
        res = obs.results.get((bench.id, m, ds.id)) if ds is not None else None
        local = obs.local_results.get(res.id) if res is not None else None
        if res is None:
            state = "none"
        elif res.finalized:
            state = "submitted"
        elif local is not None and local.executed:
            state = "computed"
        else:
            state = "none"
        out.append({"model": m, "reference": m == ref, "result": state, "result_id": res.id if res else None,
                    "partial": (res.partial if res.finalized else bool(local and local.partial)) if res else None})
    return out


def status_text(doc: Mapping[str, Any]) -> str:
    lines = []
    for d in doc["datasets"]:
        ident = f" (id {d['id']})" if d["id"] is not None else ""
        want = "" if d["state"] == d["wants"] else f"  (manifest asks {d['wants']})"
        lines.append(f"dataset {d['name']}{ident}: {d['state']}{want}")
        for b in d["benchmarks"]:
            when = ""
            if b.get("approved_at") and b["association"] != ApprovalStatus.PENDING:
                when = f" (decided {b['approved_at']})"
            elif b.get("requested_at"):
                when = f" (requested {b['requested_at']})"
            ident = f" ({b['id']})" if b.get("id") is not None else ""
            lines.append(f"  benchmark {b['benchmark']}{ident}: association {b['association']}{when}")
            if b["association"] != ApprovalStatus.APPROVED and b.get("id") is not None:
                lines.append("    (the benchmark lists its other models once the association is approved)")
            for m in b["models"]:
                name = f"model {m['model']}" + (" (reference)" if m["reference"] else "")
                res = m["result"] + (f" (result {m['result_id']}" + (", partial" if m["partial"] else "") + ")"
                                     if m["result_id"] is not None else "")
                lines.append(f"    {name:<22}{res}")
    return "\n".join(lines) + "\n"


# -- results (MedPerf's result view of my records, with the local metrics) ----------------------------------

RESULT_KEYS = ("id", "name", "benchmark", "model", "dataset", "results", "metadata", "finalized", "executed")


def result_records(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as MedPerf's `result view` prints them (its keys, in its order)."""
    return [{k: r.get(k) for k in RESULT_KEYS} for r in rows]


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "No results yet.\n"
    metric_names = list(dict.fromkeys(k for r in rows for k in (r.get("results") or {})))
    head = ["result id", "name", "benchmark", "model", "dataset", "partial", "submitted", *metric_names]
    cells = [head]
    for r in rows:
        metrics = r.get("results") or {}
        cells.append([str(r["id"]), str(r["name"]), str(r["benchmark"]), str(r["model"]), str(r["dataset"]),
                      str(bool((r.get("metadata") or {}).get("partial"))), str(bool(r["finalized"])),
                      *[_fmt(metrics.get(k)) for k in metric_names]])
    return "\n".join(align(cells)) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)
