"""The real OpenID provider of .ci/oidc (npm oidc-provider) as a process on a free loopback port, and a scripted
user who completes the device flow on its built-in pages (devInteractions) the way a person does in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
PROVIDER_DIR = REPO / ".ci" / "oidc"
AUDIENCE = "https://registry.medperf-apply.test"
DEVICE_CLIENT = "medperf-apply"
# Machine clients (client credentials): the data owner's CI, and a benchmark owner's.
CI_CLIENT, CI_SECRET, CI_EMAIL = "medperf-ci", "ci-secret", "testdo@example.com"
BO_CLIENT, BO_SECRET, BO_EMAIL = "medperf-bo", "bo-secret", "testbo@example.com"
REQUIRE = "MEDPERF_REQUIRE_OIDC"


def unavailable(why: str):
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"the OpenID provider is required ({REQUIRE}=1) but unavailable: {why}", pytrace=False)
    pytest.skip(f"OpenID provider unavailable ({why}); run `.ci/services.sh install`, set {REQUIRE}=1 to make this "
                "a failure")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Provider:
    """A running provider: its issuer, the CA that signed its certificate (https), its process."""

    issuer: str
    port: int
    env: dict
    ca: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    log: Path | None = None

    @property
    def verify(self) -> str | bool:
        return str(self.ca) if self.ca else True

    def discovery(self) -> dict:
        return requests.get(f"{self.issuer}/.well-known/openid-configuration", verify=self.verify, timeout=10).json()

    def post(self, endpoint: str, data: dict, auth=None) -> requests.Response:
        return requests.post(self.discovery()[endpoint], data=data, auth=auth, verify=self.verify, timeout=10)

    def client_token(self, client: str = CI_CLIENT, secret: str = CI_SECRET) -> str:
        r = self.post("token_endpoint", {"grant_type": "client_credentials", "resource": AUDIENCE}, auth=(client, secret))
        r.raise_for_status()
        return r.json()["access_token"]

    def revoke(self, token: str) -> None:
        r = self.post("revocation_endpoint", {"token": token, "token_type_hint": "refresh_token",
                                              "client_id": DEVICE_CLIENT})
        assert r.status_code == 200, r.text

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.post("token_endpoint", {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                            "client_id": DEVICE_CLIENT})

    def device_tokens(self, login: str) -> dict:
        """Sign `login` in with the device flow, polled by the test itself (what a CI secret is made from)."""
        start = self.post("device_authorization_endpoint", {"client_id": DEVICE_CLIENT, "resource": AUDIENCE,
                                                            "scope": "openid email offline_access"}).json()
        approve(start["verification_uri_complete"], start["user_code"], login, verify=self.verify)
        time.sleep(start.get("interval", 1))
        r = self.post("token_endpoint", {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                         "device_code": start["device_code"], "client_id": DEVICE_CLIENT})
        assert r.status_code == 200, r.text
        return r.json()

    def registry_settings(self, *, leeway: float = 0.0) -> dict:
        """medperf-server's settings trusting this provider (as `run --jwt-jwks-url ... --jwt-email-claim email`);
        no clock skew tolerated, so that an expired access token is refused at once."""
        return {"jwt_jwks_url": self.discovery()["jwks_uri"], "jwt_issuer": self.issuer, "jwt_audience": AUDIENCE,
                "jwt_email_claim": "email", "jwt_leeway_s": leeway}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_provider(folder: Path, *, port: int | None = None, access_ttl: int = 3, interval: int = 1,
                   cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                   extra: dict | None = None, attempts: int = 3) -> Provider:
    """`node .ci/oidc/provider.mjs` on a free port, waited for until its discovery document answers."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable(f"{PROVIDER_DIR}/node_modules is missing (npm ci)")
    fixed_port = port is not None
    port = port or free_port()
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_AUDIENCE": AUDIENCE, "OIDC_ACCESS_TOKEN_TTL": str(access_ttl),
           "OIDC_DEVICE_INTERVAL": str(interval), "OIDC_DEVICE_CLIENT": DEVICE_CLIENT,
           "OIDC_CONFIDENTIAL_CLIENTS": f"{CI_CLIENT}:{CI_SECRET}:{CI_EMAIL},{BO_CLIENT}:{BO_SECRET}:{BO_EMAIL}",
           **(extra or {})}
    if cert and key:
        env.update(OIDC_TLS_CERT=str(cert), OIDC_TLS_KEY=str(key))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"provider-{port}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    scheme = "https" if cert else "http"
    p = Provider(issuer=f"{scheme}://127.0.0.1:{port}", port=port, env=env, ca=ca, proc=proc, log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if not fixed_port and "EADDRINUSE" in log.read_text() and attempts > 1:
                # the free port was taken between choosing it and the provider's bind (other tests start servers
                # too): another free port
                return start_provider(folder, access_ttl=access_ttl, interval=interval, cert=cert, key=key, ca=ca,
                                      extra=extra, attempts=attempts - 1)
            pytest.fail(f"the OpenID provider exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if p.discovery().get("issuer") == p.issuer:
                return p
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    p.stop()
    pytest.fail(f"the OpenID provider did not answer within 20 s:\n{log.read_text()}")


def _hidden(html: str, name: str) -> str | None:
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    return m.group(1) if m else None


def approve(page: str, user_code: str, login: str, *, verify: str | bool = True) -> None:
    """The person at the browser: open the page shown, confirm the code, log in as `login` (any password), consent.
    One cookie jar throughout: the pages' xsrf values are tied to the session cookie."""
    browser = requests.Session()
    browser.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
    browser.verify = verify
    r = browser.get(page, timeout=10)  # verification_uri_complete: a form carrying the code and an xsrf value
    r.raise_for_status()
    verification_uri = page.split("?", 1)[0]
    xsrf = _hidden(r.text, "xsrf")
    r = browser.post(verification_uri, data={"xsrf": xsrf, "user_code": user_code}, timeout=10)  # "is this you?"
    xsrf = _hidden(r.text, "xsrf") or xsrf
    r = browser.post(verification_uri, data={"xsrf": xsrf, "user_code": user_code, "confirm": "yes"}, timeout=10)
    assert "/interaction/" in r.url, f"expected the login form, got {r.url}: {r.text[:300]}"
    r = browser.post(r.url, data={"prompt": "login", "login": login, "password": "any"}, timeout=10)
    r = browser.post(r.url, data={"prompt": "consent"}, timeout=10)
    assert "Sign-in Success" in r.text, r.text[-500:]


def shown_code(stderr_text: str) -> tuple[str, str] | None:
    """(the page, the code) that `medperf-apply login` printed, once it has."""
    page = re.search(r"^  (\S+)$", stderr_text, flags=re.M)
    code = re.search(r"shows the code (\S+?)[ .]", stderr_text)
    return (page.group(1), code.group(1)) if page and code else None


def load_credentials(folder: Path) -> dict:
    (path,) = list(folder.glob("*.json"))
    return json.loads(path.read_text())
