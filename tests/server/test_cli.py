"""medperf-server's command line, in-process: user create, seed (tokens file, components file), errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from server.cli import main
from server.seed import PLACEHOLDER_IMAGE_HASH, default_components
from tests.support.server import inprocess_session


def app_for(db_url):
    from server.app import make_app
    from server.settings import Settings

    return make_app(Settings(db_url=db_url))


def test_user_create_prints_only_the_token(db_url, capsys):
    assert main(["--db", db_url, "user", "create", "--email", "new@example.com", "--admin"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    secret = out.strip()
    r = inprocess_session(app_for(db_url)).get("http://x/api/v0/me/", headers={"Authorization": f"Bearer {secret}"})
    assert r.json()["email"] == "new@example.com" and r.json()["is_admin"] is True
    assert main(["--db", db_url, "user", "create", "--email", "new@example.com"]) == 1
    assert "already exists" in capsys.readouterr().err
    # another token for the same user; both work
    assert main(["--db", db_url, "user", "token", "--email", "new@example.com"]) == 0
    second = capsys.readouterr().out.strip()
    assert second != secret
    r = inprocess_session(app_for(db_url)).get("http://x/api/v0/me/", headers={"Authorization": f"Bearer {second}"})
    assert r.json()["email"] == "new@example.com"
    assert main(["--db", db_url, "user", "token", "--email", "nobody@example.com"]) == 1


def test_seed_writes_the_tokens_file_and_prints_its_path(db_url, tmp_path, capsys):
    tokens_file = tmp_path / "out" / "tokens.json"
    assert main(["--db", db_url, "seed", "--demo", "data", "--tokens-file", str(tokens_file)]) == 0
    assert capsys.readouterr().out.strip() == str(tokens_file.resolve())
    tokens = json.loads(tokens_file.read_text())
    assert sorted(tokens) == sorted(["testadmin@example.com", "testbo@example.com", "testmo@example.com",
                                     "testdo@example.com", "testdo2@example.com"])
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    session = inprocess_session(app_for(db_url))
    r = session.get("http://x/api/v0/benchmarks/1/", headers={"Authorization": f"Bearer {tokens['testdo@example.com']}"})
    assert r.json()["name"] == "chestxray"
    prep = session.get("http://x/api/v0/mlcubes/1/", headers={"Authorization": f"Bearer {tokens['testdo@example.com']}"})
    assert prep.json()["image_hash"] == PLACEHOLDER_IMAGE_HASH
    assert prep.json()["container_config"]["image"] == "medperf-apply/chestxray-prep:latest"
    # seeding again is refused with a message, not a traceback
    assert main(["--db", db_url, "seed", "--demo", "data", "--tokens-file", str(tokens_file)]) == 1
    assert "already has users" in capsys.readouterr().err


def test_seed_uses_the_components_file_and_registers_its_files_by_http(tmp_path, capsys):
    components = default_components()
    components["reference_model"]["image_hash"] = "sha256:" + "a" * 64
    components["reference_model"]["additional_files_tarball_url"] = (tmp_path / "cnn weights.tar.gz").as_uri()
    components["reference_model"]["additional_files_tarball_hash"] = "b" * 64
    path = tmp_path / "components.json"
    path.write_text(json.dumps(components))
    db = str(tmp_path / "s.db")
    # MedPerf's CLI downloads over http(s) only: a file:// URL is never registered
    assert main(["--db", db, "seed", "--demo", "data", "--components", str(path)]) == 1
    assert "never registers a file:// URL" in capsys.readouterr().err and not (tmp_path / "s.db").exists()
    assert main(["--db", db, "seed", "--demo", "data", "--components", str(path), "--files-url",
                 "http://127.0.0.1:8001/", "--tokens-file", str(tmp_path / "t.json")]) == 0
    tokens = json.loads((tmp_path / "t.json").read_text())
    session = inprocess_session(app_for(db))
    headers = {"Authorization": f"Bearer {tokens['testdo@example.com']}"}
    model = session.get("http://x/api/v0/models/1/", headers=headers).json()
    assert model["container"]["image_hash"] == "sha256:" + "a" * 64
    assert model["container"]["additional_files_tarball_url"] == "http://127.0.0.1:8001/cnn%20weights.tar.gz"
    bench = session.get("http://x/api/v0/benchmarks/1/", headers=headers).json()
    assert all(bench[f"demo_dataset_{k}"] for k in ("tarball_url", "tarball_hash", "generated_uid"))


def test_a_file_outside_the_served_folder_is_refused(tmp_path, capsys):
    components = default_components()
    components["reference_model"]["additional_files_tarball_url"] = "file:///etc/passwd"
    components["reference_model"]["additional_files_tarball_hash"] = "b" * 64
    path = tmp_path / "components.json"
    path.write_text(json.dumps(components))
    assert main(["--db", str(tmp_path / "s.db"), "seed", "--demo", "data", "--components", str(path),
                 "--files-url", "http://127.0.0.1:8001/"]) == 1
    assert "outside" in capsys.readouterr().err


def test_bad_components_file_is_reported(tmp_path, capsys):
    path = tmp_path / "components.json"
    path.write_text(json.dumps({"prep": {"name": "x"}}))
    assert main(["--db", str(tmp_path / "s.db"), "seed", "--demo", "data", "--components", str(path)]) == 1
    err = capsys.readouterr().err
    assert "prep: missing container_config" in err and "missing object 'metrics'" in err


def test_default_db_comes_from_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDPERF_SERVER_DB", str(tmp_path / "env.sqlite3"))
    assert main(["user", "create", "--email", "a@b.c"]) == 0
    assert (tmp_path / "env.sqlite3").exists()


def test_run_serves_on_its_port(tmp_path):
    """The console script's `run` answers on its port, then stops on SIGTERM."""
    db = str(tmp_path / "s.db")
    secret = subprocess.run([sys.executable, "-m", "server.cli", "--db", db, "user", "create", "--email", "r@x.y"],
                            capture_output=True, text=True, check=True).stdout.strip()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "--db", db, "run", "--port", str(port),
                             "--threads", "4"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/api/v0/me/", headers={"Authorization": f"Bearer {secret}"},
                                 timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.json()["email"] == "r@x.y" and r.headers["Server"] == "medperf-server"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
