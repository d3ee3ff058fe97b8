"""store.py and db.py on both backends: migrations, ids, latest-wins ordering, URL parsing."""

from __future__ import annotations

import pytest

from server import store
from server.db import ConstraintViolation, Database, DatabaseError, migration_files, parse_url

MIGRATIONS = ["0001_initial.sql", "0002_one_pending_association.sql"]


@pytest.fixture
def db(db_url):
    database = Database(db_url, pool_size=2)
    assert database.migrate() == MIGRATIONS
    yield database
    database.close()


def test_migrations_apply_once(db):
    assert db.migrate() == []
    with db.connection() as conn:
        assert [r["name"] for r in conn.all("SELECT name FROM schema_migrations")] == MIGRATIONS
    assert [name for name, _ in migration_files()] == MIGRATIONS


def test_latest_is_deterministic_within_one_microsecond(db):
    with db.connection() as conn:
        conn.begin_write()
        user = store.insert_user(conn, username="u", email="u@x")
        cube = store.insert_mlcube(conn, {"name": "c", "container_config": {}, "image_hash": "h", "owner": user["id"]})
        model = store.insert_model(conn, {"name": "m", "owner": user["id"], "container": cube["id"]})
        bench = store.insert_benchmark(conn, {"name": "b", "owner": user["id"], "data_preparation_mlcube": cube["id"],
                                              "reference_model": model["id"], "data_evaluator_mlcube": cube["id"]})
        ds = store.insert_dataset(conn, {"name": "d", "owner": user["id"], "input_data_hash": "a", "generated_uid": "a",
                                         "data_preparation_mlcube": cube["id"]})
        same = "2026-01-01T00:00:00.000000Z"
        for status in ("REJECTED", "APPROVED", "PENDING"):
            store.insert_dataset_association(conn, {"dataset": ds["id"], "benchmark": bench["id"],
                                                    "initiated_by": user["id"], "approval_status": status,
                                                    "created_at": same, "modified_at": same})
        conn.commit()
        assert store.latest_dataset_association(conn, ds["id"], bench["id"])["approval_status"] == "PENDING"
        assert not store.user_has_approved_dataset_in(conn, user["id"], bench["id"])
        assert [a["approval_status"] for a in store.all_latest_dataset_associations(conn)] == ["PENDING"]


def test_ids_are_sequential_and_json_round_trips(db):
    with db.connection() as conn:
        conn.begin_write()
        ids = [store.insert_user(conn, username=f"u{i}", email=f"u{i}@x")["id"] for i in range(3)]
        cube = store.insert_mlcube(conn, {"name": "c", "container_config": {"tasks": {"infer": {"x": [1, 2.5]}}},
                                          "parameters_config": None, "image_hash": "h", "owner": ids[0]})
        conn.commit()
    assert ids == [1, 2, 3]
    assert cube["container_config"] == {"tasks": {"infer": {"x": [1, 2.5]}}} and cube["parameters_config"] is None
    assert cube["is_valid"] is True


def test_operational_generated_uid_is_unique_in_the_schema_too(db):
    """The partial unique index backs the rule even if a caller skipped it."""
    with db.connection() as conn:
        conn.begin_write()
        user = store.insert_user(conn, username="u", email="u@x")
        cube = store.insert_mlcube(conn, {"name": "c", "container_config": {}, "image_hash": "h", "owner": user["id"]})
        for _ in range(2):  # development datasets may share it
            store.insert_dataset(conn, {"name": "d", "owner": user["id"], "input_data_hash": "a", "generated_uid": "u",
                                        "data_preparation_mlcube": cube["id"]})
        store.update_dataset(conn, 1, {"state": "OPERATION"})
        conn.commit()
    with pytest.raises(ConstraintViolation) as caught, db.connection() as conn:
        store.update_dataset(conn, 2, {"state": "OPERATION"})
    assert store.broken_rule(caught.value) == "operational_generated_uid"


def _world(conn):
    user = store.insert_user(conn, username="u", email="u@x")
    cube = store.insert_mlcube(conn, {"name": "c", "container_config": {}, "image_hash": "h", "owner": user["id"]})
    model = store.insert_model(conn, {"name": "m", "owner": user["id"], "container": cube["id"]})
    bench = store.insert_benchmark(conn, {"name": "b", "owner": user["id"], "data_preparation_mlcube": cube["id"],
                                          "reference_model": model["id"], "data_evaluator_mlcube": cube["id"]})
    ds = store.insert_dataset(conn, {"name": "d", "owner": user["id"], "input_data_hash": "a", "generated_uid": "a",
                                     "data_preparation_mlcube": cube["id"]})
    return user, model, bench, ds


