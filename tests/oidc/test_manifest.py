"""server.oidc in the manifest: what it becomes (ServerSpec.oidc with its defaults), and each mistake said at its
line with the fix. No provider needed."""

from __future__ import annotations

import pytest

from runner.errors import InvalidManifest
from runner.load import load
from runner.model import OidcSpec
from runner.validate import validate

HEAD = "apiVersion: medperf-apply/v1\nkind: DataOwner\nserver:\n  url: https://registry.example\n"


def _validate(tmp_path, server: str):
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + server + "datasets: []\n")
    return validate(load([path]))


def test_an_oidc_server_section_becomes_the_spec_with_default_scopes(tmp_path):
    m = _validate(tmp_path, "  oidc:\n    issuer: https://login.example.org/\n    client_id: medperf-apply\n"
                            "    audience: https://registry.example\n")
    assert m.server.oidc == OidcSpec(issuer="https://login.example.org/", client_id="medperf-apply",
                                     audience="https://registry.example")
    assert m.server.oidc.scopes == ("openid", "email", "offline_access")
    assert m.server.token_env is None and m.server.token_file is None
    ci = _validate(tmp_path, "  oidc: {issuer: 'https://id.example', client_id: ci, scopes: [api], "
                             "client_secret_env: CI_SECRET}\n")
    assert ci.server.oidc.scopes == ("api",) and ci.server.oidc.client_secret_env == "CI_SECRET"


@pytest.mark.parametrize(("server", "said"), [
    ("  token_env: T\n  oidc: {issuer: 'https://id.example', client_id: x}\n",
     "server: give exactly one of 'token_env' or 'token_file', or an 'oidc' sign-in"),
    ("  oidc: {issuer: 'https://id.example'}\n", "server.oidc: missing required key 'client_id'"),
    ("  oidc: {issuer: 'https://id.example', client_id: x, refresh_token_env: A, client_secret_env: B}\n",
     "server.oidc: give at most one of 'refresh_token_env' or 'client_secret_env'"),
    ("  oidc: {issuer: id.example, client_id: x}\n", "server.oidc.issuer: 'id.example' is not an http(s) URL"),
    ("  oidc: {issuer: 'https://id.example', client_id: x, scopes: ['openid email']}\n",
     "server.oidc.scopes[0]: 'openid email' is not one scope"),
    ("  oidc: {issuer: 'https://id.example', client_id: x, refresh_token_env: 'eyJ.abc'}\n",
     "server.oidc.refresh_token_env: 'eyJ.abc' is not an environment variable name"),
    ("  oidc: {issuer: 'https://id.example', client_id: x, secret: s}\n",
     "server.oidc.secret: unknown key 'secret'"),
])
def test_each_mistake_is_said_at_its_place(tmp_path, server, said):
    with pytest.raises(InvalidManifest) as e:
        _validate(tmp_path, server)
    (problem,) = e.value.problems
    assert said in str(problem), str(problem)
    assert str(problem).startswith(str(tmp_path / "m.yaml") + ":")
