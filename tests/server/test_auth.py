"""Bearer auth: server-issued tokens stored hashed; RS256 JWTs (PEM key or JWKS URL) creating users on first use."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server import auth
from server.app import make_app
from server.settings import Settings
from tests.support.server import inprocess_session

ISSUER, AUDIENCE = "https://issuer.test/", "https://medperf-apply.test/"


@pytest.fixture(scope="module")
def keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, public_pem


def token(key, *, sub="auth0|123", email="oidc@example.com", claim="https://medperf.org/email", kid=None, **over):
    claims = {"sub": sub, claim: email, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600, **over}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def app_with(db_url, **settings):
    return make_app(Settings(db_url=db_url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **settings))


def me(app, bearer):
    return inprocess_session(app).get("http://x/api/v0/me/", headers={"Authorization": f"Bearer {bearer}"})


def test_api_tokens_are_stored_hashed_and_work(db_url):
    app = make_app(Settings(db_url=db_url))
    db = app.config["medperf.db"]
    with db.connection() as conn:
        user, secret = auth.create_user_with_token(conn, "x@example.com")
        stored = [r["token_hash"] for r in conn.all("SELECT token_hash FROM tokens")]
    assert stored == [auth.hash_token(secret)] and secret not in stored
    assert me(app, secret).json()["email"] == "x@example.com"
    assert me(app, secret + "x").status_code == 401
    db.close()


def test_jwt_with_pem_key_creates_the_user_on_first_request(db_url, keypair):
    key, public_pem = keypair
    app = app_with(db_url, jwt_public_key=public_pem)
    r = me(app, token(key))
    assert r.status_code == 200
    first = r.json()
    assert (first["username"], first["email"]) == ("auth0|123", "oidc@example.com")
    assert me(app, token(key)).json()["id"] == first["id"]  # same user the second time
    # the user can act: register a container
    r = inprocess_session(app).post("http://x/api/v0/mlcubes/", json={
        "name": "c", "container_config": {}, "image_hash": "sha256:1"}, headers={"Authorization": f"Bearer {token(key)}"})
    assert r.status_code == 201 and r.json()["owner"] == first["id"]
    app.config["medperf.db"].close()


@pytest.mark.parametrize("bad", ["issuer", "audience", "expired", "signature", "no-email", "hs256"])
def test_jwt_refused(tmp_path, keypair, bad):
    key, public_pem = keypair
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bearer = {
        "issuer": lambda: token(key, iss="https://evil.test/"),
        "audience": lambda: token(key, aud="someone-else"),
        "expired": lambda: token(key, exp=int(time.time()) - 10),
        "signature": lambda: token(other),
        "no-email": lambda: token(key, claim="email"),
        "hs256": lambda: jwt.encode({"sub": "a", "https://medperf.org/email": "a@b", "iss": ISSUER, "aud": AUDIENCE},
                                    "secret-secret-secret-secret-secret!", algorithm="HS256"),
    }[bad]()
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    r = me(app, bearer)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_jwt_email_claim_is_configurable(tmp_path, keypair):
    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem, jwt_email_claim="email")
    assert me(app, token(key, claim="email", email="e@x.org")).json()["email"] == "e@x.org"
    assert me(app, token(key)).status_code == 401


def test_jwt_refused_when_not_configured(tmp_path, keypair):
    key, _ = keypair
    assert me(make_app(Settings(db_url=str(tmp_path / "s.db"))), token(key)).status_code == 401


def test_jwt_with_jwks_url(tmp_path, keypair):
    key, _ = keypair
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
        app = app_with(str(tmp_path / "s.db"), jwt_jwks_url=url)
        assert me(app, token(key, kid="k1", sub="jwks-user")).json()["username"] == "jwks-user"
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert me(app, token(other, kid="k1")).status_code == 401
    finally:
        httpd.shutdown()
        thread.join()


def test_settings_refuse_both_key_and_jwks():
    with pytest.raises(ValueError):
        Settings(jwt_public_key="pem", jwt_jwks_url="http://x")


# -- who a JWT is: its subject; a user known by email alone is linked once, only to a verified email -----------

def _seeded(app, email: str) -> int:
    with app.config["medperf.db"].connection() as conn:
        user, _ = auth.create_user_with_token(conn, email)
    return user["id"]


def test_a_user_known_by_email_is_linked_once_to_a_verified_subject(tmp_path, keypair):
    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    uid = _seeded(app, "victim@example.com")
    r = me(app, token(key, sub="idp|victim", email="victim@example.com", email_verified=True))
    assert r.status_code == 200 and r.json()["id"] == uid and r.json()["username"] == "idp|victim"
    assert me(app, token(key, sub="idp|victim", email="victim@example.com")).json()["id"] == uid  # by sub now
    app.config["medperf.db"].close()


@pytest.mark.parametrize("verified", [False, None, "true"], ids=["false", "absent", "a string"])
def test_an_unverified_email_never_signs_in_as_the_user_with_that_email(tmp_path, keypair, verified):
    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    uid = _seeded(app, "victim@example.com")
    extra = {} if verified is None else {"email_verified": verified}
    r = me(app, token(key, sub="idp|attacker", email="victim@example.com", **extra))
    assert r.status_code == 401 and "verified" in r.json()["detail"]
    assert me(app, token(key, sub="idp|victim", email="victim@example.com", email_verified=True)).json()["id"] == uid
    app.config["medperf.db"].close()


def test_a_user_bound_to_one_subject_is_never_another_subjects(tmp_path, keypair):
    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    first = me(app, token(key, sub="idp|one", email="shared@example.com", email_verified=True)).json()
    r = me(app, token(key, sub="idp|two", email="shared@example.com", email_verified=True))
    assert r.status_code == 401 and "another sign-in" in r.json()["detail"]
    assert me(app, token(key, sub="idp|one", email="shared@example.com")).json()["id"] == first["id"]
    app.config["medperf.db"].close()


def test_a_token_without_expiry_is_refused_and_a_little_clock_skew_is_tolerated(tmp_path, keypair):
    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    no_exp = jwt.encode({"sub": "s", "https://medperf.org/email": "s@x.org", "iss": ISSUER, "aud": AUDIENCE}, key,
                        algorithm="RS256")
    assert me(app, no_exp).status_code == 401
    assert me(app, token(key, sub="skew", email="k@x.org", exp=int(time.time()) - 2)).status_code == 200
    assert me(app, token(key, sub="skew", email="k@x.org", exp=int(time.time()) - 120)).status_code == 401
    app.config["medperf.db"].close()


def test_concurrent_first_requests_of_one_subject_all_sign_in_as_the_linked_user(tmp_path, keypair):
    """A sign-in's first requests come together (observe's concurrent GETs): the one that links the user wins,
    the others find the user bound to their own subject, never "another sign-in"."""
    from concurrent.futures import ThreadPoolExecutor

    key, public_pem = keypair
    app = app_with(str(tmp_path / "s.db"), jwt_public_key=public_pem)
    uid = _seeded(app, "racer@example.com")
    bearer = token(key, sub="idp|racer", email="racer@example.com", email_verified=True)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: me(app, bearer), range(16)))
    assert [r.status_code for r in answers] == [200] * 16
    assert {r.json()["id"] for r in answers} == {uid}
    app.config["medperf.db"].close()
