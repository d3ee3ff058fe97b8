"""The OpenID provider of server.oidc over HTTP: discovery, the device authorization grant (`medperf-apply login`),
refresh with rotation, client credentials, revocation; `token_source` gives a server section its TokenSource.

The provider is reached with requests and the registry's TLS trust (server.ca_file / --ca-file, else the system's
trust store). Its OAuth errors are translated here: `invalid_grant` on a refresh means sign in again.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from runner.clients import tls
from runner.clients.api import _short, _ssl_reason, _TLSAdapter
from runner.clients.auth import (
    Credentials,
    CredentialsFile,
    OidcTokens,
    StaticToken,
    TokenSource,
    credentials_from,
    login_required,
    read_token,
)
from runner.clients.retry import backoff_delay
from runner.errors import AuthError
from runner.model import OidcSpec, ServerSpec

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5  # RFC 8628: when the provider names no interval
MAX_ANSWER = 1 << 20  # a provider's JSON answer is small
ATTEMPTS = 3  # a GET, or a POST that never reached the provider, is tried this often


def token_source(server: ServerSpec, environ: Mapping[str, str], *, ca_file: Path | None = None,
                 timeout: float = 30.0) -> TokenSource:
    """The token source the manifest's server section names: a static token, or OpenID Connect."""
    if server.oidc is None:
        return StaticToken(read_token(server, environ))
    provider = Provider(server.oidc.issuer, server.oidc.client_id, ca_file=ca_file, timeout=timeout)
    return OidcTokens(server.oidc, provider, CredentialsFile.of(server.oidc, environ), environ,
                      where=str(server.where) if server.where else None)


