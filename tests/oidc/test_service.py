"""The provider that `.ci/services.sh start` runs (MEDPERF_OIDC_ISSUER): a data owner signs in to it with
`medperf-apply login` and a registry trusting its JWKS, issuer and audience serves them."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from server.loopback import live_server
from tests.oidc.conftest import Site, manifest_text
from tests.oidc.provider import AUDIENCE, Provider, unavailable


@pytest.fixture
def service() -> Provider:
    issuer = os.environ.get("MEDPERF_OIDC_ISSUER")
    if not issuer:
        unavailable("MEDPERF_OIDC_ISSUER is not set: eval \"$(.ci/services.sh start-oidc)\"")
    p = Provider(issuer=issuer, port=urlsplit(issuer).port or 0, env={})
    try:
        doc = p.discovery()
    except Exception as e:  # noqa: BLE001 - any failure means the service is not there
        unavailable(f"{issuer} does not answer: {e}")
    assert doc["issuer"] == issuer
    assert {"device_authorization_endpoint", "revocation_endpoint", "jwks_uri"} <= set(doc)
    return p


def test_the_service_provider_signs_a_data_owner_in_for_the_registry(service, tmp_path):
    audience = os.environ.get("MEDPERF_OIDC_AUDIENCE", AUDIENCE)
    settings = {**service.registry_settings(leeway=5.0), "jwt_audience": audience}
    assert settings["jwt_jwks_url"] == os.environ.get("MEDPERF_OIDC_JWKS_URL", settings["jwt_jwks_url"])
    with live_server(settings=settings) as registry:
        site = Site(tmp_path, service, registry)
        site.write(manifest_text(client=os.environ.get("MEDPERF_OIDC_CLIENT_ID", "medperf-apply"))
                   .replace(AUDIENCE, audience))
        login = site.login("testdo")
        assert login.code == 0, login.err
        plan = site.run("plan")
        assert plan.code == 2, plan.err
        assert site.run("logout").code == 0
