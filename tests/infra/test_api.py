"""The registry client over a real loopback socket, against a server that injects faults."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from runner.clients.api import ApiClient
from runner.errors import PrivacyViolation, ServerError, ServerUnavailable, ServerWriteUncertain
from runner.privacy import check_body
from tests.infra.fault_server import Answer, FaultServer, free_port

# Connect and read timeouts. A read timeout fires only where a test makes the server late (by LATE): elsewhere it
# is roomy, so a loaded machine answering slowly is not mistaken for a fault (an extra retry would change counts).
ROOMY = (5.0, 10.0)
SHORT = (5.0, 1.0)
LATE = SHORT[1] + 1.0


class Sleeps(list):
    """Records the client's back-off pauses instead of sleeping them (optionally doing something)."""

    def __init__(self, then=None):
        super().__init__()
        self.then = then

    def __call__(self, seconds):
        self.append(seconds)
        if self.then:
            self.then()


@pytest.fixture
def server():
    with FaultServer() as s:
        s.routes[("GET", "/api/v0/benchmarks/1/")] = Answer(200, {"id": 1, "name": "chestxray"})
        s.routes[("POST", "/api/v0/datasets/")] = lambda seen: Answer(201, {"id": 7, **seen.body})
        s.routes[("PUT", "/api/v0/datasets/7/")] = lambda seen: Answer(200, {"id": 7, **seen.body})
        yield s


def client(server_or_url, **kw):
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    kw.setdefault("timeout", ROOMY)
    kw.setdefault("sleep", Sleeps())
    return ApiClient(url, "tok-123", **kw)


def test_get_sends_the_token_and_decodes_json(server):
    with client(server) as api:
        assert api.get("benchmarks/1/") == {"id": 1, "name": "chestxray"}
        assert api.get("/api/v0/benchmarks/1/")["id"] == 1
        assert api.request_count == 2
    assert server.seen[0].headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(api)


def test_temporary_faults_are_retried_with_capped_backoff(server):
    server.push(Answer(503, {"detail": "busy"}), Answer(500, raw=b"oops", content_type="text/plain"),
                Answer(502, raw=b"<html>bad gateway</html>", content_type="text/html"))
    sleeps = Sleeps()
    with client(server, sleep=sleeps, backoff_base=0.5, backoff_cap=0.8) as api:
        assert api.get("benchmarks/1/")["name"] == "chestxray"
        assert api.request_count == 4
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.4 <= sleeps[1] <= 0.8 and 0.4 <= sleeps[2] <= 0.8  # capped


def test_retry_after_is_honoured(server):
    server.push(Answer(429, {"detail": "slow down"}, headers={"Retry-After": "3"}))
    sleeps = Sleeps()
    with client(server, sleep=sleeps) as api:
        api.get("benchmarks/1/")
    assert sleeps and sleeps[0] >= 3


def _http_date(seconds_from_now: float) -> str:
    import email.utils
    from datetime import UTC, datetime, timedelta

    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


def test_retry_after_as_an_http_date_is_honoured(server):
    """Retry-After may be a date (RFC 9110): the pause lasts until then (the date has whole seconds)."""
    server.push(Answer(503, {"detail": "maintenance"}, headers={"Retry-After": _http_date(30)}))
    sleeps = Sleeps()
    with client(server, sleep=sleeps) as api:
        assert api.get("benchmarks/1/")["name"] == "chestxray"
    assert len(sleeps) == 1 and 20 <= sleeps[0] <= 30, sleeps  # not the default back-off (under a second)


@pytest.mark.parametrize("value", [_http_date(-3600), "not a date", ""], ids=["past", "garbage", "empty"])
def test_a_retry_after_date_in_the_past_or_unreadable_falls_back_to_the_backoff(server, value):
    server.push(Answer(503, {"detail": "busy"}, headers={"Retry-After": value}))
    sleeps = Sleeps()
    with client(server, sleep=sleeps, backoff_base=0.5) as api:
        assert api.get("benchmarks/1/")["name"] == "chestxray"
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5, sleeps


def test_a_retry_after_date_beyond_reason_gives_up_at_once(server):
    server.push(Answer(503, {"detail": "maintenance"}, headers={"Retry-After": _http_date(7200)}))
    sleeps = Sleeps()
    with client(server, sleep=sleeps) as api, pytest.raises(ServerUnavailable) as e:
        api.get("benchmarks/1/")
    assert sleeps == [] and "wait more than" in str(e.value)


