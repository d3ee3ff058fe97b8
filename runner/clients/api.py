"""The registry client: one generic resource-keyed client for MedPerf's v0 API, with bounded retries.

Temporary faults (connection errors, timeouts, 429, 5xx) are retried with capped, jittered exponential
backoff honouring Retry-After; a POST only when it certainly never reached the server. 4xx and answers
that are not the API are permanent. requests' exceptions are translated here and never leak.
"""

from __future__ import annotations

import email.utils
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from runner.clients import tls
from runner.clients.auth import StaticToken, TokenSource
from runner.clients.retry import DEADLINE_S, RETRY_AFTER_CAP, backoff_delay
from runner.errors import Interrupted, ServerError, ServerUnavailable, ServerWriteUncertain

API_PREFIX = "/api/v0/"
PAGE_SIZE = 500  # large pages: a no-op plan lists a benchmark's models in one request
MAX_PAGES = 10_000


MAX_REDIRECTS = 5  # a GET follows at most this many redirects within the server's own origin
INTERRUPTED_DEADLINE_S = 5.0  # the status report sent after an interrupt waits no longer
MAX_BODY = 64 << 20  # an answer larger than this is not the registry's (its largest page is a few MiB)
_CHUNK = 1 << 16


class _Temporary(Exception):
    """A fault worth retrying; sent=False when the request certainly never reached the server."""

    def __init__(self, what: str, *, sent: bool, retry_after: float | None = None, status: int | None = None):
        super().__init__(what)
        self.what = what
        self.sent = sent
        self.retry_after = retry_after
        self.status = status


class _Overdue(Exception):
    """The whole request did not finish within the deadline."""


class _TLSAdapter(HTTPAdapter):
    """An adapter whose connections verify with our TLS context (a private CA, or the system's trust store)."""

    def __init__(self, context, **kw):
        self._context = context
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["ssl_context"] = self._context
        return super().init_poolmanager(*args, **kw)


