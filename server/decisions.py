"""A decision on a dataset's association request (approve or reject its latest row): the one code path behind
the API's PUT /datasets/{id}/benchmarks/{bid}/ and the web page's Approve / Reject buttons."""

from __future__ import annotations

from server import rules, store
from server.db import Connection, now
from server.errors import NotFound


def dataset_pair(conn: Connection, user: dict, dataset_id: int, benchmark_id: int) -> tuple[dict, dict]:
    """Both records of the pair (404 if either is missing), once `user` may see their association (403)."""
    dataset = store.get_dataset(conn, dataset_id)
    benchmark = store.get_benchmark(conn, benchmark_id)
    if dataset is None or benchmark is None:
        raise NotFound()
    rules.require(rules.can_see_dataset_association(user, dataset, benchmark))
    return dataset, benchmark


def latest_request(conn: Connection, dataset_id: int, benchmark_id: int) -> dict:
    """The latest association row of the pair (latest wins), or 404 when nobody asked."""
    latest = store.latest_dataset_association(conn, dataset_id, benchmark_id)
    if latest is None:
        raise NotFound()
    return latest


def decide_latest(conn: Connection, user: dict, latest: dict, status: str) -> dict:
    """Set `status` (APPROVED or REJECTED) on the latest row after rules.check_association_decision; the new row."""
    rules.check_association_decision(user, latest, status)
    stamp = now()
    return decided(store.decide_dataset_association(conn, latest["id"], {
        "approval_status": status, "approved_at": stamp, "modified_at": stamp,
    }))


def decided(row: dict | None) -> dict:
    """The decided row of a guarded update; None means another decision landed first (a writer without the write
    lock): MedPerf's 400 for a request no longer pending."""
    if row is None:
        raise rules.not_pending_error()
    return row


def decide(conn: Connection, user: dict, dataset_id: int, benchmark_id: int, status: str) -> dict:
    """The whole decision as the API's PUT makes it: the pair, its latest row, the rules, the update."""
    dataset_pair(conn, user, dataset_id, benchmark_id)
    return decide_latest(conn, user, latest_request(conn, dataset_id, benchmark_id), status)