def test_a_retry_after_beyond_reason_gives_up_at_once(server):
    server.push(Answer(503, {"detail": "maintenance"}, headers={"Retry-After": "7200"}))
    sleeps = Sleeps()
    with client(server, sleep=sleeps) as api, pytest.raises(ServerUnavailable) as e:
        api.get("benchmarks/1/")
    assert sleeps == [] and "wait more than" in str(e.value)


def test_a_server_that_stays_down_fails_after_bounded_attempts(server):
    server.push(*[Answer(500, {"detail": "database is locked"})] * 10)
    sleeps = Sleeps()
    with client(server, max_attempts=3, sleep=sleeps) as api, pytest.raises(ServerUnavailable) as e:
        api.get("benchmarks/1/")
    assert len(server.seen) == 3 and len(sleeps) == 2  # every pause between the attempts went through `sleep`
    text = str(e.value)
    assert server.url in text and "/api/v0/benchmarks/1/" in text
    assert "HTTP 500" in text and "database is locked" in text and "run again" in text
    assert not isinstance(e.value, ServerWriteUncertain)


def test_nothing_listening_is_server_unavailable(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with client(url, max_attempts=2) as api, pytest.raises(ServerUnavailable) as e:
        api.get("me/")
    assert "cannot connect" in str(e.value) and url in str(e.value)
    assert isinstance(e.value.__cause__, Exception) and not isinstance(e.value, requests.RequestException)


def test_slow_answers_and_resets_are_retried_for_get(server):
    server.push(Answer(200, {"late": True}, delay=LATE), Answer(reset=True), Answer(close=True))
    with client(server, timeout=SHORT) as api:
        assert api.get("benchmarks/1/")["name"] == "chestxray"
        assert api.request_count == 4


def test_put_is_retried(server):
    server.push(Answer(502, raw=b"", content_type="text/plain"), Answer(reset=True))
    sent = []
    with client(server, before_send=lambda m, p, b: sent.append((m, p))) as api:
        body = {"report": {"execution_status": "started", "progress": {}}}
        assert api.update("datasets/7/", body)["report"] == body["report"]
    assert len(server.requests_to("PUT")) == 3
    assert sent == [("PUT", "datasets/7/")]  # checked and recorded once, whatever the retries


REGISTER = {"name": "d", "input_data_hash": "a" * 64, "generated_uid": "a" * 64, "data_preparation_mlcube": 2}


@pytest.mark.parametrize("fault", [
    Answer(500, {"detail": "boom"}),
    Answer(503, raw=b"<html>Service Unavailable</html>", content_type="text/html"),
    Answer(201, {"id": 7}, delay=LATE),                   # landed, but the answer came too late
    Answer(reset=True),
    Answer(close=True),
], ids=["500", "503-html", "read-timeout", "reset", "closed"])
def test_a_post_that_may_have_landed_is_not_repeated(server, fault):
    server.push(fault)
    with client(server, timeout=SHORT) as api, pytest.raises(ServerWriteUncertain) as e:
        api.create("datasets/", REGISTER)
    # a repeated POST would be on record already: the client waits for each answer before create() returns
    assert len(server.requests_to("POST")) == 1
    assert "may or may not have been applied" in str(e.value) and "observed first" in str(e.value)
    assert isinstance(e.value, ServerUnavailable)  # callers that only know ServerUnavailable still stop


def test_a_post_refused_with_429_is_retried(server):
    server.push(Answer(429, {"detail": "Request was throttled."}, headers={"Retry-After": "0"}))
    with client(server) as api:
        assert api.create("datasets/", REGISTER)["id"] == 7
    assert len(server.requests_to("POST")) == 2


def test_a_post_that_could_not_connect_is_retried_once_the_server_is_up():
    port = free_port()
    late = FaultServer(port)
    late.routes[("POST", "/api/v0/datasets/")] = Answer(201, {"id": 9})
    sleeps = Sleeps(then=lambda: late._httpd or late.start())  # the server comes up during the back-off
    try:
        with client(f"http://127.0.0.1:{port}", sleep=sleeps) as api:
            assert api.create("datasets/", REGISTER) == {"id": 9}
            assert api.request_count == 2  # one refused, one delivered
        assert len(late.requests_to("POST")) == 1 and len(sleeps) == 1
    finally:
        late.stop()


def test_before_send_refusal_sends_nothing(server):
    with client(server, before_send=check_body) as api, pytest.raises(PrivacyViolation):
        api.create("datasets/", {**REGISTER, "raw_path": "/home/alice/data"})
    assert server.seen == [] and api.request_count == 0


@pytest.mark.parametrize("answer", [
    Answer(200, raw=b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>", content_type="text/html"),
    Answer(200, raw=b"{not json", content_type="application/json"),
    Answer(200, raw=b"\x00\x01\x02binary", content_type="application/octet-stream"),
    Answer(404, raw=b"<html>404 Not Found</html>", content_type="text/html"),
], ids=["html", "broken-json", "binary", "html-404"])
def test_an_answer_that_is_not_the_api_is_reported_not_crashed_on(server, answer):
    server.push(answer)
    with client(server) as api, pytest.raises(ServerError) as e:
        api.get("benchmarks/1/")
    text = str(e.value)
    assert "not MedPerf's API" in text and "content-type" in text and server.url in text
    assert not isinstance(e.value, ServerUnavailable)
    assert len(server.seen) == 1  # permanent: not retried


def test_validation_errors_are_flattened_into_one_line(server):
    server.push(Answer(400, {"name": ["This field is required."],
                             "non_field_errors": ["An Operational dataset with the same generated UID already exists"],
                             "metadata": {"test_result": ["Not a valid dict."]}}))
    with client(server) as api, pytest.raises(ServerError) as e:
        api.create("datasets/", REGISTER)
    assert e.value.status == 400 and e.value.body["name"] == ["This field is required."]
    text = str(e.value)
    assert "\n" not in text
    assert "name: This field is required." in text
    assert "An Operational dataset with the same generated UID already exists" in text
    assert "metadata.test_result: Not a valid dict." in text
    assert len(server.seen) == 1


@pytest.mark.parametrize("status, words", [
    (401, ["token_env", "token_file"]),
    (403, ["not allowed to GET /api/v0/benchmarks/1/models/", "own"]),
    (404, ["/api/v0/benchmarks/1/models/ does not exist"]),
])
def test_permission_errors_say_what_to_do(server, status, words):
    server.push(Answer(status, {"detail": "Authentication credentials were not provided."}))
    with client(server) as api, pytest.raises(ServerError) as e:
        api.get("benchmarks/1/models/")
    assert e.value.status == status and not isinstance(e.value, ServerUnavailable)
    for w in words:
        assert w in str(e.value)


def paginated(items, cap=25, next_host="http://internal-name:9999"):
    """A MedPerf-style limit/offset list whose `next` names the server as it sees itself."""
    def route(seen):
        limit = min(int(seen.query.get("limit", 32)), cap)
        offset = int(seen.query.get("offset", 0))
        page = items[offset:offset + limit]
        nxt = f"{next_host}{seen.path}?limit={limit}&offset={offset + limit}" if offset + limit < len(items) else None
        prev = f"{next_host}{seen.path}?limit={limit}&offset={max(0, offset - limit)}" if offset else None
        return Answer(200, {"count": len(items), "next": nxt, "previous": prev, "results": page})
    return route


def test_list_follows_pagination_on_our_own_origin(server):
    items = [{"id": i} for i in range(1, 71)]
    server.routes[("GET", "/api/v0/me/datasets/")] = paginated(items)
    with client(server) as api:
        assert api.list("me/datasets/") == items
        assert api.request_count == 3  # 25 + 25 + 20
    assert [s.query["offset"] for s in server.seen] == ["0", "25", "50"]


def test_list_of_a_short_list_is_one_request(server):
    server.routes[("GET", "/api/v0/benchmarks/1/models/")] = paginated([{"model": i} for i in range(100)], cap=1000)
    with client(server) as api:
        assert len(api.list("benchmarks/1/models/")) == 100
        assert api.request_count == 1


def test_list_accepts_a_plain_list_and_refuses_nonsense(server):
    server.routes[("GET", "/api/v0/datasets/1/benchmarks/1/")] = Answer(200, [{"approval_status": "PENDING"}])
    server.routes[("GET", "/api/v0/me/")] = Answer(200, {"id": 3})
    with client(server) as api:
        assert api.list("datasets/1/benchmarks/1/") == [{"approval_status": "PENDING"}]
        with pytest.raises(ServerError, match="did not answer with a list or a page of one") as e:
            api.list("me/")
        assert not isinstance(e.value, ServerUnavailable) and "is this a MedPerf v0 server?" in str(e.value)


def test_list_retries_a_page_that_failed(server):
    items = [{"id": i} for i in range(60)]
    route = paginated(items)
    calls = []

    def flaky(seen):
        calls.append(seen.query.get("offset"))
        return Answer(503, {"detail": "busy"}) if len(calls) == 2 else route(seen)

    server.routes[("GET", "/api/v0/me/results/")] = flaky
    with client(server) as api:
        assert api.list("me/results/") == items
    assert calls == ["0", "25", "25", "50"]


def test_concurrent_gets_share_one_client(server):
    import threading

    # The first four requests answer only once all four have arrived: a client that sent them one after another
    # would leave the meeting broken (each waits up to 10 s, then answers anyway).
    meeting = threading.Barrier(4, timeout=10)
    arrived = iter(range(48))

    def side_by_side(seen):
        if next(arrived) < 4:
            try:
                meeting.wait()
            except threading.BrokenBarrierError:
                pass
        return Answer(200, {"ok": True})

    server.routes[("GET", "/api/v0/slow/")] = side_by_side
    with client(server) as api, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: api.get("slow/"), range(48)))
        assert results == [{"ok": True}] * 48
        assert api.request_count == 48
    assert not meeting.broken  # they really ran side by side


