"""The registry client: one generic resource-keyed client for MedPerf's v0 API, with bounded retries.

Temporary faults (connection errors, timeouts, 429, 5xx) are retried with capped, jittered exponential
backoff honouring Retry-After; a POST only when it certainly never reached the server. 4xx and answers
that are not the API are permanent. The transport is the standard library's http.client (keep-alive
connections in a small pool; HTTP(S)_PROXY/NO_PROXY honoured): `requests` alone took a third of a no-op
plan's start-up. Transport exceptions are translated here and never leak.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

from runner.errors import ServerError, ServerUnavailable, ServerWriteUncertain

API_PREFIX = "/api/v0/"
PAGE_SIZE = 500  # large pages: a no-op plan lists a benchmark's models in one request
MAX_PAGES = 10_000
RETRY_AFTER_CAP = 60.0  # a server asking for a longer pause is treated as down
MAX_IDLE_CONNECTIONS = 8  # room for the pipeline's concurrent GETs
MAX_REDIRECTS = 5  # GETs follow redirects on the server's own origin only
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _Temporary(Exception):
    """A fault worth retrying; sent=False when the request certainly never reached the server."""

    def __init__(self, what: str, *, sent: bool, retry_after: float | None = None, status: int | None = None):
        super().__init__(what)
        self.what = what
        self.sent = sent
        self.retry_after = retry_after
        self.status = status


class ApiClient:
    """Talks to {base_url}/api/v0/{path} with a bearer token; thread-safe for concurrent GETs."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        before_send: Callable[[str, str, Mapping], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
    ):
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(f"the server URL {base_url!r} is not an http(s) URL",
                              hint="set server.url in the manifest to e.g. http://127.0.0.1:8000")
        self._origin = (parts.scheme, parts.netloc)
        self._host, self._port = parts.hostname or "", parts.port
        self._prefix = parts.path.rstrip("/") + API_PREFIX
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.before_send = before_send
        self._sleep = sleep
        self.page_size = page_size
        self._random = random.Random()
        self._count_lock = threading.Lock()
        self.request_count = 0
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                         "User-Agent": "medperf-apply"}
        self._pool_lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._proxy = _proxy_for(parts.scheme, self._host)
        if self._proxy and parts.scheme == "http":
            auth = _proxy_auth(urlsplit(self._proxy if "://" in self._proxy else "http://" + self._proxy))
            if auth:
                self._headers["Proxy-Authorization"] = auth

    def __repr__(self) -> str:  # never the token
        return f"ApiClient({self.base_url!r})"

    # -- the five verbs ----------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping | None = None) -> Any:
        """GET one resource (or one page) and return the decoded JSON."""
        return self._call("GET", self._url(path, params))

    def list(self, path: str) -> list:
        """GET every item of a paginated list, following `next` until it is null."""
        url = self._url(path, {"limit": self.page_size, "offset": 0}, keep_existing=True)
        items: list = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            seen.add(url)
            page = self._call("GET", url)
            if isinstance(page, list):  # some MedPerf lists are not paginated
                return items + page
            if not isinstance(page, Mapping) or not isinstance(page.get("results"), list):
                raise ServerError(f"GET {self._display(url)} did not answer with a list or a page of one",
                                  where=self.base_url, hint="is this a MedPerf v0 server?")
            items.extend(page["results"])
            nxt = page.get("next")
            if not nxt:
                return items
            url = self._same_origin(str(nxt))
            if url in seen:
                raise ServerError(f"GET {self._display(url)}: the server's pagination loops",
                                  where=self.base_url, hint="this is a server bug")
        raise ServerError(f"GET {self._display(url)}: more than {MAX_PAGES} pages", where=self.base_url)

    def create(self, path: str, body: Mapping) -> dict:
        """POST a new resource; never repeated unless it certainly did not reach the server."""
        record = self._send("POST", path, body)
        rid = record.get("id") if isinstance(record, Mapping) else None
        if not isinstance(rid, int) or isinstance(rid, bool):
            # MedPerf answers a create with the new record. Without its id, the server may still have made it:
            # the caller observes before deciding anything, as for a lost answer.
            shown = json.dumps(record, default=str)[:80]
            raise ServerWriteUncertain(
                f"POST /{self._relative(path)} was answered without the new record's id ({shown})",
                where=self.base_url, hint="it is not sent again blindly: run again, and the current state is "
                                          "observed first; if this repeats, is server.url a MedPerf v0 server?")
        return dict(record)

    def update(self, path: str, body: Mapping) -> dict:
        """PUT (partial update) a resource; idempotent, so retried on temporary faults."""
        return self._send("PUT", path, body)

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the machinery ----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: Mapping) -> dict:
        rel = self._relative(path)
        if self.before_send is not None:
            self.before_send(method, rel, body)  # privacy check + ledger: may refuse, then nothing is sent
        return self._call(method, self._url(rel), body)

    def _relative(self, path: str) -> str:
        rel = urlsplit(path).path if "://" in path else path
        if rel.startswith(self._prefix):
            rel = rel[len(self._prefix):]
        return rel.lstrip("/")

    def _url(self, path: str, params: Mapping | None = None, *, keep_existing: bool = False) -> str:
        if "://" in path:
            url = self._same_origin(path)
        else:
            rel = self._relative(path)
            url = urlunsplit((*self._origin, self._prefix + rel, "", ""))
            if "?" in rel:
                path_part, query = rel.split("?", 1)
                url = urlunsplit((*self._origin, self._prefix + path_part, query, ""))
        if params:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            for k, v in params.items():
                if not (keep_existing and k in query):
                    query[k] = str(v)
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return url

    def _same_origin(self, url: str) -> str:
        # A `next` link may name the server as it sees itself (behind a proxy): keep our origin, so the
        # token goes only where the manifest says.
        parts = urlsplit(url)
        return urlunsplit((*self._origin, parts.path, parts.query, ""))

    def _display(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _call(self, method: str, url: str, body: Mapping | None = None) -> Any:
        data = None
        headers = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers = {"Content-Type": "application/json"}
        last: _Temporary | None = None
        gave_up = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._once(method, url, data, headers)
            except _Temporary as fault:
                last = fault
                if method == "POST" and fault.sent:
                    raise ServerWriteUncertain(
                        f"POST {self._display(url)} may or may not have been applied ({fault.what})",
                        status=fault.status, where=self.base_url,
                        hint="it is not sent again blindly: run again, and the current state is observed first",
                    ) from fault
                if attempt == self.max_attempts:
                    gave_up = f"failed {attempt} times"
                    break
                delay = self._delay(attempt, fault.retry_after)
                if delay is None:
                    gave_up = f"failed (the server asks to wait more than {RETRY_AFTER_CAP:g} s)"
                    break
                self._sleep(delay)
        assert last is not None
        raise ServerUnavailable(
            f"{method} {self._display(url)} {gave_up}; last: {last.what}",
            status=last.status, where=self.base_url,
            hint="check that the server is running and reachable, then run again (finished steps are not redone)",
        ) from last

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = self._random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            if retry_after > RETRY_AFTER_CAP:
                return None
            delay = max(delay, retry_after)
        return delay

    def _once(self, method: str, url: str, data: bytes | None, headers: Mapping | None) -> Any:
        with self._count_lock:
            self.request_count += 1
        all_headers = {**self._headers, **(headers or {})}
        if any(c in v for v in all_headers.values() for c in "\r\n\0"):
            raise ServerError(f"{method} {self._display(url)} cannot be sent: a header (the token?) holds a line "
                              "break", where=self.base_url,
                              hint="check server.url and the token (no spaces or line breaks)")
        for _hop in range(MAX_REDIRECTS + 1):
            status, resp_headers, content = self._exchange(method, url, data, all_headers)
            location = resp_headers.get("Location", "")
            if method == "GET" and status in (301, 302, 303, 307, 308) and location:
                target = urljoin(url, location)
                parts = urlsplit(target)
                if (parts.scheme, parts.netloc) == self._origin:
                    url = target
                    continue
            break
        return self._answer(method, url, status, resp_headers, content)

    # -- the transport: http.client connections in a small keep-alive pool ---------------------------------

    def _exchange(self, method: str, url: str, data: bytes | None,
                  headers: Mapping[str, str]) -> tuple[int, Any, bytes]:
        """Send one request and read the whole answer; faults become _Temporary (sent or not) or ServerError."""
        conn = self._checkout(url)
        try:
            target = url if (self._proxy and self._origin[0] == "http") else self._path_of(url)
            try:
                conn.request(method, target, body=data, headers=headers)
            except (ValueError, http.client.InvalidURL) as e:  # a request that cannot be built
                raise ServerError(f"{method} {self._display(url)} cannot be sent: {_short(e)}", where=self.base_url,
                                  hint="check server.url and the token (no spaces or line breaks)") from e
            resp = conn.getresponse()
            content = resp.read()  # the whole body here, so a reset mid-body is caught below
        except ServerError:
            conn.close()
            raise
        except TimeoutError as e:
            conn.close()
            raise _Temporary(f"no answer within {self.timeout[1]:g} s", sent=True) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _Temporary(f"connection lost ({_short(e) or type(e).__name__})", sent=True) from e
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return resp.status, resp.headers, content

    def _path_of(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _checkout(self, url: str) -> http.client.HTTPConnection:
        """An idle connection that is still open, or a new one (connect faults were certainly not sent)."""
        while True:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _still_open(conn):
                return conn
            conn.close()  # the server closed it while idle (keep-alive timeout): never send on it
        conn = self._connection()
        try:
            conn.connect()
        except TimeoutError as e:
            conn.close()
            raise _Temporary(f"connection timed out after {self.timeout[0]:g} s", sent=False) from e
        except OSError as e:
            conn.close()
            import ssl

            if isinstance(e, ssl.SSLCertVerificationError):
                raise ServerError(f"the server's TLS certificate cannot be verified: {e.verify_message or e}",
                                  where=self.base_url, hint="check server.url; for a private CA set "
                                  "REQUESTS_CA_BUNDLE or SSL_CERT_FILE to its certificate file") from e
            raise _Temporary(f"cannot connect ({_short(e) or type(e).__name__})", sent=False) from e
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout[1])
        return conn

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._pool_lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        scheme = self._origin[0]
        host, port = self._host, self._port
        tunnel_headers: dict[str, str] = {}
        if self._proxy:
            proxy = urlsplit(self._proxy if "://" in self._proxy else "http://" + self._proxy)
            auth = _proxy_auth(proxy)
            if scheme == "http":  # absolute-form targets; its Proxy-Authorization is set with the headers
                return http.client.HTTPConnection(proxy.hostname or "", proxy.port, timeout=self.timeout[0])
            if auth:
                tunnel_headers["Proxy-Authorization"] = auth
            conn = http.client.HTTPSConnection(proxy.hostname or "", proxy.port, timeout=self.timeout[0],
                                               context=_tls_context())
            conn.set_tunnel(host, port, headers=tunnel_headers)
            return conn
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout[0], context=_tls_context())
        return http.client.HTTPConnection(host, port, timeout=self.timeout[0])

    def _answer(self, method: str, url: str, status: int, resp_headers, content: bytes) -> Any:
        if status == 429 or status >= 500:
            ra = _retry_after(resp_headers.get("Retry-After"))
            what = f"HTTP {status}" + (f", asked to wait {ra:g} s" if ra is not None else "")
            detail = _message(content, resp_headers.get("Content-Type", ""))
            if detail:
                what += f": {detail}"
            # 429 says the request was refused unprocessed; a 5xx may have been half done.
            raise _Temporary(what, sent=status != 429, retry_after=ra, status=status)
        if 300 <= status < 400:
            raise ServerError(
                f"{method} {self._display(url)} was redirected to {resp_headers.get('Location', '?')}",
                status=status, where=self.base_url,
                hint="set server.url to the address the server redirects to (https?)",
            )
        if status >= 400:
            raise self._permanent(method, url, status, content, resp_headers.get("Content-Type", ""))
        if status == 204 or not content.strip():
            return {}
        ctype = resp_headers.get("Content-Type", "")
        try:
            if "json" not in ctype.lower():
                raise ValueError(ctype)
            return json.loads(content)
        except ValueError:
            raise self._not_api(url, status, ctype, content) from None

    def _not_api(self, url: str, status: int, ctype: str, content: bytes) -> ServerError:
        first = content[:80].decode("utf-8", "replace").replace("\n", " ").strip()
        return ServerError(
            f"the server at {self.base_url} answered {self._display(url)} with something that is not "
            f"MedPerf's API (HTTP {status}, content-type {ctype or 'none'}, first bytes {first!r})",
            status=status, where=self.base_url,
            hint="check server.url: it must be the registry's root, e.g. http://127.0.0.1:8000, not a proxy or web page",
        )

    def _permanent(self, method: str, url: str, status: int, content: bytes, ctype: str) -> ServerError:
        shown = self._display(url)
        body: Any = None
        if "json" in ctype.lower():
            try:
                body = json.loads(content)
            except ValueError:
                body = None
        if body is None and content.strip():
            err = self._not_api(url, status, ctype, content)
            err.message = f"HTTP {status} on {method} {shown}; {err.message}"
            return err
        message = _flatten(body) if body is not None else ""
        hint = None
        if status == 401:
            what = "the server does not accept the token"
            hint = ("check the token in the environment variable named by server.token_env "
                    "(or the file named by server.token_file) in the manifest")
        elif status == 403:
            what = f"not allowed to {method} {shown}"
            hint = "the token's user does not own this resource or lacks the role for it"
        elif status == 404:
            what = f"{shown} does not exist on the server"
            hint = "check the id or name in the manifest"
        else:
            what = f"{method} {shown} was refused (HTTP {status})"
        return ServerError(f"{what}: {message}" if message else what, status=status, body=body,
                           where=self.base_url, hint=hint)


