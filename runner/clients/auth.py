"""The registry's credentials, never printed: a static API token (server.token_env or server.token_file), or
OpenID Connect tokens (server.oidc) kept in a credentials file private to the user and refreshed before they expire.

The credentials file is `~/.medperf_apply/credentials/<hash of issuer, client and audience>.json` (mode 0600 in a
0700 folder; `$MEDPERF_APPLY_CREDENTIALS` names another folder), not in the state dir: a state dir may be
read-only, shared or backed up, and one sign-in serves every manifest of that provider and client. OidcTokens
renews the access token from it; the provider's HTTP lives in runner.clients.oidc (`token_source` picks the source).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from runner.errors import AuthError, LoginRequired, MedperfApplyError, StateError
from runner.journal import write_atomic
from runner.model import OidcSpec, ServerSpec

ENV_CREDENTIALS = "MEDPERF_APPLY_CREDENTIALS"
LOGIN_HINT = "run `medperf-apply login` with this manifest to sign in"
CREDENTIALS_FORMAT = 1


class TokenSource(Protocol):
    """Where ApiClient gets its bearer token: `token()` before each request, `refresh(rejected)` once after the
    registry answered 401 to `rejected` (None: nothing fresher can be had, the 401 stands)."""

    def token(self) -> str: ...

    def refresh(self, rejected: str) -> str | None: ...


class StaticToken:
    """A token that never changes (server.token_env, server.token_file, --token-env): a 401 is final."""

    hint = ("check the token in the environment variable named by server.token_env "
            "(or the file named by server.token_file) in the manifest")

    def __init__(self, value: str):
        self._value = value

    def __repr__(self) -> str:  # never the token
        return "StaticToken(...)"

    def token(self) -> str:
        return self._value

    def refresh(self, rejected: str) -> str | None:
        return None


def read_token(server: ServerSpec, environ: Mapping[str, str]) -> str:
    """The API token from server.token_env or server.token_file."""
    where = str(server.where) if server.where else None
    if server.token_env:
        token = environ.get(server.token_env, "").strip()
        if not token:
            raise MedperfApplyError(f"the environment variable {server.token_env} (server.token_env) is not set",
                                    where=where, hint=f"export {server.token_env}=<your API token>")
        return token
    if server.token_file is None:
        raise MedperfApplyError("server names no token (token_env, token_file or oidc)", where=where)
    try:
        token = Path(server.token_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise MedperfApplyError(f"cannot read server.token_file {server.token_file}: {e.strerror}",
                                where=where) from e
    if not token:
        raise MedperfApplyError(f"server.token_file {server.token_file} is empty")
    return token


# -- the credentials file -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """One sign-in's tokens (epoch seconds)."""

    access_token: str | None
    expires_at: float
    lifetime: float  # the access token's lifetime when issued: the refresh margin is a part of it
    refresh_token: str | None = None
    subject: str | None = None
    email: str | None = None
    seed: str | None = None  # the fingerprint of the refresh token handed in by refresh_token_env it descends from

    def __repr__(self) -> str:  # never the tokens
        return f"Credentials(subject={self.subject!r}, expires_at={self.expires_at:.0f})"


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def credentials_dir(environ: Mapping[str, str]) -> Path:
    """$MEDPERF_APPLY_CREDENTIALS, else ~/.medperf_apply/credentials/."""
    override = environ.get(ENV_CREDENTIALS)
    if override:
        return Path(override).expanduser().absolute()
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".medperf_apply" / "credentials"


