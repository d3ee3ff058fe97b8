"""The device flow's polling loop at its own seam: the provider's interval, `slow_down` adding 5 seconds for good
(RFC 8628 3.5), a declined or expired code said plainly, an unreachable provider polled again. The real provider
(tests/oidc/test_login.py) answers `slow_down` only to a client that polls too fast, which this one never does."""

from __future__ import annotations

import pytest

from runner.clients.auth import CredentialsFile
from runner.clients.oidc import device_login
from runner.errors import AuthError
from runner.model import OidcSpec

SPEC = OidcSpec(issuer="https://id.example", client_id="medperf-apply", audience="https://registry.example")
TOKENS = {"access_token": "a.b.c", "refresh_token": "r1", "expires_in": 60}


class ScriptedProvider:
    """Answers each poll from a script: (status, answer) pairs; None status: the provider was not reached."""

    issuer = SPEC.issuer

    def __init__(self, polls, interval: int | None = 2, expires_in: int = 600):
        self.polls = list(polls)
        self.start = {"device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "https://id.example/device",
                      "expires_in": expires_in, **({"interval": interval} if interval else {})}
        self.asked: list[tuple] = []

    def device_authorization(self, scopes, audience):
        self.asked.append((scopes, audience))
        return self.start

    def poll(self, device_code):
        assert device_code == "dc"
        return self.polls.pop(0)

    def error(self, status, body, what):
        return AuthError(f"refused {what}: {body.get('error')}")


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _login(tmp_path, provider, clock):
    store = CredentialsFile(tmp_path / "creds" / "x.json", SPEC)
    shown = []
    creds = device_login(SPEC, provider, store, show=shown.append, sleep=clock.sleep, clock=clock)
    return creds, shown, store


PENDING = (400, {"error": "authorization_pending"})
SLOW = (400, {"error": "slow_down"})


def test_polls_at_the_interval_and_slows_down_for_good_after_slow_down(tmp_path):
    provider = ScriptedProvider([PENDING, SLOW, PENDING, (None, {}), SLOW, (200, TOKENS)], interval=2)
    clock = Clock()
    creds, shown, store = _login(tmp_path, provider, clock)
    assert clock.sleeps == [2, 2, 7, 7, 7, 12]
    assert shown == [provider.start]
    assert provider.asked == [(SPEC.scopes, SPEC.audience)]
    assert creds.refresh_token == "r1" and store.read().access_token == "a.b.c"


def test_no_interval_means_five_seconds(tmp_path):
    clock = Clock()
    _login(tmp_path, ScriptedProvider([PENDING, (200, TOKENS)], interval=None), clock)
    assert clock.sleeps == [5, 5]


@pytest.mark.parametrize(("answer", "words"), [
    ((400, {"error": "access_denied"}), "declined"),
    ((400, {"error": "expired_token"}), "expired before the sign-in"),
    ((400, {"error": "invalid_client"}), "refused the device flow"),
])
def test_a_declined_expired_or_refused_code_ends_the_login(tmp_path, answer, words):
    with pytest.raises(AuthError) as e:
        _login(tmp_path, ScriptedProvider([PENDING, answer]), Clock())
    assert words in str(e.value)
    assert not (tmp_path / "creds" / "x.json").exists()


def test_the_code_expiring_while_waiting_ends_the_login(tmp_path):
    with pytest.raises(AuthError) as e:
        _login(tmp_path, ScriptedProvider([PENDING] * 10, interval=5, expires_in=12), Clock())
    assert "expired before the sign-in was completed" in str(e.value) and "medperf-apply login" in str(e.value)