def test_one_pending_association_per_pair_is_held_by_the_schema(db):
    """Migration 0002's partial unique indexes: a second PENDING row of a pair is refused, whoever skips the rule;
    REJECTED and APPROVED rows may repeat (a pair's history)."""
    with db.connection() as conn:
        conn.begin_write()
        user, model, bench, ds = _world(conn)
        row = {"dataset": ds["id"], "benchmark": bench["id"], "initiated_by": user["id"]}
        for status in ("REJECTED", "REJECTED", "APPROVED", "APPROVED", "PENDING"):
            store.insert_dataset_association(conn, {**row, "approval_status": status})
        store.insert_model_association(conn, {"model": model["id"], "benchmark": bench["id"],
                                              "initiated_by": user["id"], "approval_status": "PENDING"})
        conn.commit()
    with pytest.raises(ConstraintViolation) as caught, db.connection() as conn:
        store.insert_dataset_association(conn, {**row, "approval_status": "PENDING"})
    assert store.broken_rule(caught.value) == "one_pending_association"
    with pytest.raises(ConstraintViolation) as caught, db.connection() as conn:
        store.insert_model_association(conn, {"model": model["id"], "benchmark": bench["id"],
                                              "initiated_by": user["id"], "approval_status": "PENDING"})
    assert store.broken_rule(caught.value) == "one_pending_association"


def test_decisions_and_finalization_are_guarded_updates(db):
    """A decision lands only on a PENDING row and a result is finalized only once, whatever a caller checked."""
    with db.connection() as conn:
        conn.begin_write()
        user, model, bench, ds = _world(conn)
        assoc = store.insert_dataset_association(conn, {"dataset": ds["id"], "benchmark": bench["id"],
                                                        "initiated_by": user["id"], "approval_status": "PENDING"})
        result = store.insert_result(conn, {"owner": user["id"], "benchmark": bench["id"], "model": model["id"],
                                            "dataset": ds["id"]})
        assert store.decide_dataset_association(conn, assoc["id"], {"approval_status": "APPROVED"}) is not None
        assert store.decide_dataset_association(conn, assoc["id"], {"approval_status": "REJECTED"}) is None
        assert store.update_result(conn, result["id"], {"results": {"a": 1}, "finalized": True}) is not None
        assert store.update_result(conn, result["id"], {"results": {"a": 2}}) is None
        conn.commit()
        assert store.latest_dataset_association(conn, ds["id"], bench["id"])["approval_status"] == "APPROVED"
        assert store.get_result(conn, result["id"])["results"] == {"a": 1}


def test_a_unique_name_is_a_rule_and_a_primary_key_is_none(db):
    with db.connection() as conn:
        conn.begin_write()
        user, _model, _bench, _ds = _world(conn)
        conn.commit()
    with pytest.raises(ConstraintViolation) as caught, db.connection() as conn:
        store.insert_mlcube(conn, {"name": "c", "container_config": {}, "image_hash": "h2", "owner": user["id"]})
    assert store.broken_rule(caught.value) == "mlcube_name"
    with pytest.raises(ConstraintViolation) as caught, db.connection() as conn:
        conn.execute("INSERT INTO id_counters (name, value) VALUES ('users', 0)")
    assert store.broken_rule(caught.value) is None


def test_parse_url():
    assert parse_url("postgresql://u@h/db").dialect == "postgresql"
    assert parse_url("sqlite:////tmp/x.db").location == "/tmp/x.db"
    assert parse_url("sqlite:///rel.db").location == "rel.db"
    assert parse_url("sqlite:rel.db").location == "rel.db"
    assert parse_url("./medperf-server.sqlite3").dialect == "sqlite"
    with pytest.raises(DatabaseError):
        parse_url("mysql://x")


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    database = Database(str(tmp_path / "s.db"))
    database.migrate()
    with database.connection() as conn:
        assert conn.scalar("PRAGMA journal_mode") == "wal"
        assert conn.scalar("PRAGMA busy_timeout") >= 10_000
    database.close()