def _short(e: BaseException) -> str:
    return str(e).strip(" ()'\"")[:160] or type(e).__name__


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection has nothing to read; readable means the server closed it (or misbehaved)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy the environment names for this server (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), as requests does."""
    if not any(os.environ.get(k) for k in _PROXY_VARS):
        return None
    import urllib.request  # only when a proxy is configured: it is not free to import

    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxies.get(scheme) or proxies.get("all") or None


def _proxy_auth(proxy) -> str | None:
    if proxy.username is None:
        return None
    import base64

    pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _tls_context():
    """Verify the server's certificate: the CA file of REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else the system's
    store (SSL_CERT_FILE honoured), else certifi's bundle when the system has none."""
    import ssl

    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    ctx = ssl.create_default_context(cafile=cafile)
    if cafile is None and not ctx.cert_store_stats().get("x509_ca"):
        try:
            import certifi

            ctx.load_verify_locations(certifi.where())
        except (ImportError, OSError):
            pass
    return ctx


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message(content: bytes, ctype: str) -> str:
    if "json" in ctype.lower():
        try:
            return _flatten(json.loads(content))[:200]
        except ValueError:
            pass
    return ""


def _flatten(body: Any, prefix: str = "") -> str:
    """Turn MedPerf's {field: [messages]} (or {"detail": msg}) into one readable line."""
    if isinstance(body, Mapping):
        parts = []
        for key, value in body.items():
            inner = _flatten(value, "" if key in ("non_field_errors", "detail", "error", "message") else
                             f"{prefix}{key}.")
            if key in ("non_field_errors", "detail", "error", "message") or isinstance(value, Mapping):
                parts.append(inner)
            else:
                parts.append(f"{prefix}{key}: {inner}")
        return "; ".join(p for p in parts if p)
    if isinstance(body, list):
        return " ".join(_flatten(v, prefix) for v in body)
    return str(body)