def _ssl_reason(e: BaseException) -> BaseException:
    """The ssl module's own error inside requests' and urllib3's wrappers (it has the verify message)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ssl.SSLError):
            return e
        inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        e = getattr(e, "reason", None) or inner or e.__cause__ or e.__context__
    return e if e is not None else RuntimeError("TLS handshake failed")


class ApiClient:
    """Talks to {base_url}/api/v0/{path} with a bearer token; thread-safe for concurrent GETs.

    `token` is the token itself, or a TokenSource (server.oidc) asked before each request and, once, after a 401."""

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        before_send: Callable[[str, str, Mapping], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
        deadline: float = DEADLINE_S,
        max_body: int = MAX_BODY,
        interrupted: Callable[[], bool] = lambda: False,
        ca_file: Path | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(f"the server URL {base_url!r} is not an http(s) URL",
                              hint="set server.url in the manifest to e.g. http://127.0.0.1:8000")
        self._origin = (parts.scheme, parts.netloc)
        self._prefix = parts.path.rstrip("/") + API_PREFIX
        self.timeout = timeout
        self.deadline = deadline
        self.max_body = max_body
        self.interrupted = interrupted  # once true: no GET, and a body (before_send allows only an "interrupted"
        # status report) is sent once, with a short deadline
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.before_send = before_send
        self._sleep = sleep
        self.page_size = page_size
        self._random = random.Random()
        self._count_lock = threading.Lock()
        self.request_count = 0
        self.ca_file = ca_file
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            # Room for the pipeline's concurrent GETs; retries are ours, not urllib3's.
            session.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=8, max_retries=0))
            if parts.scheme == "https":
                session.mount("https://", _TLSAdapter(tls.context(ca_file), pool_connections=2, pool_maxsize=8,
                                                      max_retries=0))
        self._tokens = StaticToken(token) if isinstance(token, str) else token
        session.headers["Accept"] = "application/json"
        session.headers.setdefault("User-Agent", "medperf-apply")
        self.session = session

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
        if self._own_session:
            self.session.close()

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
        attempts = self.max_attempts
        if self.interrupted():
            if body is None:
                raise Interrupted(f"{method} {self._display(url)} not requested: the run was interrupted")
            attempts = 1
        last: _Temporary | None = None
        gave_up = ""
        for attempt in range(1, attempts + 1):
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
                if attempt == attempts:
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
        return backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap, rng=self._random,
                             retry_after=retry_after)

    def _once(self, method: str, url: str, data: bytes | None, headers: Mapping | None, redirects: int = 0,
              *, renewed: bool = False) -> Any:
        with self._count_lock:
            self.request_count += 1
        token = self._tokens.token()
        try:
            # Redirects are followed here, not by requests: only a GET, only within our own origin, so the
            # token never goes anywhere the manifest does not name.
            resp, content = self._exchange(method, url, data, {**(headers or {}), "Authorization": f"Bearer {token}"})
        except _Overdue as e:
            raise _Temporary(f"no complete answer within {self.deadline:g} s (the server answers too slowly)",
                             sent=True) from e
        except requests.exceptions.SSLError as e:
            raise tls.explain(_ssl_reason(e), url, self.ca_file) from e
        except requests.exceptions.ConnectTimeout as e:
            raise _Temporary(f"connection timed out after {self.timeout[0]:g} s", sent=False) from e
        except requests.exceptions.ConnectionError as e:
            reason = e.args[0].reason if e.args and hasattr(e.args[0], "reason") else None
            if isinstance(reason, urllib3.exceptions.NewConnectionError):
                raise _Temporary(f"cannot connect ({_short(reason)})", sent=False) from e
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError) or "timed out" in str(e):
                raise _Temporary(f"no answer within {self.timeout[1]:g} s", sent=True) from e
            if urlsplit(url).scheme == "http" and tls.speaks_tls(url):
                raise ServerError(f"{self.base_url} speaks HTTPS, not plain HTTP ({_short(e)})", where=self.base_url,
                                  hint=f"use https:// in server.url ({url.split('/api/')[0].replace('http://', 'https://', 1)}"
                                       "), with server.ca_file if its certificate authority is a private one") from e
            raise _Temporary(f"connection lost ({_short(e)})", sent=True) from e
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidHeader, requests.exceptions.TooManyRedirects) as e:
            raise ServerError(f"{method} {self._display(url)} cannot be sent: {_short(e)}", where=self.base_url,
                              hint="check server.url and the token (no spaces or line breaks)") from e
        except requests.exceptions.Timeout as e:
            raise _Temporary(f"no answer within {self.timeout[1]:g} s", sent=True) from e
        except requests.exceptions.RequestException as e:
            raise _Temporary(f"transport error ({_short(e)})", sent=True) from e

        status = resp.status_code
        if status == 401 and not renewed and self._tokens.refresh(token) is not None:
            # An access token that expired in flight, or was revoked: once more with a fresh one (401 means the
            # request was not processed, so a POST too is safe to send again).
            return self._once(method, url, data, headers, redirects, renewed=True)
        if status == 429 or status >= 500:
            ra = _retry_after(resp.headers.get("Retry-After"))
            what = f"HTTP {status}" + (f", asked to wait {ra:g} s" if ra is not None else "")
            detail = _message(content, resp.headers.get("Content-Type", ""))
            if detail:
                what += f": {detail}"
            # 429 says the request was refused unprocessed; a 5xx may have been half done.
            raise _Temporary(what, sent=status != 429, retry_after=ra, status=status)
        if 300 <= status < 400:
            location = urljoin(url, resp.headers.get("Location", ""))
            if method == "GET" and tuple(urlsplit(location)[:2]) == tuple(self._origin) and redirects < MAX_REDIRECTS:
                return self._once(method, location, data, headers, redirects + 1, renewed=renewed)
            raise ServerError(
                f"{method} {self._display(url)} was redirected to {resp.headers.get('Location', '?')}",
                status=status, where=self.base_url,
                hint="set server.url to the address the server redirects to (https?)",
            )
        if status >= 400:
            raise self._permanent(method, url, status, content, resp.headers.get("Content-Type", ""))
        if status == 204 or not content.strip():
            return {}
        ctype = resp.headers.get("Content-Type", "")
        try:
            if "json" not in ctype.lower():
                raise ValueError(ctype)
            return json.loads(content)
        except ValueError:
            raise self._not_api(url, status, ctype, content) from None

    def _exchange(self, method: str, url: str, data: bytes | None, headers: Mapping | None
                  ) -> tuple[requests.Response, bytes]:
        """Send and read the whole answer within the deadline (per-read timeouts alone let a server that trickles
        a byte at a time hold a command forever); the answer's size is bounded. The exchange runs in a daemon
        thread that is abandoned at the deadline: its socket times out on its own."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def exchange() -> None:
            try:
                resp = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                            allow_redirects=False, stream=True)
                with resp:
                    box["result"] = (resp, self._body(resp, url))
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=exchange, name="api-request", daemon=True).start()
        # Begun before an interrupt: abandoned at once when it comes. Begun after (the one status report that
        # marks a stopped task "interrupted"): bounded by a short deadline.
        abandon = not self.interrupted()
        deadline = time.monotonic() + (self.deadline if abandon else min(self.deadline, INTERRUPTED_DEADLINE_S))
        while not done.wait(0.1):
            if abandon and self.interrupted():
                raise Interrupted(f"{method} {self._display(url)} abandoned: the run was interrupted")
            if time.monotonic() >= deadline:
                raise _Overdue()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _body(self, resp: requests.Response, url: str) -> bytes:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large(url, int(declared))
        chunks, size = [], 0
        for chunk in resp.iter_content(_CHUNK):
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large(url, size)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: str, size: int) -> ServerError:
        return ServerError(f"the server's answer to {self._display(url)} is larger than {self.max_body >> 20} MiB "
                           f"({size:,} bytes or more): not the registry's API", where=self.base_url,
                           hint="check server.url: it must be the registry's root")

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
            hint = getattr(self._tokens, "hint", None)
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
    text = str(e)
    # urllib3 wraps the cause several levels deep; its last clause is the useful one.
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.strip(" ()'\"")[:160] or type(e).__name__


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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