class Provider:
    """The provider's endpoints, found by discovery (once per process, when first needed)."""

    def __init__(self, issuer: str, client_id: str, *, ca_file: Path | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.issuer = issuer
        self.client_id = client_id
        self.ca_file = ca_file
        self.timeout = (min(5.0, timeout), timeout)
        self._sleep = sleep
        self._metadata: dict | None = None
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=0))
            if urlsplit(issuer).scheme == "https":
                session.mount("https://", _TLSAdapter(tls.context(ca_file), max_retries=0))
        session.headers["Accept"] = "application/json"
        session.headers.setdefault("User-Agent", "medperf-apply")
        self.session = session

    def __repr__(self) -> str:
        return f"Provider({self.issuer!r}, {self.client_id!r})"

    # -- discovery --------------------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            status, doc = self._request("GET", url)
            if status != 200 or not isinstance(doc.get("token_endpoint"), str):
                raise AuthError(f"{url} is not an OpenID provider's discovery document (HTTP {status})",
                                where=self.issuer, hint="check server.oidc.issuer")
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer.rstrip("/"):
                raise AuthError(f"the provider at {self.issuer} calls itself {doc.get('issuer')!r}",
                                where=self.issuer, hint="set server.oidc.issuer to exactly the provider's issuer")
            self._metadata = doc
        return self._metadata

    def endpoint(self, name: str) -> str | None:
        value = self.metadata.get(name)
        return value if isinstance(value, str) and value else None

    def _required(self, name: str, what: str) -> str:
        url = self.endpoint(name)
        if url is None:
            raise AuthError(f"the provider {self.issuer} offers no {what} ({name} is not in its discovery document)",
                            where=self.issuer, hint="ask its operator to enable it for this client")
        return url

    # -- grants -----------------------------------------------------------------------------------------------

    def device_authorization(self, scopes: tuple[str, ...], audience: str | None) -> dict:
        """Start the device flow: the answer holds device_code, user_code, verification_uri(_complete)."""
        url = self._required("device_authorization_endpoint", "device authorization (the device flow)")
        status, body = self._request("POST", url, {"client_id": self.client_id, "scope": " ".join(scopes),
                                                   **_audience(audience)})
        if status != 200:
            raise self.error(status, body, "the device authorization")
        missing = [k for k in ("device_code", "user_code", "verification_uri") if not isinstance(body.get(k), str)]
        if missing:
            raise AuthError(f"the provider's device authorization answer lacks {', '.join(missing)}",
                            where=self.issuer)
        return body

    def poll(self, device_code: str) -> tuple[int | None, dict]:
        """One poll of the token endpoint for a device code: (status, answer); (None, {}) when it was not reached."""
        try:
            return self._request("POST", self._required("token_endpoint", "token endpoint"),
                                 {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": self.client_id},
                                 attempts=1)
        except _Unreachable:
            return None, {}

    def refresh(self, refresh_token: str, audience: str | None) -> dict:
        """A new access token (and, when the provider rotates them, a new refresh token)."""
        status, body = self._request("POST", self._required("token_endpoint", "token endpoint"),
                                     {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                      "client_id": self.client_id, **_audience(audience)})
        if status != 200 or not isinstance(body.get("access_token"), str):
            raise self.error(status, body, "the refresh")
        return body

    def client_credentials(self, secret: str, scopes: tuple[str, ...], audience: str | None) -> dict:
        """The client's own access token (client_secret_basic)."""
        data = {"grant_type": "client_credentials", **_audience(audience)}
        if scopes:
            data["scope"] = " ".join(scopes)
        status, body = self._request("POST", self._required("token_endpoint", "token endpoint"), data,
                                     auth=(self.client_id, secret))
        if status != 200 or not isinstance(body.get("access_token"), str):
            raise self.error(status, body, "the client credentials grant")
        return body

    def revoke(self, token: str, hint: str = "refresh_token") -> bool:
        """Revoke a token (RFC 7009); False when the provider offers no revocation endpoint."""
        url = self.endpoint("revocation_endpoint")
        if url is None:
            return False
        status, body = self._request("POST", url, {"token": token, "token_type_hint": hint,
                                                   "client_id": self.client_id})
        if status != 200:
            raise self.error(status, body, "the revocation")
        return True

    # -- the machinery ----------------------------------------------------------------------------------------

    def error(self, status: int | None, body: Mapping, what: str) -> AuthError:
        """An OAuth error answer, said with what to do."""
        code = str(body.get("error") or "")
        desc = str(body.get("error_description") or "").strip()
        detail = f"{code}: {desc}" if code and desc else (code or desc or f"HTTP {status}")
        where = self.issuer
        if code == "invalid_grant":
            return login_required(f"the provider {self.issuer} refused the refresh token ({detail}): it expired, "
                                  "was revoked or was already used", where=None)
        if code in ("invalid_client", "unauthorized_client"):
            return AuthError(f"the provider refused the client {self.client_id!r} in {what} ({detail})", where=where,
                             hint="check server.oidc.client_id (and the secret in server.oidc.client_secret_env)")
        if code == "invalid_scope":
            return AuthError(f"the provider refused the scopes in {what} ({detail})", where=where,
                             hint="check server.oidc.scopes")
        if code == "invalid_target":
            return AuthError(f"the provider refused the audience in {what} ({detail})", where=where,
                             hint="check server.oidc.audience: it must be the registry's, as the provider knows it")
        if status is not None and status >= 500:
            return AuthError(f"the provider failed in {what} (HTTP {status}: {detail})", where=where,
                             hint="run again later; nothing was lost")
        return AuthError(f"the provider refused {what} ({detail})", where=where)

    def _request(self, method: str, url: str, data: Mapping | None = None, *, auth=None,
                 attempts: int = ATTEMPTS) -> tuple[int, dict]:
        rng = random.Random()
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, url, data, auth)
            except _Unreachable as e:
                # A POST is tried again only when it never reached the provider: a refresh token it received
                # may be spent already, and one spent twice revokes the whole sign-in.
                if attempt == attempts or (method == "POST" and e.sent):
                    if attempts == 1:
                        raise
                    raise AuthError(f"cannot reach the OpenID provider {self.issuer} ({e})", where=self.issuer,
                                    hint="check server.oidc.issuer and the network, then run again") from e
                self._sleep(backoff_delay(attempt, base=0.5, cap=4.0, rng=rng) or 1.0)
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, data: Mapping | None, auth) -> tuple[int, dict]:
        try:
            resp = self.session.request(method, url, data=data, auth=auth, timeout=self.timeout,
                                        allow_redirects=False, stream=True)
            with resp:
                content = resp.raw.read(MAX_ANSWER + 1, decode_content=True)
        except requests.exceptions.SSLError as e:
            raise tls.explain(_ssl_reason(e), url, self.ca_file) from e
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) as e:
            refused = "NewConnectionError" in repr(e) or isinstance(e, requests.exceptions.ConnectTimeout)
            raise _Unreachable(_short(e), sent=not refused) from e
        except requests.exceptions.RequestException as e:
            raise _Unreachable(_short(e), sent=True) from e
        if len(content) > MAX_ANSWER:
            raise AuthError(f"the provider's answer from {url} is larger than {MAX_ANSWER >> 10} KiB",
                            where=self.issuer, hint="check server.oidc.issuer")
        try:
            body = json.loads(content) if content.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if resp.status_code >= 500:
                return resp.status_code, {}
            raise AuthError(f"{url} answered HTTP {resp.status_code} with something that is not JSON",
                            where=self.issuer, hint="check server.oidc.issuer: it must be the provider's issuer URL")
        return resp.status_code, body