def test_redirects_of_writes_are_reported(server):
    server.push(Answer(301, raw=b"", headers={"Location": "https://elsewhere/api/v0/datasets/"}))
    with client(server) as api, pytest.raises(ServerError) as e:
        api.create("datasets/", REGISTER)
    assert "redirected to https://elsewhere" in str(e.value)


def test_a_request_that_cannot_be_built_is_permanent_and_translated(server):
    with ApiClient(server.url, "tok\nen", timeout=ROOMY, sleep=Sleeps()) as api, pytest.raises(ServerError) as e:
        api.get("benchmarks/1/")
    assert "cannot be sent" in str(e.value) and not isinstance(e.value, ServerUnavailable)
    assert isinstance(e.value.__cause__, requests.RequestException)
    assert server.seen == []


def test_a_keep_alive_connection_the_server_closed_while_idle_is_not_written_to():
    """The server answers, then closes the idle connection (its keep-alive timeout): the next POST opens a new
    connection instead of failing on the dead one as a write that may have landed."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    posts = []
    closed = threading.Event()

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                posts.append(head.split(b" ")[0])
                reply = b'{"id": 7}'
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(reply)).encode() + b"\r\n\r\n" + reply)
            closed.set()  # closed (on leaving the with) while the client holds it idle in its pool

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with client(f"http://127.0.0.1:{port}") as api:
            assert api.create("datasets/", REGISTER) == {"id": 7}
            assert closed.wait(10)
            assert api.create("datasets/", REGISTER) == {"id": 7}
            assert api.request_count == 2
        assert posts == [b"POST", b"POST"]
    finally:
        t.join(timeout=5)
        listener.close()


def test_http_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it(server, monkeypatch):
    for k in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{server.port}")
    with client("http://registry.invalid:8000") as api:  # resolvable only through the proxy
        assert api.get("benchmarks/1/")["name"] == "chestxray"
    seen = server.seen[-1]
    assert seen.headers["Proxy-Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert seen.headers["Authorization"] == "Bearer tok-123"
    monkeypatch.setenv("NO_PROXY", "registry.invalid")
    with client("http://registry.invalid:8000", max_attempts=1) as api, pytest.raises(ServerUnavailable):
        api.get("benchmarks/1/")
    assert len(server.seen) == 1


def test_a_get_follows_a_redirect_only_within_the_server(monkeypatch):
    """A missing trailing slash answered by a 301 to the same server is followed; one to another host is not."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    paths = []

    def serve():
        answers = [
            b"HTTP/1.1 301 Moved\r\nLocation: /api/v0/benchmarks/1/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n'
            b'{"id": 1}',
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/steal\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n",
        ]
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                paths.append(data.split(b" ")[1].decode())
                conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with client(f"http://127.0.0.1:{port}", max_attempts=1) as api:
            assert api.get("benchmarks/1") == {"id": 1}
            with pytest.raises(ServerError) as e:
                api.get("benchmarks/2/")
        assert "redirected to http://elsewhere.invalid/steal" in str(e.value)
        assert paths == ["/api/v0/benchmarks/1", "/api/v0/benchmarks/1/", "/api/v0/benchmarks/2/"]
    finally:
        t.join(timeout=5)
        listener.close()
