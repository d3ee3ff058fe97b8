"""What the web page shows a signed-in user, by name and id: the benchmarks with their models and datasets, the
user's datasets and association requests, the requests they may decide, and each benchmark's results as a
models x datasets table. Every list is one the API lets the same user read (rules.py, store.py)."""

from __future__ import annotations

import json
import math

from server import rules, store
from server.db import Connection
from server.errors import ApiError

PAGE_ALL = 10_000


# ---------------------------------------------------------------- formatting


def metric_text(value) -> str:
    """A metric as the page prints it: numbers to 4 decimals, anything else as compact JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def numeric(value) -> float | None:
    """The value as a float for a chart, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def when(stamp: str | None) -> str:
    """MedPerf's ISO timestamp (`2026-11-30T07:49:20.123456Z`) to the minute: `2026-11-30 07:49 UTC`."""
    if not stamp:
        return ""
    return stamp[:16].replace("T", " ") + " UTC" if len(stamp) >= 16 and stamp[10] == "T" else stamp


def latest_per_pair(rows: list[dict], subject: str = "dataset") -> list[dict]:
    """The latest row of each (benchmark, subject) pair (latest wins: created_at, then id), sorted by pair."""
    latest: dict = {}
    for row in rows:
        key = (row["benchmark"], row[subject])
        if key not in latest or (row["created_at"], row["id"]) > (latest[key]["created_at"], latest[key]["id"]):
            latest[key] = row
    return [latest[key] for key in sorted(latest)]


# ---------------------------------------------------------------- names


