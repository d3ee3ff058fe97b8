"""Ask the registry and the state dir for the current state -> one read-only Observation.

Independent GETs run concurrently, a constant number per dataset and benchmark; raw folders are hashed
through the stat cache meanwhile. Nothing is sent, pulled or run.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor

from runner.clients import Api, Hasher, NoProgress, Progress
from runner.errors import ServerError
from runner.model import (
    DatasetInfo,
    Manifest,
    MissingField,
    Observation,
    OwnerObservation,
    Ref,
    RemoteAssociation,
    RemoteBenchmark,
    RemoteContainer,
    RemoteDataset,
    RemoteResult,
    UserInfo,
    approved_models,
    identify,
    int_or_none,
    latest_associations,
    latest_results,
)
from runner.state import StateDir

MAX_CONCURRENT_GETS = 6


def refs_of(manifest: Manifest, names: set[str] | None = None) -> list[Ref]:
    """Every benchmark and container the manifest names (for the selected datasets), once each."""
    refs: dict[str, Ref] = {}
    for d in manifest.datasets:
        if names is not None and d.name not in names:
            continue
        refs.setdefault(d.prepare_with.key, d.prepare_with)
        for b in d.benchmarks:
            r = Ref("benchmark", b.benchmark)
            refs.setdefault(r.key, r)
    return list(refs.values())


def _missing(e: ServerError) -> bool:
    return getattr(e, "status", None) == 404


@contextlib.contextmanager
def shaped(api: Api, what: str):
    """A well-formed JSON answer of the wrong shape for a record is the server's error, said as such (no crash)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        detail = str(e) if isinstance(e, MissingField) else f"{type(e).__name__}: {e}"
        raise ServerError(f"the server's answer to GET /{what} does not hold MedPerf records ({detail})", where=getattr(api, "base_url", None),
                          hint="is this a MedPerf v0 server? check server.url") from e


def fetch_ref(api: Api, ref: Ref) -> RemoteBenchmark | RemoteContainer | None:
    """The record a reference names, or None when the server has none."""
    with shaped(api, "benchmarks/" if ref.kind == "benchmark" else "mlcubes/"):
        return _fetch_ref(api, ref)


def _fetch_ref(api: Api, ref: Ref) -> RemoteBenchmark | RemoteContainer | None:
    collection = "benchmarks" if ref.kind == "benchmark" else "mlcubes"
    make = RemoteBenchmark.from_record if ref.kind == "benchmark" else RemoteContainer.from_record
    if isinstance(ref.value, int):
        try:
            return make(api.get(f"{collection}/{ref.value}/"))
        except ServerError as e:
            if _missing(e):
                return None
            raise
    # By name: the API filters by name; check the answer ourselves, and scan every page if it did not filter.
    page = api.get(f"{collection}/", params={"name": ref.value})
    rows = page.get("results", []) if isinstance(page, dict) else list(page or [])
    found = [r for r in rows if isinstance(r, dict) and r.get("name") == ref.value]
    if not found and isinstance(page, dict) and page.get("next"):
        found = [r for r in api.list(f"{collection}/") if r.get("name") == ref.value]
    if not found:
        return None
    return make(max(found, key=lambda r: int(r["id"])))


def fetch_container(api: Api, container_id: int) -> RemoteContainer | None:
    try:
        with shaped(api, f"mlcubes/{container_id}/"):
            return RemoteContainer.from_record(api.get(f"mlcubes/{container_id}/"))
    except ServerError as e:
        if _missing(e):
            return None
        raise


def fetch_benchmark_models(api: Api, benchmark_id: int) -> tuple[int, ...] | None:
    """The benchmark's approved models in priority order; None while the server does not show them (403).

    MedPerf answers 403 to a data owner none of whose datasets is approved in the benchmark: "not yet".
    """
    try:
        with shaped(api, f"benchmarks/{benchmark_id}/models/"):
            return approved_models(api.list(f"benchmarks/{benchmark_id}/models/"))
    except ServerError as e:
        if getattr(e, "status", None) == 403:
            return None
        raise


def participations(manifest: Manifest, names: set[str] | None) -> list:
    return [b for d in manifest.datasets if names is None or d.name in names for b in d.benchmarks]


def raw_hashes(manifest: Manifest, state: StateDir, hasher: Hasher, names: set[str] | None, progress: Progress) -> dict[str, str]:
    """The folders hash of each selected dataset's raw data and labels, through the state dir's stat cache."""
    out: dict[str, str] = {}
    cache = state.hash_cache()
    try:
        for d in manifest.datasets:
            if names is None or d.name in names:
                out[d.name] = hasher([d.data_path, d.labels_path], cache=cache, on_progress=progress.hashing(d.name))
    finally:
        cache.close()
    return out


