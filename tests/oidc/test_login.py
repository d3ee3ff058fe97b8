"""`medperf-apply login|logout` against the real provider: the device flow completed by a scripted user on the
provider's own pages, the credentials file private to the user, sign-ins that are gone (revoked, expired, missing,
signed out) ending with the login hint, Ctrl-C, and an unverified email that never becomes a registry user."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat

from tests.oidc.conftest import TTL, manifest_text
from tests.oidc.provider import CI_CLIENT, approve

LOGIN_HINT = "run `medperf-apply login`"


def test_login_runs_the_device_flow_and_keeps_the_tokens_private(site):
    run = site.login("testdo")
    assert run.code == 0, run.err
    assert "shows the code" in run.err and "/device" in run.err  # the page and the code, on stderr
    assert "Signed in to" in run.out and "as testdo@example.com" in run.out
    path = site.credentials_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["access_token"].count(".") == 2 and doc["refresh_token"] and doc["email"] == "testdo@example.com"
    assert doc["access_token"] not in run.out + run.err and doc["refresh_token"] not in run.out + run.err
    # The sign-in is the seeded data owner's: the plan sees the registry as testdo does.
    plan = site.run("plan")
    assert plan.code == 2, plan.err
    assert "+ register" in plan.out


def test_a_plan_without_a_sign_in_says_to_log_in(site):
    run = site.run("plan")
    assert run.code == 1
    assert "not signed in" in run.err and LOGIN_HINT in run.err
    assert "Traceback" not in run.err


def test_a_revoked_refresh_token_ends_with_the_login_hint(site):
    assert site.login("testdo").code == 0
    path = site.credentials_file()
    doc = json.loads(path.read_text())
    site.provider.revoke(doc["refresh_token"])
    doc["expires_at"] = 0  # the access token is due: the next command must refresh
    path.write_text(json.dumps(doc))
    run = site.run("plan")
    assert run.code == 1, run.out + run.err
    assert "refused the refresh token" in run.err and LOGIN_HINT in run.err
    status = site.run("status")
    assert status.code == 1 and LOGIN_HINT in status.err


def test_an_expired_refresh_token_ends_with_the_login_hint(site, provider):
    # `brief-` accounts get refresh tokens of OIDC_BRIEF_REFRESH_TTL (3 s) from the test provider.
    assert site.login("brief-testdo").code == 0
    import time

    time.sleep(max(TTL, 3) + 1.5)
    run = site.run("plan")
    assert run.code == 1
    assert "refused the refresh token" in run.err and LOGIN_HINT in run.err


def test_logout_revokes_the_refresh_token_and_deletes_the_file(site):
    assert site.login("testdo").code == 0
    path = site.credentials_file()
    refresh_token = json.loads(path.read_text())["refresh_token"]
    run = site.run("logout")
    assert run.code == 0, run.err
    assert "revoked" in run.out and not path.exists()
    answer = site.provider.refresh(refresh_token)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    again = site.run("logout")
    assert again.code == 0 and "Not signed in" in again.out
    plan = site.run("plan")
    assert plan.code == 1 and LOGIN_HINT in plan.err


def test_ctrl_c_stops_the_login_with_exit_130_and_nothing_stored(site):
    proc, page, code = site.start_login()
    proc.send_signal(signal.SIGINT)
    run = site.finish(proc)
    assert run.code == 130, run.err
    assert "not signed in" in run.err and "Traceback" not in run.err
    assert not list(site.credentials.glob("*.json"))


def test_sigterm_stops_the_login_as_ctrl_c_does(site):
    proc, page, code = site.start_login()
    proc.terminate()
    run = site.finish(proc)
    assert run.code == 130 and "not signed in" in run.err
    assert not list(site.credentials.glob("*.json"))


def test_an_unverified_email_never_becomes_the_registry_user_with_that_email(site, registry):
    """`unverified-testdo` has testdo's email, but the provider does not assert it verified: the registry refuses
    the sign-in instead of handing it testdo's records."""
    run = site.login("unverified-testdo")
    assert run.code == 0, run.err
    plan = site.run("plan")
    assert plan.code == 1
    assert "does not accept the token" in plan.err and "verified" in plan.err
    assert "Traceback" not in plan.err
    with sqlite3.connect(registry.db_url) as conn:
        rows = conn.execute("SELECT username FROM users WHERE email = ? OR username LIKE 'unverified-%'",
                            ("testdo@example.com",)).fetchall()
    assert rows == [("testdo@example.com",)]  # the seeded user, still unbound; no user made for the sign-in


def test_login_on_a_manifest_with_a_static_token_says_there_is_nothing_to_sign_in_to(site):
    site.write(manifest_text().replace(
        "  oidc:\n    issuer: {{ env.OIDC_ISSUER }}\n    client_id: medperf-apply\n"
        "    audience: https://registry.medperf-apply.test\n", "  token_env: MEDPERF_TOKEN\n"))
    run = site.run("login")
    assert run.code == 1 and "nothing to sign in to" in run.err and "server.oidc" in run.err


def test_login_with_a_client_secret_checks_the_secret_and_stores_nothing(site):
    site.write(manifest_text(client=CI_CLIENT, extra="client_secret_env: CI_SECRET"))
    run = site.run("login", env={**site.env, "CI_SECRET": "ci-secret"})
    assert run.code == 0, run.err
    assert "no sign-in is needed" in run.out
    assert not list(site.credentials.glob("*.json"))
    wrong = site.run("login", env={**site.env, "CI_SECRET": "wrong"})
    assert wrong.code == 1 and "refused the client" in wrong.err and "client_secret_env" in wrong.err


def test_the_page_shown_is_the_providers_and_works_without_the_complete_link(site):
    """A person who types the short page and the code by hand (not the link with the code in it) signs in too."""
    proc, page, code = site.start_login()
    short = page.split("?", 1)[0]
    assert short in proc.shown and code in proc.shown  # type: ignore[attr-defined]
    approve(f"{short}?user_code={code}", code, "testdo", verify=site.provider.verify)
    run = site.finish(proc)
    assert run.code == 0, run.err


