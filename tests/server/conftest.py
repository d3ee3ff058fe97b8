"""Server fixtures: a freshly seeded registry per test on SQLite and on a real PostgreSQL (parametrized)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from server.app import make_app
from server.seed import seed_demo
from server.settings import Settings
from tests.support.server import TESTADMIN, TESTBO, TESTDO, TESTDO2, TESTMO, inprocess_session

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_database(request):
    """A database of our own on the PostgreSQL server, dropped at the end of the session."""
    url = request.getfixturevalue("postgres_url")
    import psycopg

    name = f"medperf_server_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = url.rsplit("/", 1)[0] + "/" + name
    yield base
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_pg_schema(base_url: str) -> tuple[str, callable]:
    """A new schema in the session's database; the URL's search_path points at it."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop():
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return f"{base_url}?options={quote('-csearch_path=' + schema)}", drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """An empty database: a temp SQLite file, or a fresh schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "server.sqlite3")
        return
    url, drop = _fresh_pg_schema(request.getfixturevalue("pg_database"))
    yield url
    drop()


class Client:
    """One user's in-process session: get/post/put/delete(path, ...) -> requests.Response."""

    def __init__(self, session, api: str, token: str | None):
        self.session, self.api = session, api
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, **params):
        return self.session.get(self.api + path, params=params or None, headers=self.headers)

    def post(self, path, body):
        return self.session.post(self.api + path, json=body, headers=self.headers)

    def put(self, path, body):
        return self.session.put(self.api + path, json=body, headers=self.headers)

    def delete(self, path):
        return self.session.delete(self.api + path, headers=self.headers)


class World:
    """The seeded tutorial world with one client per actor and helpers for the data owner's steps."""

    API = "http://testserver/api/v0"

    def __init__(self, app, tokens, settings):
        self.app, self.tokens, self.settings = app, tokens, settings
        self.session = inprocess_session(app)
        self.anon = Client(self.session, self.API, None)
        self.admin = Client(self.session, self.API, tokens[TESTADMIN])
        self.bo = Client(self.session, self.API, tokens[TESTBO])
        self.mo = Client(self.session, self.API, tokens[TESTMO])
        self.do = Client(self.session, self.API, tokens[TESTDO])
        self.do2 = Client(self.session, self.API, tokens[TESTDO2])
        self.actors = {"anonymous": self.anon, "admin": self.admin, "bo": self.bo, "mo": self.mo,
                       "do": self.do, "do2": self.do2}

    def client(self, actor: str) -> Client:
        return self.actors[actor]

    def dataset(self, owner: Client, name="mytestdata", uid=None, operational=True, prep=1) -> dict:
        """Register a dataset as MedPerf's client does (nulls for read-only fields), optionally set operational."""
        uid = uid or uuid.uuid4().hex
        body = {
            "for_test": False, "id": None, "name": name, "owner": None, "is_valid": True, "created_at": None,
            "modified_at": None, "state": "DEVELOPMENT", "description": "A tutorial dataset",
            "location": "My machine", "input_data_hash": "raw-" + uid, "generated_uid": "raw-" + uid,
            "data_preparation_mlcube": prep, "split_seed": 0, "generated_metadata": {}, "user_metadata": {},
            "report": {}, "submitted_as_prepared": False,
        }
        r = owner.post("/datasets/", body)
        assert r.status_code == 201, r.text
        ds = r.json()
        if operational:
            r = owner.put(f"/datasets/{ds['id']}/", {
                "input_data_hash": "raw-" + uid, "generated_uid": uid,
                "generated_metadata": {"num_cases": 10}, "state": "OPERATION"})
            assert r.status_code == 200, r.text
            ds = r.json()
        return ds

    def associate(self, owner: Client, dataset_id: int, benchmark_id: int = 1, approve_with: Client | None = None):
        r = owner.post("/datasets/benchmarks/", {"dataset": dataset_id, "benchmark": benchmark_id,
                                                 "approval_status": "PENDING",
                                                 "metadata": {"test_result": {"AUC": 0.5}}})
        assert r.status_code == 201, r.text
        if approve_with is not None:
            r = approve_with.put(f"/datasets/{dataset_id}/benchmarks/{benchmark_id}/", {"approval_status": "APPROVED"})
            assert r.status_code == 200, r.text
        return r.json()

    def result(self, owner: Client, dataset_id: int, model_id: int, benchmark_id: int = 1):
        return owner.post("/results/", {
            "id": None, "name": f"b{benchmark_id}m{model_id}d{dataset_id}", "owner": None,
            "benchmark": benchmark_id, "model": model_id, "dataset": dataset_id, "results": {}, "metadata": {},
            "user_metadata": {}, "model_report": {}, "evaluation_report": {}, "finalized": False,
            "finalized_at": None, "approval_status": "PENDING", "approved_at": None, "is_valid": True,
        })


@pytest.fixture
def world(db_url):
    settings = Settings(db_url=db_url, pool_size=4)
    app = make_app(settings)
    tokens = seed_demo(app)
    yield World(app, tokens, settings)
    app.config["medperf.db"].close()


__all__ = ["TESTADMIN", "TESTBO", "TESTDO", "TESTDO2", "TESTMO"]