class Names:
    """Records looked up once per page: containers and models by id (public lists), datasets and users on demand."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.mlcubes = {c["id"]: c["name"] for c in store.list_mlcubes(conn, {}, PAGE_ALL, 0)[1]}  # GET /mlcubes/
        self.models = {m["id"]: m["name"] for m in store.list_models(conn, {}, PAGE_ALL, 0)[1]}  # GET /models/
        self._datasets: dict[int, dict | None] = {}
        self._users: dict[int, dict | None] = {}

    def dataset(self, dataset_id: int) -> dict | None:
        """GET /datasets/{id}/ (any signed-in user may read a dataset's public fields)."""
        if dataset_id not in self._datasets:
            self._datasets[dataset_id] = store.get_dataset(self.conn, dataset_id)
        return self._datasets[dataset_id]

    def dataset_name(self, dataset_id: int) -> str:
        record = self.dataset(dataset_id)
        return record["name"] if record else "?"

    def user(self, user_id: int | None) -> dict:
        """{username, email} of a user (an initiator shown to whoever decides the request), or blanks."""
        if user_id is not None and user_id not in self._users:
            self._users[user_id] = store.get_user(self.conn, user_id)
        found = self._users.get(user_id) if user_id is not None else None
        return {"id": user_id, "username": (found or {}).get("username", ""), "email": (found or {}).get("email", "")}


# ---------------------------------------------------------------- per benchmark


def _benchmark_models(conn, user, benchmark: dict, names: Names) -> list[dict] | None:
    """GET /benchmarks/{id}/models/ as the latest row per model (priority first), the reference model on top;
    None when the API refuses that list to the user."""
    approved = store.user_has_approved_dataset_in(conn, user["id"], benchmark["id"])
    if not rules.can_list_benchmark_models(user, benchmark, approved):
        return None
    _, rows = store.list_model_associations_of_benchmark(conn, benchmark["id"], PAGE_ALL, 0)
    latest = sorted(latest_per_pair(rows, "model"), key=lambda r: (-(r["priority"] or 0), r["created_at"], r["id"]))
    out = [{"id": benchmark["reference_model"], "name": names.models.get(benchmark["reference_model"], "?"),
            "reference": True, "priority": None, "approval_status": None}]
    for row in latest:
        if row["model"] == benchmark["reference_model"]:
            continue
        out.append({"id": row["model"], "name": names.models.get(row["model"], "?"), "reference": False,
                    "priority": row["priority"], "approval_status": row["approval_status"]})
    return out


def _benchmark_datasets(conn, user, benchmark: dict, names: Names) -> list[dict] | None:
    """GET /benchmarks/{id}/datasets/ as the latest row per dataset; None when the API refuses it to the user."""
    approved = store.user_has_approved_model_in(conn, user["id"], benchmark["id"])
    if not rules.can_list_benchmark_datasets(user, benchmark, approved):
        return None
    _, rows = store.list_dataset_associations_of_benchmark(conn, benchmark["id"], PAGE_ALL, 0)
    return [{"id": row["dataset"], "name": names.dataset_name(row["dataset"]),
             "approval_status": row["approval_status"], "requested": when(row["created_at"])}
            for row in latest_per_pair(rows)]


def results_table(rows: list[dict], names: Names) -> dict:
    """Submitted results as rows (one per result) and as a models x datasets matrix per metric (latest wins)."""
    metrics = sorted({k for r in rows for k in (r["results"] or {})})
    model_ids = sorted({r["model"] for r in rows})
    dataset_ids = sorted({r["dataset"] for r in rows})
    cells: dict = {}  # (metric, model, dataset) -> raw value of the latest result of that pair
    for r in sorted(rows, key=lambda r: (r["finalized_at"] or "", r["id"])):
        for metric, value in (r["results"] or {}).items():
            cells[(metric, r["model"], r["dataset"])] = value
    listed = [{
        "id": r["id"], "model": r["model"], "model_name": names.models.get(r["model"], "?"),
        "dataset": r["dataset"], "dataset_name": names.dataset_name(r["dataset"]),
        "values": {m: metric_text((r["results"] or {})[m]) if m in (r["results"] or {}) else "" for m in metrics},
        "partial": (r["metadata"] or {}).get("partial", ""), "submitted": when(r["finalized_at"]),
    } for r in rows]
    return {
        "rows": listed,
        "metrics": metrics,
        "models": [{"id": m, "name": names.models.get(m, "?")} for m in model_ids],
        "datasets": [{"id": d, "name": names.dataset_name(d)} for d in dataset_ids],
        "text": {(metric, m, d): metric_text(v) for (metric, m, d), v in cells.items()},
        "values": {(metric, m, d): numeric(v) for (metric, m, d), v in cells.items()},
    }


# ---------------------------------------------------------------- associations


def _association(row: dict, user: dict, names: Names, benchmarks: dict) -> dict:
    initiator = names.user(row["initiated_by"])
    test_result = (row["metadata"] or {}).get("test_result")
    return {
        "id": row["id"], "benchmark": row["benchmark"],
        "benchmark_name": benchmarks.get(row["benchmark"], {}).get("name", "?"),
        "dataset": row["dataset"], "dataset_name": names.dataset_name(row["dataset"]),
        "approval_status": row["approval_status"], "initiated_by": initiator,
        "initiated_by_you": row["initiated_by"] == user["id"],
        "requested": when(row["created_at"]), "decided": when(row["approved_at"]),
        "test_result": {k: metric_text(v) for k, v in sorted(test_result.items())}
        if isinstance(test_result, dict) else {},
    }


def can_decide(user: dict, row: dict, dataset: dict | None, benchmark: dict | None) -> bool:
    """Whether Approve / Reject would pass the API's rules for this latest row (the buttons are shown only then)."""
    if dataset is None or benchmark is None or not rules.can_see_dataset_association(user, dataset, benchmark):
        return False
    try:
        rules.check_association_decision(user, row, rules.APPROVED)
    except ApiError:  # the rules refuse it: no buttons
        return False
    return True


# ---------------------------------------------------------------- the page


def visible_to(conn: Connection, user: dict) -> dict:
    """The page's records for `user`: each list is what the API endpoint named beside it answers them."""
    admin = rules.is_admin(user)
    names = Names(conn)
    _, all_benchmarks = store.list_benchmarks(conn, {}, PAGE_ALL, 0)  # GET /benchmarks/
    by_id = {b["id"]: b for b in all_benchmarks}
    if admin:
        _, datasets = store.list_datasets(conn, PAGE_ALL, 0)  # GET /datasets/
        latest = store.all_latest_dataset_associations(conn)  # GET /datasets/{id}/benchmarks/ for each
    else:
        _, datasets = store.list_datasets_of_owner(conn, user["id"], PAGE_ALL, 0)  # GET /me/datasets/
        _, rows = store.list_dataset_associations_for_user(conn, user["id"], PAGE_ALL, 0)  # /me/datasets/associations/
        latest = latest_per_pair(rows)
    associations = [_association(row, user, names, by_id) for row in latest]
    pending = [a for a, row in zip(associations, latest, strict=True)
               if row["approval_status"] == rules.PENDING
               and can_decide(user, row, names.dataset(row["dataset"]), by_id.get(row["benchmark"]))]
    _, own_results = store.list_results_of_owner(conn, user["id"], PAGE_ALL, 0)  # GET /me/results/
    benchmarks = []
    for b in all_benchmarks:
        if rules.can_list_benchmark_results(user, b):  # GET /benchmarks/{id}/results/
            _, rows = store.list_results_of_benchmark(conn, b["id"], PAGE_ALL, 0)
            whose, submitted = "all", [r for r in rows if r["finalized"]]
        else:
            whose = "yours"
            submitted = [r for r in own_results if r["benchmark"] == b["id"] and r["finalized"]]
        benchmarks.append({
            "record": rules.benchmark_view(user, b), "yours": rules.owns(user, b),
            "data_preparation": names.mlcubes.get(b["data_preparation_mlcube"], "?"),
            "reference_model": names.models.get(b["reference_model"], "?"),
            "evaluator": names.mlcubes.get(b["data_evaluator_mlcube"], "?"),
            "models": _benchmark_models(conn, user, b, names),
            "datasets": _benchmark_datasets(conn, user, b, names),
            "results_whose": whose,
            "results": results_table(submitted, names) if (submitted or whose == "all") else None,
        })
    return {
        "admin": admin,
        "benchmarks": benchmarks,
        "datasets": [{**d, "data_preparation": names.mlcubes.get(d["data_preparation_mlcube"], "?"),
                      "created": when(d["created_at"]), "owner_user": names.user(d["owner"])} for d in datasets],
        "associations": associations,
        "pending": pending,
    }
