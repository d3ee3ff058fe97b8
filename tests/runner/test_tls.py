"""TLS against the real registry served over HTTPS (medperf-server's own TLS) with a test CA: a private CA in
server.ca_file or --ca-file works; without it, or with the wrong one, an expired certificate or another name, the
error says what failed and the fix, at once, without retries; a wrong scheme gets its hint."""

from __future__ import annotations

import pytest
import requests

from server.loopback import live_server
from tests.runner.conftest import MANIFEST
from tests.support.clients import Pauses, real_clients_pausing
from tests.support.tls import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def https_server(certs):
    with live_server(certfile=certs.cert, keyfile=certs.key) as srv:
        yield srv


def _workspace(ws, url: str, ca_file=None):
    text = MANIFEST.replace('{{ env.MEDPERF_SERVER | default("http://registry.test:8000") }}', url)
    if ca_file is not None:
        text = text.replace("  token_env: MEDPERF_TOKEN\n", f"  token_env: MEDPERF_TOKEN\n  ca_file: {ca_file}\n")
    ws.manifest.write_text(text)


def _run_real(ws, *args, clients=None):
    """The CLI with its real clients (real HTTP and TLS), in-process."""
    import io

    from runner.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "--state-dir", str(ws.state_dir)], stdout=out, stderr=err, stdin=io.StringIO(""),
                environ=ws.environ, clients=clients)
    return code, out.getvalue(), err.getvalue()


def test_a_private_ca_in_the_manifest_or_on_the_command_line_is_trusted(ws, https_server, certs):
    ws.environ["MEDPERF_TOKEN"] = https_server.tokens["testdo@example.com"]
    _workspace(ws, https_server.url, certs.ca)
    code, out, err = _run_real(ws, "plan", str(ws.manifest))
    assert code == 2, err
    assert "+ register" in out
    _workspace(ws, https_server.url)
    code, out, err = _run_real(ws, "plan", str(ws.manifest), "--ca-file", str(certs.ca))
    assert code == 2, err


@pytest.mark.parametrize(("case", "words"), [
    ("no ca_file", ["unknown authority", "server.ca_file"]),
    ("another CA", ["unknown authority", "does not hold the CA"]),
])
def test_an_unknown_authority_fails_at_once_with_the_fix(ws, https_server, certs, case, words):
    ws.environ["MEDPERF_TOKEN"] = https_server.tokens["testdo@example.com"]
    _workspace(ws, https_server.url, certs.other_ca if case == "another CA" else None)
    pauses = Pauses()  # the real clients' back-off, recorded instead of slept
    code, out, err = _run_real(ws, "plan", str(ws.manifest), clients=real_clients_pausing(ws.environ, pauses))
    assert pauses == []  # no retry: not one back-off pause before giving up
    assert code == 1
    assert "certificate" in err and all(w in err for w in words), err
    assert "Traceback" not in err and "failed 5 times" not in err


@pytest.mark.parametrize(("which", "words"), [("expired_cert", ["expired"]),
                                             ("wrong_name_cert", ["not for that name", "server.url"])])
def test_an_expired_or_misnamed_certificate_says_so(ws, certs, which, words):
    with live_server(certfile=getattr(certs, which), keyfile=certs.key) as srv:
        ws.environ["MEDPERF_TOKEN"] = srv.tokens["testdo@example.com"]
        _workspace(ws, srv.url, certs.ca)
        code, out, err = _run_real(ws, "plan", str(ws.manifest))
    assert code == 1
    assert "certificate" in err and all(w in err for w in words), err


def test_http_to_a_tls_port_and_https_to_a_plain_one_each_get_their_hint(ws, https_server, certs):
    ws.environ["MEDPERF_TOKEN"] = https_server.tokens["testdo@example.com"]
    _workspace(ws, https_server.url.replace("https://", "http://"))
    code, out, err = _run_real(ws, "plan", str(ws.manifest))
    assert code == 1 and "use https://" in err, err
    with live_server() as plain:
        ws.environ["MEDPERF_TOKEN"] = plain.tokens["testdo@example.com"]
        _workspace(ws, plain.url.replace("http://", "https://"))
        code, out, err = _run_real(ws, "plan", str(ws.manifest))
    assert code == 1 and "does not speak HTTPS" in err and "use http://" in err, err


def test_any_https_client_with_the_ca_reaches_the_server(https_server, certs):
    """What MedPerf's own CLI does with a profile's --certificate: plain requests verifying with the CA."""
    r = requests.get(f"{https_server.api}/me/", headers=https_server.headers("testdo@example.com"),
                     verify=str(certs.ca), timeout=10)
    assert r.status_code == 200 and r.json()["email"] == "testdo@example.com"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https_server.api}/me/", verify=str(certs.other_ca), timeout=10)


def test_a_client_that_connects_and_says_nothing_holds_no_other_clients_handshake(https_server, certs):
    """The TLS handshake runs in the worker serving the connection, not in the server's accepting thread."""
    import socket

    port = int(https_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)):  # connected, no ClientHello
        r = requests.get(f"{https_server.api}/me/", headers=https_server.headers("testdo@example.com"),
                         verify=str(certs.ca), timeout=10)
    assert r.status_code == 200
