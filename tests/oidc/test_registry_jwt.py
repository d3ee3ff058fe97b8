"""medperf-server verifying the real provider's access tokens through its JWKS: a new signing key (the provider
restarted with another kid) is fetched when first seen, and an expired access token is a 401 with
WWW-Authenticate, which is what makes the runner refresh."""

from __future__ import annotations

import time

import requests

from server.loopback import live_server
from tests.oidc.conftest import TTL
from tests.oidc.provider import CI_EMAIL, start_provider


def _me(registry, token: str) -> requests.Response:
    return requests.get(f"{registry.api}/me/", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_rotated_signing_key_is_fetched_from_the_jwks_when_first_seen(tmp_path):
    """PyJWKClient fetches the JWKS again for an unknown kid, at most once per cooldown (PyJWT's default 30 s,
    shortened here): a provider that signs with a key it had not published is refused until then."""
    first = start_provider(tmp_path / "a", access_ttl=60)
    try:
        with live_server(settings={**first.registry_settings(), "jwt_jwks_cooldown_s": 0.5}) as registry:
            old = first.client_token()
            r = _me(registry, old)
            assert r.status_code == 200 and r.json()["email"] == CI_EMAIL
            first.stop()
            second = start_provider(tmp_path / "b", port=first.port, access_ttl=60)  # same issuer, new key and kid
            time.sleep(0.5)  # the cooldown since the first fetch
            try:
                new = second.client_token()
                assert new.split(".")[0] != old.split(".")[0]  # another kid in the header
                r = _me(registry, new)
                assert r.status_code == 200, r.text
                assert r.json()["email"] == CI_EMAIL
                forged = new.split(".")[0] + "." + new.split(".")[1] + "." + old.split(".")[2]
                assert _me(registry, forged).status_code == 401  # the new kid with the old key's signature
            finally:
                second.stop()
    finally:
        first.stop()


def test_an_expired_access_token_is_a_401_with_www_authenticate(provider, registry):
    token = provider.client_token()
    assert _me(registry, token).status_code == 200
    time.sleep(TTL + 1.1)  # the registry caches a verified token no longer than it lives
    r = _me(registry, token)
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert "expired" in r.text.lower()
