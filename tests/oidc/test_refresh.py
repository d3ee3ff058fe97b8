"""Every command renews the access token (3-second lifetimes here) before it expires and once after a 401, stores
the rotated refresh token, and never writes a token anywhere but the credentials file; CI's two variants (a refresh
token in the environment, a client secret); two commands refreshing one sign-in at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from runner.clients import oidc
from tests.oidc.conftest import TTL, cli_command, manifest_text
from tests.oidc.provider import BO_CLIENT, CI_CLIENT
from tests.runner.fakes import FakeRunner


class SlowRunner(FakeRunner):
    """The fake container runner, taking `seconds` per task: an apply long enough for several token lifetimes."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def run_task(self, spec, task, volumes, **kw):
        time.sleep(self.seconds)
        return super().run_task(spec, task, volumes, **kw)


@pytest.fixture
def refreshes(monkeypatch) -> list[dict]:
    """Every refresh answer the runner got from the provider (the real method, counted)."""
    seen: list[dict] = []
    real = oidc.Provider.refresh

    def counted(self, refresh_token, audience):
        answer = real(self, refresh_token, audience)
        seen.append(answer)
        return answer

    monkeypatch.setattr(oidc.Provider, "refresh", counted)
    return seen


def _bo_manifest(site) -> Path:
    """The benchmark owner's manifest: the same registry and provider, their own machine client."""
    path = site.root / "bo.yaml"
    path.write_text(manifest_text(client=BO_CLIENT, extra="client_secret_env: BO_SECRET").replace(
        "    data_path: raw/images", f"    data_path: {site.root}/raw/images").replace(
        "    labels_path: raw/labels", f"    labels_path: {site.root}/raw/labels"))
    return path


def test_apply_across_several_token_lifetimes_never_shows_a_401(site, refreshes):
    site.write(manifest_text(benchmarks=True))
    login = site.login("testdo")
    assert login.code == 0, login.err
    first = json.loads(site.credentials_file().read_text())
    runner = SlowRunner(seconds=TTL * 0.6)
    started = time.monotonic()
    gate = site.run("apply", "--yes", runner=runner)
    assert gate.code == 3, gate.out + gate.err  # registered, prepared, operational, associated: waits for approval
    # The benchmark owner approves with their own sign-in (client credentials), through the same CLI.
    bo_env = {**site.env, "BO_SECRET": "bo-secret"}
    (dataset,) = requests.get(f"{site.registry.api}/me/datasets/", timeout=10,
                              headers=site.registry.headers("testdo@example.com")).json()["results"]
    decision = site.run("association", "approve", "--benchmark", "chestxray", "--dataset", str(dataset["id"]),
                        "--manifest", str(_bo_manifest(site)), env=bo_env, manifest=False,
                        state_dir=site.root / "bo-state")
    assert decision.code == 0, decision.err
    done = site.run("apply", "--yes", runner=runner)
    elapsed = time.monotonic() - started
    assert done.code == 0, done.out + done.err
    assert elapsed > 3 * TTL, f"the runs took {elapsed:.1f} s, not several token lifetimes"
    assert len(refreshes) >= 3, f"{len(refreshes)} refreshes in {elapsed:.1f} s of {TTL}-second tokens"
    for text in site.outputs:
        assert "does not accept the token" not in text and "HTTP 401" not in text
    results = requests.get(f"{site.registry.api}/me/results/", timeout=10,
                           headers=site.registry.headers("testdo@example.com")).json()["results"]
    assert len(results) >= 2  # the reference model's and the second model's, submitted as testdo
    for command in ("status", "results"):
        shown = site.run(command)
        assert shown.code == 0, shown.err

    # Rotation: the file holds the latest refresh token; the login's was spent (a provider revokes the whole
    # sign-in when a spent one comes back: checked last).
    last = json.loads(site.credentials_file().read_text())
    assert last["refresh_token"] == refreshes[-1]["refresh_token"] != first["refresh_token"]
    assert site.provider.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"

    # No token anywhere but the credentials file: state dir (ledger, journal, results, logs), event log, outputs.
    tokens = {first["access_token"], first["refresh_token"]}
    tokens |= {a["access_token"] for a in refreshes} | {a["refresh_token"] for a in refreshes if "refresh_token" in a}
    files = [p for p in site.state_dir.rglob("*") if p.is_file()] + [site.events]
    assert (site.state_dir / "ledger.jsonl") in files and (site.state_dir / "journal.jsonl") in files
    leaks = [str(p) for p in files if any(t.encode() in p.read_bytes() for t in tokens)]
    leaks += [f"output {i}" for i, text in enumerate(site.outputs) if any(t in text for t in tokens)]
    assert leaks == []
    others = [p for p in site.credentials.rglob("*") if p.is_file() and p != site.credentials_file()]
    assert all(not any(t.encode() in p.read_bytes() for t in tokens) for p in others)


def test_a_401_from_the_registry_is_answered_by_one_refresh(site, refreshes):
    """The access token expires at the registry while the file still calls it fresh (clock skew, revocation):
    the 401 brings one refresh and the same request again."""
    assert site.login("testdo").code == 0
    time.sleep(TTL + 0.5)  # expired at the registry (no clock skew tolerated there)
    path = site.credentials_file()
    doc = json.loads(path.read_text())
    doc["expires_at"] = time.time() + 3600
    path.write_text(json.dumps(doc))
    run = site.run("plan")
    assert run.code == 2, run.err
    assert len(refreshes) == 1
    assert json.loads(path.read_text())["access_token"] == refreshes[0]["access_token"] != doc["access_token"]


