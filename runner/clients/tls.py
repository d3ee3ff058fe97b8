"""TLS to the registry: whom to trust (the system's trust store through truststore, or a private CA's PEM bundle
from server.ca_file / --ca-file), and what a failed handshake means, said with the fix."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from runner.errors import ServerError

HINT_CA = "set server.ca_file in the manifest (or --ca-file) to the PEM of the certificate authority that signed it"


def context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The TLS context: verify against `ca_file` when given, else against the operating system's trust store
    (where a hospital's IT installs its private CA), as browsers do."""
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as e:
            raise ServerError(f"cannot load the certificate authority file {ca_file}: {e}",
                              hint="server.ca_file must be a PEM file of one or more CA certificates") from e
    import truststore  # the system trust store (macOS, Windows, Linux), as pip uses it

    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def explain(reason: BaseException, url: str, ca_file: Path | None) -> ServerError:
    """A failed TLS handshake, said as what failed and what to do: never retried, it will not heal."""
    origin = _origin(url)
    text = str(reason)
    verify = getattr(reason, "verify_message", "") or ""
    low = (verify or text).lower()
    trusted = f"the CA in {ca_file}" if ca_file is not None else "the system's trust store"
    if "hostname mismatch" in low or "doesn't match" in low or "not valid for" in low:
        return ServerError(f"TLS: the certificate of {origin} is not for that name ({verify or text})",
                           where=origin, hint="use the name the certificate was issued for in server.url, or ask "
                                              "for a certificate that includes this name")
    if "expired" in low or "not yet valid" in low:
        return ServerError(f"TLS: the certificate of {origin} has expired or is not valid yet ({verify or text})",
                           where=origin, hint="the registry's operator must renew its certificate (check this "
                                              "machine's clock too)")
    if "self-signed" in low or "self signed" in low or "unable to get local issuer" in low or \
            "unknown ca" in low or "certificate verify failed" in low:
        return ServerError(f"TLS: the certificate of {origin} is signed by an unknown authority (not in "
                           f"{trusted}: {verify or text})", where=origin,
                           hint=HINT_CA if ca_file is None else f"{ca_file} does not hold the CA that signed it: "
                                                                f"{HINT_CA}")
    if "wrong version number" in low or "record layer failure" in low or "http request" in low \
            or "packet length too long" in low:
        return ServerError(f"TLS: {origin} does not speak HTTPS ({text[:120]})", where=origin,
                           hint=f"use http:// in server.url ({url.replace('https://', 'http://', 1)})")
    return ServerError(f"TLS: the handshake with {origin} failed ({text[:160]})", where=origin,
                       hint="check server.url and server.ca_file")


def speaks_tls(url: str, timeout: float = 2.0) -> bool:
    """Whether the host:port of an http:// URL answers a TLS handshake (to say "use https://")."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # only asks whether TLS answers: nothing is sent over it
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as raw, \
                probe.wrap_socket(raw, server_hostname=parts.hostname):
            return True
    except (OSError, ssl.SSLError):
        return False


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