class CredentialsFile:
    """The tokens of one (issuer, client, audience), readable by the user alone; rewritten atomically."""

    def __init__(self, path: Path, spec: OidcSpec):
        self.path = Path(path)
        self.spec = spec

    @classmethod
    def of(cls, spec: OidcSpec, environ: Mapping[str, str]) -> CredentialsFile:
        key = "\n".join((spec.issuer.rstrip("/"), spec.client_id, spec.audience or ""))
        return cls(credentials_dir(environ) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json", spec)

    def __repr__(self) -> str:
        return f"CredentialsFile({str(self.path)!r})"

    def read(self) -> Credentials | None:
        """The stored sign-in, or None when there is none (or it is unreadable: signing in again mends it)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # damaged: signing in again rewrites it
            return None
        except OSError as e:
            raise AuthError(f"cannot read the credentials file {self.path}: {e.strerror or e}",
                            hint="it must be readable by you (mode 0600)") from e
        if not isinstance(doc, dict) or doc.get("format_version") != CREDENTIALS_FORMAT:
            return None
        try:
            return Credentials(access_token=doc.get("access_token"), expires_at=float(doc.get("expires_at", 0)),
                               lifetime=float(doc.get("lifetime", 0)), refresh_token=doc.get("refresh_token"),
                               subject=doc.get("subject"), email=doc.get("email"), seed=doc.get("seed"))
        except (TypeError, ValueError):
            return None

    def write(self, creds: Credentials) -> None:
        self._folder()
        doc = {"format_version": CREDENTIALS_FORMAT, "issuer": self.spec.issuer, "client_id": self.spec.client_id,
               "audience": self.spec.audience, **asdict(creds)}
        try:
            write_atomic(self.path, json.dumps(doc, indent=2) + "\n", mode=0o600)  # a 0600 temp file, renamed
        except StateError as e:
            raise AuthError(f"cannot write the credentials file {self.path}: {e.message}",
                            hint=f"check the permissions of {self.path.parent}") from e

    def delete(self) -> bool:
        """Remove the stored sign-in; whether there was one."""
        existed = self.path.exists()
        for p in (self.path, self._lock_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return existed

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock: two commands refreshing at once would spend one rotated refresh token twice,
        and a provider revokes the whole sign-in when a spent one comes back."""
        import fcntl

        self._folder()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def _lock_path(self) -> Path:
        return self.path.with_suffix(".lock")

    def _folder(self) -> None:
        folder = self.path.parent
        try:
            if not folder.parent.exists():
                folder.parent.mkdir(mode=0o700, parents=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)  # ours: nobody else reads the tokens
        except OSError as e:
            raise AuthError(f"cannot create the credentials folder {folder}: {e.strerror or e}",
                            hint=f"check the permissions, or set {ENV_CREDENTIALS} to another folder") from e


def login_required(message: str, where: str | None = None) -> LoginRequired:
    return LoginRequired(message, where=where, hint=LOGIN_HINT)


# -- the token source of server.oidc ------------------------------------------------------------------------


def refresh_margin(lifetime: float) -> float:
    """How long before its expiry an access token is renewed: a fifth of its lifetime, 1 s to 60 s."""
    return min(60.0, max(1.0, lifetime / 5))


def claims(jwt: str | None) -> dict:
    """The payload of a JWT, unverified: only to say whom a sign-in is for (the registry verifies the tokens)."""
    try:
        payload = jwt.split(".")[1]  # type: ignore[union-attr]
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return doc if isinstance(doc, dict) else {}
    except (AttributeError, IndexError, ValueError):
        return {}


def credentials_from(answer: Mapping[str, Any], *, now: float, previous: Credentials | None = None,
                     seed: str | None = None) -> Credentials:
    """The tokens of a token endpoint's answer; a refresh without a new refresh token keeps the previous one."""
    access = answer["access_token"]
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        exp = claims(access).get("exp")
        lifetime = (exp - now) if isinstance(exp, int | float) and exp > now else 300.0
    who = claims(answer.get("id_token")) or claims(access)
    return Credentials(
        access_token=access, expires_at=now + float(lifetime), lifetime=float(lifetime),
        refresh_token=answer.get("refresh_token") or (previous.refresh_token if previous else None),
        subject=who.get("sub") or (previous.subject if previous else None),
        email=who.get("email") or (previous.email if previous else None),
        seed=seed if seed is not None else (previous.seed if previous else None),
    )


class TokenEndpoint(Protocol):
    """What OidcTokens asks of the provider (runner.clients.oidc.Provider): answers of its token endpoint."""

    def refresh(self, refresh_token: str, audience: str | None) -> dict: ...

    def client_credentials(self, secret: str, scopes: tuple[str, ...], audience: str | None) -> dict: ...


class OidcTokens:
    """server.oidc as a TokenSource: the stored access token while it is fresh, else a refreshed one (the rotated
    refresh token stored at once); with client_secret_env, the client credentials grant (nothing stored)."""

    def __init__(self, spec: OidcSpec, provider: TokenEndpoint, store: CredentialsFile, environ: Mapping[str, str], *,
                 where: str | None = None, clock: Callable[[], float] = time.time):
        self.spec = spec
        self.provider = provider
        self.store = store
        self.environ = environ
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Credentials | None = None
        self.hint = (f"the registry does not accept this sign-in's access token from {spec.issuer}: it must trust "
                     "that issuer and audience (medperf-server run --jwt-jwks-url, --jwt-issuer, --jwt-audience) "
                     "and know the user's email; `medperf-apply login` signs in as another user")

    def __repr__(self) -> str:
        return f"OidcTokens({self.spec.issuer!r}, {self.spec.client_id!r})"

    def token(self) -> str:
        with self._lock:
            if self._current is not None and self._fresh(self._current):
                return self._current.access_token  # type: ignore[return-value]
            return self._renew(None)

    def refresh(self, rejected: str) -> str | None:
        with self._lock:
            current = self._current
            if current is not None and current.access_token != rejected and self._fresh(current):
                return current.access_token  # another thread renewed it meanwhile
            return self._renew(rejected)

    def _fresh(self, creds: Credentials) -> bool:
        return bool(creds.access_token) and creds.expires_at - self._clock() > refresh_margin(creds.lifetime)

    def _renew(self, rejected: str | None) -> str:
        if self.spec.client_secret_env:
            return self._client_credentials()
        with self.store.locked():  # another command may be refreshing the same sign-in
            stored, refresh_token, seed = self._start()
            if stored is not None and stored.access_token and stored.access_token != rejected and self._fresh(stored):
                self._current = stored
                return stored.access_token
            if not refresh_token:
                raise login_required(f"the access token of the sign-in to {self.spec.issuer} expired and there is "
                                     "no refresh token (server.oidc.scopes must include offline_access)", self.where)
            answer = self.provider.refresh(refresh_token, self.spec.audience)
            creds = credentials_from(answer, now=self._clock(), previous=stored, seed=seed)
            if creds.refresh_token is None:
                creds = replace(creds, refresh_token=refresh_token)
            self.store.write(creds)
            self._current = creds
            return creds.access_token  # type: ignore[return-value]

    def _start(self) -> tuple[Credentials | None, str | None, str | None]:
        """(the stored sign-in to start from, the refresh token to use, its refresh_token_env fingerprint)."""
        stored = self.store.read()
        name = self.spec.refresh_token_env
        handed = self.environ.get(name, "").strip() if name else ""
        if handed:
            seed = fingerprint(handed)
            if stored is not None and stored.seed == seed:
                return stored, stored.refresh_token, seed  # rotated since it was handed in: the latest one
            return None, handed, seed  # a new secret: start from it
        if stored is None:
            if name:
                raise MedperfApplyError(f"the environment variable {name} (server.oidc.refresh_token_env) is not set, "
                                        f"and there is no sign-in to {self.spec.issuer} in {self.store.path}",
                                        where=self.where, hint=f"export {name}=<a refresh token>, or run "
                                                               "`medperf-apply login` with this manifest")
            raise login_required(f"not signed in to {self.spec.issuer} (no credentials in {self.store.path})",
                                 self.where)
        return stored, stored.refresh_token, stored.seed

    def _client_credentials(self) -> str:
        name = self.spec.client_secret_env
        secret = self.environ.get(name or "", "").strip()
        if not secret:
            raise AuthError(f"the environment variable {name} (server.oidc.client_secret_env) is not set",
                            where=self.where, hint=f"export {name}=<the secret of client {self.spec.client_id}>")
        answer = self.provider.client_credentials(secret, self.spec.scopes if self._scopes_given() else (),
                                                  self.spec.audience)
        self._current = credentials_from(answer, now=self._clock())
        return self._current.access_token  # type: ignore[return-value]

    def _scopes_given(self) -> bool:
        return self.spec.scopes != OidcSpec.scopes  # the defaults are a user's (openid, offline_access), not a client's