def test_a_token_the_registry_keeps_refusing_is_reported_once_refreshed(site, refreshes):
    """One refresh, not a loop: a registry that refuses the fresh token too gets the server's reason."""
    run = site.login("unverified-testdo")
    assert run.code == 0
    plan = site.run("plan")
    assert plan.code == 1 and "verified" in plan.err
    assert len(refreshes) == 1


def test_ci_refresh_token_from_the_environment_then_its_rotations_from_the_file(site, provider, refreshes):
    handed = provider.device_tokens("testdo")["refresh_token"]
    site.write(manifest_text(extra="refresh_token_env: MEDPERF_REFRESH_TOKEN"))
    env = {**site.env, "MEDPERF_REFRESH_TOKEN": handed}
    first = site.run("plan", env=env)
    assert first.code == 2, first.err
    stored = json.loads(site.credentials_file().read_text())
    assert stored["seed"] == hashlib.sha256(handed.encode()).hexdigest()
    assert stored["refresh_token"] != handed
    # The next run (same secret in the environment) starts from the rotated token in the file: the handed one is
    # spent, and using it again would revoke the sign-in.
    stored["expires_at"] = 0
    site.credentials_file().write_text(json.dumps(stored))
    second = site.run("plan", env=env)
    assert second.code == 2, second.err
    assert json.loads(site.credentials_file().read_text())["refresh_token"] not in (handed, stored["refresh_token"])
    assert len(refreshes) >= 2  # more when a run outlasts a token
    # A new secret in the environment (a new sign-in) wins over the file.
    renewed = provider.device_tokens("testdo")["refresh_token"]
    third = site.run("plan", env={**env, "MEDPERF_REFRESH_TOKEN": renewed})
    assert third.code == 2, third.err
    assert json.loads(site.credentials_file().read_text())["seed"] == hashlib.sha256(renewed.encode()).hexdigest()
    missing = site.run("plan", env={k: v for k, v in env.items() if k != "MEDPERF_REFRESH_TOKEN"})
    assert missing.code == 2  # unset: the stored sign-in still serves
    site.credentials_file().unlink()
    gone = site.run("plan", env={k: v for k, v in env.items() if k != "MEDPERF_REFRESH_TOKEN"})
    assert gone.code == 1 and "MEDPERF_REFRESH_TOKEN" in gone.err and "medperf-apply login" in gone.err


def test_ci_client_credentials_act_as_the_clients_user_and_store_nothing(site, registry):
    site.write(manifest_text(client=CI_CLIENT, extra="client_secret_env: CI_SECRET").replace(
        "state: operational", "state: registered"))
    env = {**site.env, "CI_SECRET": "ci-secret"}
    run = site.run("apply", "--yes", env=env)
    assert run.code == 0, run.err
    time.sleep(TTL + 0.5)  # a new token for the next run
    again = site.run("plan", env=env)
    assert again.code == 0, again.err
    mine = requests.get(f"{registry.api}/me/datasets/", headers=registry.headers("testdo@example.com"),
                        timeout=10).json()["results"]
    assert [d["name"] for d in mine] == ["mytestdata"]  # the machine client's email is the data owner's
    assert not site.credentials.exists() or not list(site.credentials.glob("*.json"))
    unset = site.run("plan", env=site.env)
    assert unset.code == 1 and "CI_SECRET" in unset.err and "client_secret_env" in unset.err


def test_commands_refreshing_one_sign_in_at_once_spend_the_refresh_token_once(site):
    """With rotation, a refresh token used twice revokes the whole sign-in: the file's lock makes the later
    commands take the first one's fresh tokens instead. Each thread is one command's token source."""
    import threading

    from runner.clients.auth import CredentialsFile, OidcTokens
    from runner.load import load
    from runner.validate import validate

    assert site.login("testdo").code == 0
    path = site.credentials_file()
    doc = json.loads(path.read_text())
    doc["expires_at"] = 0
    path.write_text(json.dumps(doc))
    spec = validate(load([site.manifest], environ=site.env), check_paths=False).server.oidc
    barrier = threading.Barrier(4)
    got: list[str | Exception] = []

    def command() -> None:
        tokens = OidcTokens(spec, oidc.Provider(spec.issuer, spec.client_id),
                                 CredentialsFile.of(spec, site.env), site.env)
        barrier.wait()
        try:
            got.append(tokens.token())
        except Exception as e:  # noqa: BLE001 - reported below
            got.append(e)

    threads = [threading.Thread(target=command) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(g, str) for g in got) and len(got) == 4, got
    assert len(set(got)) == 1  # one refresh; the others read its result
    later = json.loads(path.read_text())
    assert site.provider.refresh(later["refresh_token"]).status_code == 200  # the sign-in is intact


def test_a_plan_in_another_process_uses_the_stored_sign_in(site):
    """The console script, as a shell runs it: the sign-in of `login` serves a later process."""
    assert site.login("testdo").code == 0
    proc = subprocess.run([*cli_command(), "plan", str(site.manifest), "--state-dir", str(site.state_dir)],
                          env=site.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
