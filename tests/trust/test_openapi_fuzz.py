"""Schemathesis against the server's own OpenAPI document (/api/v0/schema/): every operation, with bodies and
parameters generated from it (huge integers, NUL characters, odd unicode, missing and extra fields), sent
in-process to the real app on SQLite and on PostgreSQL, as the admin (the widest access) and as a data owner:
zero 5xx, and every error in the JSON shape.

Bounded: EXAMPLES per operation, no per-example deadline, no example database, a fixed seed.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings

from server.app import make_app
from server.seed import seed_demo
from server.settings import Settings
from tests.support.server import TESTADMIN, TESTDO

EXAMPLES = 12
FUZZED: list[str] = []  # per backend: operations and requests sent


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzzed_app(request, tmp_path):
    if request.param == "sqlite":
        db_url, drop = str(tmp_path / "server.sqlite3"), None
    else:
        from tests.server.conftest import _fresh_pg_schema

        db_url, drop = _fresh_pg_schema(request.getfixturevalue("pg_database"))
    app = make_app(Settings(db_url=db_url, pool_size=4))
    tokens = seed_demo(app)
    yield app, tokens
    app.config["medperf.db"].close()
    if drop:
        drop()


def test_no_server_error_for_any_generated_request(fuzzed_app):
    app, tokens = fuzzed_app
    schema = schemathesis.openapi.from_wsgi("/api/v0/schema/", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 40
    calls = {"n": 0}
    for op in operations:
        @seed(20261123)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            for who in (TESTADMIN, TESTDO):
                response = case.call(headers={"Authorization": f"Bearer {tokens[who]}"})
                calls["n"] += 1
                assert response.status_code < 500, (who, case.method, case.formatted_path, case.body,
                                                     response.text[:300])
                if response.status_code >= 400:  # the one JSON error shape
                    ctype = (response.headers.get("content-type") or [""])[0]
                    assert ctype.startswith("application/json"), \
                        (case.method, case.formatted_path, response.text[:200])
        check()
    FUZZED.append(f"{len(operations)} operations, {calls['n']} requests, 0 server errors")
