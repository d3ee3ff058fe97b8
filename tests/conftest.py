"""Shared fixtures: the real Docker engine and PostgreSQL, skipped on a laptop, required in CI."""

import os

import pytest

pytest_plugins = ["tests.support.trust_figures"]  # the trust tests' closing figures, also under pytest-xdist


def _unavailable(kind: str, env: str, why: str):
    if os.environ.get(env) == "1":
        pytest.fail(f"{kind} is required ({env}=1) but unavailable: {why}", pytrace=False)
    pytest.skip(f"{kind} unavailable ({why}); set {env}=1 to make this a failure")


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for the engine at DOCKER_HOST."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # any failure to reach the engine means "no engine here"
        _unavailable("Docker engine", "MEDPERF_REQUIRE_DOCKER", str(e) or type(e).__name__)
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL server we may create databases on (MEDPERF_PG_URL)."""
    url = os.environ.get("MEDPERF_PG_URL")
    if not url:
        _unavailable("PostgreSQL", "MEDPERF_REQUIRE_POSTGRES", "MEDPERF_PG_URL is not set")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except Exception as e:
        _unavailable("PostgreSQL", "MEDPERF_REQUIRE_POSTGRES", str(e) or type(e).__name__)
    return url


@pytest.fixture(scope="session")
def registry() -> str:
    """HOST:PORT of an image registry on loopback the engine pushes to and pulls from (MEDPERF_REGISTRY)."""
    where = os.environ.get("MEDPERF_REGISTRY")
    if not where:
        _unavailable("image registry", "MEDPERF_REQUIRE_REGISTRY", "MEDPERF_REGISTRY is not set "
                     "(eval \"$(.ci/services.sh start-registry)\")")
    try:
        import urllib.request

        with urllib.request.urlopen(f"http://{where}/v2/", timeout=5) as answer:
            answer.read()
    except Exception as e:
        _unavailable("image registry", "MEDPERF_REQUIRE_REGISTRY", f"{where}/v2/ does not answer: {e}")
    return where


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver): Debian's chromium and chromedriver (MEDPERF_CHROMIUM / MEDPERF_CHROMEDRIVER override them),
    with Selenium importable."""
    import shutil

    browser = os.environ.get("MEDPERF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("MEDPERF_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        _unavailable("Chromium", "MEDPERF_REQUIRE_CHROMIUM", "chromium or chromedriver is not on PATH "
                     "(.ci/services.sh install: Debian's chromium and chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError as e:
        _unavailable("Chromium", "MEDPERF_REQUIRE_CHROMIUM", f"{e} (pip install -e '.[test]')")
    return browser, driver
