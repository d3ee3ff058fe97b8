"""The registry deployed as several processes on one PostgreSQL behind nginx, per test module: a fresh database on
MEDPERF_PG_URL's cluster, the tutorial world seeded, `medperf-server run --workers 2` and an nginx of its own."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.app import make_app
from server.cluster import Backend, Nginx, nginx, nginx_binary, registry_process
from server.seed import seed_demo
from server.settings import Settings

REQUIRE = "MEDPERF_REQUIRE_NGINX"


@pytest.fixture(scope="session")
def nginx_available():
    if nginx_binary() is None:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"nginx is required ({REQUIRE}=1) but not installed", pytrace=False)
        pytest.skip(f"nginx is not installed (`.ci/services.sh install`); set {REQUIRE}=1 to make this a failure")


@pytest.fixture(scope="module")
def pg_db(postgres_url):
    """A database of this module's own on the PostgreSQL cluster, dropped afterwards."""
    import psycopg

    name = f"medperf_scaleout_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Deployment:
    """The seeded registry behind nginx (round robin over two upstreams): `api` is nginx's."""

    api: str
    db_url: str
    tokens: dict[str, str]
    backends: list[Backend]
    """Two upstreams: the first pre-forked (`--workers 2`), the second one process."""
    lb: Nginx
    folder: Path
    jwt_key: object


def seed(db_url: str) -> dict[str, str]:
    app = make_app(Settings(db_url=db_url))
    try:
        return seed_demo(app)
    finally:
        app.config["medperf.db"].close()


@pytest.fixture(scope="module")
def deployment(nginx_available, pg_db, tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = tmp_path_factory.mktemp("scaleout")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = folder / "jwt-public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    tokens = seed(pg_db)
    jwt = ["--jwt-public-key-file", str(public)]
    with registry_process(pg_db, folder / "server-0.log", workers=2, threads=4, args=jwt) as prefork, \
            registry_process(pg_db, folder / "server-1.log", workers=1, threads=4, args=jwt) as single, \
            nginx(folder / "nginx", [prefork, single]) as lb:
        yield Deployment(api=lb.url + "/api/v0", db_url=pg_db, tokens=tokens, backends=[prefork, single], lb=lb,
                         folder=folder, jwt_key=key)
