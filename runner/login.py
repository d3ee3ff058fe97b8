"""`medperf-apply login|logout MANIFEST`: sign in to the manifest's OpenID provider (server.oidc) with the device
flow, or sign out (revoke the refresh token, delete the credentials file). Nothing is sent to the registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.clients.auth import CredentialsFile, OidcTokens
from runner.console import Console
from runner.errors import ExitStatus, Interrupted, MedperfApplyError
from runner.load import load
from runner.model import ServerSpec
from runner.validate import validate

TIMEOUT_S = 30.0  # one request to the provider


@dataclass(frozen=True)
class LoginOptions:
    command: str  # "login" | "logout"
    manifests: tuple[str, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)
    ca_file: str | None = None  # --ca-file: a private CA (overrides server.ca_file)


def login_command(opts: LoginOptions, environ: Mapping[str, str], console: Console) -> int:
    """Run login or logout; return the exit status."""
    server = _server(opts, environ)
    from runner.clients.oidc import Provider  # requests: only now

    spec = server.oidc
    assert spec is not None
    ca_file = Path(opts.ca_file).expanduser().absolute() if opts.ca_file else server.ca_file
    provider = Provider(spec.issuer, spec.client_id, ca_file=ca_file, timeout=TIMEOUT_S)
    store = CredentialsFile.of(spec, environ)
    if opts.command == "logout":
        return _logout(provider, store, console)
    if spec.client_secret_env:
        return _check_client_secret(server, provider, store, environ, console)
    return _login(server, provider, store, console)


def _server(opts: LoginOptions, environ: Mapping[str, str]) -> ServerSpec:
    docs = load(opts.manifests, variables=opts.variables, environ=environ)
    server = validate(docs, check_paths=False).server  # the data folders need not exist to sign in
    if server.oidc is None:
        raise MedperfApplyError("the manifest's server has no oidc section: it uses a static token "
                                "(server.token_env or server.token_file), there is nothing to sign in to",
                                where=str(server.where) if server.where else None,
                                hint="to sign in with an OpenID provider, give server.oidc: {issuer, client_id, "
                                     "audience} instead of the token")
    return server


def _login(server: ServerSpec, provider, store: CredentialsFile, console: Console) -> int:
    from runner.clients.oidc import device_login

    spec = server.oidc
    assert spec is not None

    def show(start: Mapping[str, Any]) -> None:
        code, page = start["user_code"], start["verification_uri"]
        complete = start.get("verification_uri_complete")
        lines = [f"To sign in to {spec.issuer}, open this page in a browser:", f"  {complete or page}"]
        lines.append(f"and check that it shows the code {code}" + (f" (or open {page} and enter it)." if complete
                                                                     else "."))
        lines.append("Waiting for the sign-in to complete (Ctrl-C to stop)...")
        console.stderr.write("\n".join(lines) + "\n")
        console.stderr.flush()

    try:
        creds = device_login(spec, provider, store, show=show)
    except KeyboardInterrupt as e:
        raise Interrupted("login stopped before the sign-in was completed: not signed in") from e
    who = creds.email or creds.subject or "an unnamed account"
    console.say(f"Signed in to {spec.issuer} as {who}; the tokens are in {store.path} (readable by you only).")
    if not creds.refresh_token:
        console.warn("the provider gave no refresh token (server.oidc.scopes must include offline_access): "
                     "sign in again when the access token expires")
    return ExitStatus.OK


def _check_client_secret(server: ServerSpec, provider, store: CredentialsFile, environ: Mapping[str, str],
                         console: Console) -> int:
    """With client_secret_env there is nobody to sign in: check that the secret gets a token."""
    spec = server.oidc
    assert spec is not None
    OidcTokens(spec, provider, store, environ, where=str(server.where) if server.where else None).token()
    console.say(f"The client {spec.client_id} gets its tokens from {spec.issuer} with the secret in "
                f"${spec.client_secret_env} (client credentials): no sign-in is needed, nothing was stored.")
    return ExitStatus.OK


def _logout(provider, store: CredentialsFile, console: Console) -> int:
    from runner.clients.oidc import logout

    try:
        existed, revoked = logout(provider, store)
    except MedperfApplyError as e:
        raise MedperfApplyError(f"the refresh token could not be revoked ({e.message}); the credentials file "
                                f"{store.path} was deleted, but the token stays valid at the provider until it "
                                "expires", where=e.where, hint=e.hint) from e
    if not existed:
        console.say(f"Not signed in to {provider.issuer} (no credentials in {store.path}): nothing to do.")
    elif revoked:
        console.say(f"Signed out of {provider.issuer}: the refresh token was revoked and {store.path} deleted.")
    elif revoked is None:
        console.say(f"Signed out of {provider.issuer}: {store.path} deleted (it held no refresh token).")
    else:
        console.say(f"Signed out: {store.path} deleted ({provider.issuer} offers no revocation: the refresh token "
                    "stays valid there until it expires).")
    return ExitStatus.OK
