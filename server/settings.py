"""The server's settings: one explicit, frozen object built by the CLI (or a test) and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DB = "./medperf-server.sqlite3"
DEFAULT_EMAIL_CLAIM = "https://medperf.org/email"
DEFAULT_EMAIL_VERIFIED_CLAIM = "email_verified"


@dataclass(frozen=True)
class Settings:
    """Everything make_app needs. Defaults suit a local demo on loopback."""

    db_url: str = DEFAULT_DB
    """SQLite path (or sqlite:///path) or postgresql://... URL."""
    page_size: int = 32
    """Default `limit` of list endpoints, as MedPerf's LimitOffsetPagination."""
    pool_size: int = 16
    """Database connections kept open (at least the number of server threads)."""
    auto_approve_benchmarks_from: tuple[str, ...] = ()
    """Owner emails whose new benchmarks are APPROVED at once (MedPerf's AUTO_APPROVE_BENCHMARKS_FROM)."""
    jwt_public_key: str | None = None
    """PEM public key verifying RS256 JWTs (exclusive with jwt_jwks_url)."""
    jwt_jwks_url: str | None = None
    """JWKS URL of an OIDC provider verifying RS256 JWTs."""
    jwt_jwks_ca_file: str | None = None
    """PEM bundle of the CA that signed an https JWKS URL's certificate (a private CA); the system's otherwise."""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_email_claim: str = DEFAULT_EMAIL_CLAIM
    jwt_email_verified_claim: str = DEFAULT_EMAIL_VERIFIED_CLAIM
    """The claim by which the provider asserts the email was verified: only then is a user known by email alone
    (seeded, or made by `user create`) linked to the token's `sub`, once."""
    jwt_leeway_s: float = 5.0
    """Clock skew tolerated on exp, nbf and iat."""
    jwt_jwks_cooldown_s: float | None = None
    """Least seconds between two JWKS fetches forced by an unknown kid (None: PyJWT's default, 30 s): a signing key
    the provider uses before it was fetched is refused at most this long after the previous fetch."""
    max_body_bytes: int = 2_621_440
    """Largest request body accepted (413 beyond): Django's DATA_UPLOAD_MAX_MEMORY_SIZE, as MedPerf runs it."""
    web_ui: bool = True
    """Serve the web page at `/` (+ POST /login, /logout): signed in with an API token, what the API shows that user."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.jwt_public_key and self.jwt_jwks_url:
            raise ValueError("set either jwt_public_key or jwt_jwks_url, not both")
        if self.page_size < 1:
            raise ValueError("page_size must be positive")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_public_key or self.jwt_jwks_url)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Settings:
        """Build settings from MEDPERF_SERVER_* environment variables, then apply `overrides`."""
        env = os.environ if environ is None else environ
        values: dict = {}
        if env.get("MEDPERF_SERVER_DB"):
            values["db_url"] = env["MEDPERF_SERVER_DB"]
        if env.get("MEDPERF_SERVER_AUTO_APPROVE_BENCHMARKS_FROM"):
            emails = env["MEDPERF_SERVER_AUTO_APPROVE_BENCHMARKS_FROM"].split(",")
            values["auto_approve_benchmarks_from"] = tuple(e.strip() for e in emails if e.strip())
        key_file = env.get("MEDPERF_SERVER_JWT_PUBLIC_KEY_FILE")
        if key_file:
            with open(key_file, encoding="utf-8") as f:
                values["jwt_public_key"] = f.read()
        for name in ("jwt_jwks_url", "jwt_jwks_ca_file", "jwt_issuer", "jwt_audience", "jwt_email_claim", "jwt_email_verified_claim"):
            v = env.get("MEDPERF_SERVER_" + name.upper())
            if v:
                values[name] = v
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
