"""Check-then-write sequences racing a concurrent change, on both backends (in-process, real databases)."""

from __future__ import annotations

import threading

from server import store
from tests.server.conftest import TESTADMIN, TESTBO, Client
from tests.support.server import inprocess_session

REVOKE_WAIT_S = 1.0  # long enough for an unblocked revoke to commit in between, even on a loaded machine


def test_a_revoke_between_the_result_check_and_the_insert_waits_for_the_insert(world, monkeypatch):
    """POST /results/ reads the association states inside the insert's write transaction.

    A revoke is started right after POST /results/ has read the states. If the read were outside the
    lock, the revoke would commit first and the result would still be inserted, after the revoke. With
    the read inside the lock, the revoke waits and lands after the insert: the result was created while
    the association was APPROVED, and the next POST /results/ is refused.
    """
    do = world.do
    ds = world.dataset(do)
    world.associate(do, ds["id"], approve_with=world.bo)
    bo = Client(inprocess_session(world.app), world.API, world.tokens[TESTBO])  # its own session, other thread
    read_states = store.result_creation_facts
    revoke: dict = {}

    def revoke_right_after_the_check(*args):
        facts = read_states(*args)

        def post_revoke():
            revoke["response"] = bo.post("/datasets/benchmarks/", {
                "dataset": ds["id"], "benchmark": 1, "approval_status": "REJECTED", "metadata": {}})

        revoke["thread"] = threading.Thread(target=post_revoke)
        revoke["thread"].start()
        revoke["thread"].join(timeout=REVOKE_WAIT_S)
        return facts

    monkeypatch.setattr(store, "result_creation_facts", revoke_right_after_the_check)
    r = world.result(do, ds["id"], 2)
    revoke["thread"].join(timeout=30)
    monkeypatch.undo()

    assert r.status_code == 201, r.text  # the check saw APPROVED ...
    assert revoke["response"].status_code == 201, revoke["response"].text
    # ... so the insert must precede the revoke (created_at is stamped inside each write transaction)
    assert r.json()["created_at"] < revoke["response"].json()["created_at"]
    refused = world.result(do, ds["id"], 2)
    assert refused.json() == {"non_field_errors": ["Dataset-Benchmark association must be approved"]}


def test_a_dataset_deleted_after_the_permission_check_is_a_400_not_a_server_error(world, monkeypatch):
    """The permission check reads the dataset before the write lock; the insert's transaction checks it again.

    The reference model (1) needs no association, so nothing else would stop the insert of a result
    naming a dataset that is gone (a foreign key violation, a 500).
    """
    do = world.do
    ds = world.dataset(do)
    admin = Client(inprocess_session(world.app), world.API, world.tokens[TESTADMIN])
    read_dataset = store.get_dataset
    deleted: dict = {}

    def delete_after_reading(conn, dataset_id):
        record = read_dataset(conn, dataset_id)
        if "status" not in deleted:  # once: the DELETE route reads the dataset through here too
            deleted["status"] = None
            deleted["status"] = admin.delete(f"/datasets/{dataset_id}/").status_code
        return record

    monkeypatch.setattr(store, "get_dataset", delete_after_reading)
    r = world.result(do, ds["id"], 1)
    monkeypatch.undo()
    assert deleted == {"status": 204}
    assert r.status_code == 400 and r.json() == {"dataset": [f'Invalid pk "{ds["id"]}" - object does not exist.']}