class _Unreachable(Exception):
    def __init__(self, what: str, *, sent: bool):
        super().__init__(what)
        self.sent = sent


def _audience(audience: str | None) -> dict:
    # Auth0 (MedPerf's provider) reads `audience`; RFC 8707 providers read `resource`; each ignores the other.
    return {"audience": audience, "resource": audience} if audience else {}


# -- the device flow, and signing out ---------------------------------------------------------------------------


def device_login(spec: OidcSpec, provider: Provider, store: CredentialsFile, *,
                 show: Callable[[Mapping[str, Any]], None], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> Credentials:
    """Run the device authorization grant: show the code, poll at the provider's interval (slower after each
    `slow_down`) until the user has signed in, store the tokens. Ctrl-C stops it (KeyboardInterrupt)."""
    start = provider.device_authorization(spec.scopes, spec.audience)
    show(start)
    interval = _seconds(start.get("interval"), DEFAULT_INTERVAL)
    lasts = _seconds(start.get("expires_in"), 600)
    deadline = clock() + lasts
    while True:
        sleep(interval)
        if clock() >= deadline:
            raise AuthError(f"the code {start['user_code']} expired before the sign-in was completed",
                            hint=f"run `medperf-apply login` again and sign in within {lasts // 60:g} minutes")
        status, answer = provider.poll(start["device_code"])
        if status == 200 and isinstance(answer.get("access_token"), str):
            break
        error = answer.get("error")
        if status is None or error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5  # RFC 8628 3.5: for this and every later poll
            continue
        if error == "access_denied":
            raise AuthError(f"the sign-in was declined at {provider.issuer}", hint="run `medperf-apply login` again")
        if error == "expired_token":
            raise AuthError(f"the code {start['user_code']} expired before the sign-in was completed",
                            hint="run `medperf-apply login` again")
        raise provider.error(status, answer, "the device flow")
    creds = credentials_from(answer, now=time.time())
    with store.locked():
        store.write(creds)
    return creds


def logout(provider: Provider, store: CredentialsFile) -> tuple[bool, bool | None]:
    """Revoke the stored refresh token and delete the credentials file: (there was a sign-in, its refresh token
    was revoked; None when there was none to revoke). The file is deleted even when revocation fails."""
    with store.locked():
        try:
            creds = store.read()
            revoked = provider.revoke(creds.refresh_token) if creds is not None and creds.refresh_token else None
        finally:
            existed = store.delete()
    return existed, revoked


def _seconds(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else default