def observe(manifest: Manifest, *, api: Api, state: StateDir, hasher: Hasher, names: set[str] | None = None,
            progress: Progress | None = None) -> Observation:
    """Read the server and the state dir (concurrently), hash the raw folders; change nothing."""
    progress = progress or NoProgress()
    refs = refs_of(manifest, names)
    parts = participations(manifest, names)
    named_models = any(isinstance(m, str) for b in parts if b.models != "all" for m in b.models)
    with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_GETS, thread_name_prefix="observe") as pool:
        f_mine: Future = pool.submit(api.list, "me/datasets/")
        f_refs = {r.key: pool.submit(fetch_ref, api, r) for r in refs}
        # One list each, however many models or results: a no-op plan costs the same for 1 or 100 models.
        f_assoc = pool.submit(api.list, "me/datasets/associations/") if parts else None
        f_results = pool.submit(api.list, "me/results/") if parts else None
        f_names = pool.submit(api.list, "models/") if named_models else None
        f_hash = pool.submit(raw_hashes, manifest, state, hasher, names, progress)
        resolved = {k: f.result() for k, f in f_refs.items()}
        bench_ids = sorted({r.id for k, r in resolved.items() if isinstance(r, RemoteBenchmark)
                            and any(Ref("benchmark", b.benchmark).key == k for b in parts)})
        f_models = {i: pool.submit(fetch_benchmark_models, api, i) for i in bench_ids}
        containers: dict[int, RemoteContainer] = {r.id: r for r in resolved.values() if isinstance(r, RemoteContainer)}
        wanted = {r.data_preparation_mlcube for r in resolved.values()
                  if isinstance(r, RemoteBenchmark) and r.data_preparation_mlcube is not None}
        f_cont = {i: pool.submit(fetch_container, api, i) for i in sorted(wanted - set(containers))}
        for i, f in f_cont.items():
            c = f.result()
            if c is not None:
                containers[i] = c
        with shaped(api, "me/datasets/"):
            mine = tuple(sorted((RemoteDataset.from_record(r) for r in f_mine.result()), key=lambda d: d.id))
        with shaped(api, "me/datasets/associations/"):
            associations = latest_associations(f_assoc.result()) if f_assoc else {}
        with shaped(api, "me/results/"):
            results = latest_results(f_results.result()) if f_results else {}
        bench_models = {i: f.result() for i, f in f_models.items()}
        with shaped(api, "models/"):
            model_names = {str(r["name"]): int(r["id"]) for r in (f_names.result() if f_names else [])
                           if isinstance(r, dict) and r.get("name") and r.get("id") is not None}
        hashes = f_hash.result()
    progress.done()
    return Observation(
        server_url=manifest.server.url, my_datasets=mine, refs=resolved, containers=containers, raw_hashes=hashes,
        local=state.local_datasets(), unfinished=state.unfinished_steps(), associations=associations,
        results=results, benchmark_models=bench_models, model_names=model_names,
        local_results=state.local_results() if parts else {}, requests=getattr(api, "request_count", 0),
    )


def find_association(api: Api, dataset_id: int, benchmark_id: int) -> RemoteAssociation | None:
    """The latest association row of the pair, or None (GET datasets/{D}/benchmarks/{B}/ is a plain list)."""
    try:
        rows = api.get(f"datasets/{dataset_id}/benchmarks/{benchmark_id}/")
    except ServerError as e:
        if _missing(e):
            return None
        raise
    rows = rows.get("results", []) if isinstance(rows, dict) else list(rows or [])
    rows = [{**r, "dataset": dataset_id, "benchmark": benchmark_id} for r in rows if isinstance(r, dict)]
    return latest_associations(rows).get((dataset_id, benchmark_id))


def find_result(api: Api, benchmark_id: int, model_id: int, dataset_id: int) -> RemoteResult | None:
    """My latest execution record for (B, M, D), or None (to resolve an uncertain POST results/)."""
    return latest_results(api.list("me/results/")).get((benchmark_id, model_id, dataset_id))


def find_dataset(api: Api, name: str, prep: int, raw_hash: str | None = None) -> RemoteDataset | None:
    """My dataset with this name and data preparation container, as the planner identifies it (to resolve an
    uncertain POST)."""
    found, _ = identify([RemoteDataset.from_record(r) for r in api.list("me/datasets/")], name, prep, raw_hash)
    return found




# -- the benchmark owner's side (kind: BenchmarkOwner, `association list`) ------------------------------------


def fetch_users(api: Api, ids: set[int]) -> dict[int, UserInfo]:
    """The users with these ids, concurrently; one the server does not show me (403, 404) stays a bare id."""

    def one(user_id: int) -> UserInfo:
        try:
            with shaped(api, f"users/{user_id}/"):
                return UserInfo.from_record(api.get(f"users/{user_id}/"))
        except ServerError as e:
            if getattr(e, "status", None) in (403, 404):
                return UserInfo(id=user_id)
            raise

    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_GETS, thread_name_prefix="observe-users") as pool:
        futures = {i: pool.submit(one, i) for i in sorted(ids)}
        return {i: f.result() for i, f in futures.items()}


def observe_owner(server_url: str, api: Api, *, users: bool = False) -> OwnerObservation:
    """Me, my benchmarks, their association requests (latest row per pair) and the datasets' names: four GETs
    (and their pages) however many requests; with users=True also each requester once (the list command)."""
    with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_GETS, thread_name_prefix="observe") as pool:
        f_me = pool.submit(api.get, "me/")
        f_mine = pool.submit(api.list, "me/benchmarks/")
        f_assoc = pool.submit(api.list, "me/datasets/associations/")
        f_datasets = pool.submit(api.list, "datasets/")
        with shaped(api, "me/"):
            me = int_or_none(f_me.result().get("id"))
        with shaped(api, "me/benchmarks/"):
            mine = tuple(sorted((RemoteBenchmark.from_record(r) for r in f_mine.result()), key=lambda b: b.id))
        ids = {b.id for b in mine}
        with shaped(api, "me/datasets/associations/"):
            associations = {k: a for k, a in latest_associations(f_assoc.result()).items() if k[1] in ids}
        with shaped(api, "datasets/"):
            datasets = {d.id: d for d in (DatasetInfo.from_record(r) for r in f_datasets.result())}
    requesters = fetch_users(api, {a.initiated_by for a in associations.values() if a.initiated_by is not None}) \
        if users else {}
    return OwnerObservation(server_url=server_url, me=me, benchmarks=mine, associations=associations,
                            datasets=datasets, users=requesters, requests=getattr(api, "request_count", 0))
