"""Bearer authentication: server-issued API tokens (stored as SHA-256) and RS256 JWTs from an OIDC provider.

A token with two dots is a JWT (verified with the configured PEM key or JWKS URL, issuer, audience, expiry and
email claim); anything else is an API token. A JWT's user is found by its subject (`sub`, kept as username): a
user known by email alone is linked to a subject once, only when the provider asserts the email is verified, and
a user bound to one subject is never another's; otherwise the user is created on first use.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from server import store
from server.db import Connection
from server.errors import NotAuthenticated
from server.settings import Settings

TOKEN_PREFIX = "mpa_"
CACHE_SECONDS = 2.0  # a verified token is trusted this long without another lookup or signature check
CACHE_SIZE = 4096


def new_token() -> str:
    """A fresh random API token (shown once; only its hash is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(conn: Connection, user_id: int) -> str:
    """Create, store (hashed) and return a new API token for the user."""
    token = new_token()
    store.insert_token(conn, user_id, hash_token(token))
    return token


def create_user_with_token(conn: Connection, email: str, is_admin: bool = False) -> tuple[dict, str]:
    user = store.insert_user(conn, username=email, email=email, is_admin=is_admin)
    return user, issue_token(conn, user["id"])


class Authenticator:
    """Turns an Authorization header into a user row, or raises NotAuthenticated (401)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._cache: dict[str, tuple[float, dict]] = {}  # token hash -> (expires, user)
        self._jwks_client = None
        if settings.jwt_jwks_url:
            import jwt  # here, not at the top: PyJWT loads cryptography, which only JWT servers need

            extra: dict = {}
            if settings.jwt_jwks_cooldown_s is not None:
                extra["cooldown_duration"] = settings.jwt_jwks_cooldown_s
            if settings.jwt_jwks_ca_file:
                import ssl

                extra["ssl_context"] = ssl.create_default_context(cafile=settings.jwt_jwks_ca_file)
            self._jwks_client = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, **extra)

    def authenticate(self, conn: Connection, header: str | None) -> dict:
        if not header:
            raise NotAuthenticated()
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise NotAuthenticated({"detail": "Invalid Authorization header: expected 'Bearer <token>'."})
        key = hash_token(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return dict(hit[1])
        if token.count(".") == 2:
            user, ttl = self._jwt_user(conn, token)
        else:
            user, ttl = store.get_user_by_token_hash(conn, key), CACHE_SECONDS
            if user is None:
                raise NotAuthenticated({"detail": "Given token not valid for any token type"})
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = (now + ttl, user)
        return dict(user)

    def _jwt_user(self, conn: Connection, token: str) -> tuple[dict, float]:
        import jwt  # as in __init__: only a JWT request pays for loading cryptography

        s = self.settings
        if not s.jwt_enabled:
            raise NotAuthenticated({"detail": "JWT authentication is not configured on this server"})
        try:
            key = self._jwks_client.get_signing_key_from_jwt(token).key if self._jwks_client else s.jwt_public_key
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["sub", "exp"], "verify_aud": s.jwt_audience is not None},
                leeway=s.jwt_leeway_s,
            )
        except jwt.PyJWTError as e:
            raise NotAuthenticated({"detail": f"Given token not valid: {e}"}) from e
        email = claims.get(s.jwt_email_claim)
        if not email or not isinstance(email, str):
            raise NotAuthenticated({"detail": f"Token has no '{s.jwt_email_claim}' claim"})
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise NotAuthenticated({"detail": "Token has no usable 'sub' claim"})
        ttl = max(0.0, min(CACHE_SECONDS, claims["exp"] - time.time()))
        verified = claims.get(s.jwt_email_verified_claim) is True
        return self._user_for(conn, sub, email, verified), ttl

    def _user_for(self, conn: Connection, sub: str, email: str, verified: bool) -> dict:
        user = store.get_user_by_username(conn, sub)
        if user is not None:
            return user
        known = store.get_user_by_email(conn, email)
        if known is not None:
            if known["username"] == sub:  # linked meanwhile by a concurrent first request of this subject
                return known
            if known["username"] != known["email"]:
                raise NotAuthenticated({"detail": f"The email {email} belongs to another sign-in of this registry; "
                                                  "this token's subject is not that user's."})
            if not verified:
                raise NotAuthenticated({"detail": f"The identity provider does not assert that {email} is verified "
                                                  f"('{self.settings.jwt_email_verified_claim}'): the existing user "
                                                  "with that email is not linked to this sign-in."})
            store.bind_user_to_subject(conn, known["id"], email, sub)
            user = store.get_user_by_username(conn, sub)
            if user is None:  # bound meanwhile to another subject
                raise NotAuthenticated({"detail": f"The email {email} belongs to another sign-in of this registry."})
            return user
        try:
            return store.insert_user(conn, username=sub, email=email)
        except Exception:  # a concurrent first request created it: read it back
            user = store.get_user_by_username(conn, sub)
            if user is None:
                raise
            return user
