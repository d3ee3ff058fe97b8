"""The whole tutorial as a deployment runs it: the registry over HTTPS (medperf-server's own TLS, a private CA in
server.ca_file) trusting the real OpenID provider (also over HTTPS, same CA), the data owner and the benchmark owner
each signed in with the device flow, the real Docker engine running the chest X-ray containers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.oidc.conftest import Site
from tests.oidc.provider import AUDIENCE, start_provider
from tests.support.images import COMPONENTS, require_images
from tests.support.tls import make_certs

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "manifests" / "chestxray-tutorial.yaml"
TTL = 5

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SERVER = """\
server:
  url: {{ env.MEDPERF_SERVER }}
  ca_file: ../certs/ca.pem
  oidc:
    issuer: {{ env.OIDC_ISSUER }}
    client_id: medperf-apply
    audience: AUDIENCE
"""


def _tutorial_manifest() -> str:
    text = TUTORIAL.read_text()
    start, end = text.index("server:\n"), text.index("datasets:\n")
    return text[:start] + SERVER.replace("AUDIENCE", AUDIENCE) + text[end:]


def test_the_tutorial_over_https_with_oidc_sign_ins(tmp_path, docker_client):
    require_images()
    from server.loopback import live_server

    certs = make_certs(tmp_path / "certs")
    provider = start_provider(tmp_path / "oidc", access_ttl=TTL, interval=1, cert=certs.cert, key=certs.key,
                              ca=certs.ca)
    try:
        settings = {**provider.registry_settings(), "jwt_jwks_ca_file": str(certs.ca)}
        with live_server(components=COMPONENTS, certfile=certs.cert, keyfile=certs.key, settings=settings) as srv:
            assert srv.url.startswith("https://")
            _tutorial(tmp_path, provider, srv, certs)
    finally:
        provider.stop()


def _tutorial(tmp_path, provider, srv, certs):
    site = Site(tmp_path / "site", provider, srv)
    (site.root / "manifests").mkdir()
    site.manifest = site.root / "manifests" / "chestxray-tutorial.yaml"
    site.manifest.write_text(_tutorial_manifest())
    (site.root / "certs").symlink_to(certs.ca.parent)
    raw = site.root / "medperf_tutorial" / "sample_raw_data"
    subprocess.run([sys.executable, str(REPO / "examples" / "chestxray" / "make_data.py"), "--out", str(raw),
                    "--cases", "24"], check=True, capture_output=True, timeout=120)

    login = site.login("testdo")  # the provider is https with the private CA: server.ca_file is trusted for it
    assert login.code == 0, login.err
    gate = site.run("apply", "--yes")
    assert gate.code == 3, gate.out + gate.err
    assert "waits for the benchmark owner to approve dataset mytestdata" in gate.out

    # The benchmark owner signs in as themself (their own credentials folder) and approves through the same CLI.
    bo = Site(tmp_path / "bo", provider, srv)
    bo.manifest = site.manifest
    assert bo.login("testbo").code == 0
    decision = bo.run("association", "approve", "--benchmark", "chestxray", "--dataset", "mytestdata",
                      "--manifest", str(site.manifest), manifest=False)
    assert decision.code == 0, decision.err
    assert "APPROVED" in decision.out

    done = site.run("apply", "--yes")
    assert done.code == 0, done.out + done.err
    converged = site.run("plan")
    assert converged.code == 0, converged.out + converged.err

    mine = requests.get(f"{srv.api}/me/results/", headers=srv.headers("testdo@example.com"), verify=str(certs.ca),
                        timeout=10).json()["results"]
    assert len(mine) >= 2 and all(r["finalized"] for r in mine)  # the reference model's and the second model's
    for text in site.outputs + bo.outputs:
        assert "does not accept the token" not in text and "Traceback" not in text
    tokens = {v for creds in (site, bo) for k, v in json.loads(creds.credentials_file().read_text()).items()
              if k in ("access_token", "refresh_token")}
    files = [p for p in site.state_dir.rglob("*") if p.is_file() and "predictions" not in p.parts] + [site.events]
    assert not [str(p) for p in files if any(t.encode() in p.read_bytes() for t in tokens)]
