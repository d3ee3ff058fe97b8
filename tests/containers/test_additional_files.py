"""Additional files: fetched from file:// or http(s)://, SHA-256 checked, extracted safely, cached by hash."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from runner.clients.files import empty_additional_files, fetch_additional_files
from runner.errors import ContainerSpecError


def make_tarball(path: Path, files: dict[str, bytes], *, mode: int = 0o600) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_url_is_verified_extracted_and_made_readable(tmp_path):
    tarball = tmp_path / "w.tar.gz"
    digest = make_tarball(tarball, {"./weights/a.npy": b"AAA", "./b.txt": b"B"})
    folder = fetch_additional_files(tarball.as_uri(), digest, tmp_path / "cache")
    assert folder == tmp_path / "cache" / digest
    assert (folder / "weights" / "a.npy").read_bytes() == b"AAA" and (folder / "b.txt").read_bytes() == b"B"
    assert (folder / "b.txt").stat().st_mode & 0o444 == 0o444  # the container runs as another uid
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [digest]  # no temp leftovers


def test_hash_mismatch_is_refused_and_nothing_is_cached(tmp_path):
    tarball = tmp_path / "w.tar.gz"
    digest = make_tarball(tarball, {"./a": b"A"})
    wrong = "0" * 64
    with pytest.raises(ContainerSpecError) as info:
        fetch_additional_files(tarball.as_uri(), wrong, tmp_path / "cache", where="container cnn")
    assert f"expected {wrong}, found {digest}" in str(info.value) and "container cnn" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_hit_neither_downloads_nor_extracts(tmp_path):
    tarball = tmp_path / "w.tar.gz"
    digest = make_tarball(tarball, {"./a": b"A"})
    first = fetch_additional_files(tarball.as_uri(), digest, tmp_path / "cache")
    marker = first / "a"
    inode, mtime = marker.stat().st_ino, marker.stat().st_mtime_ns
    tarball.unlink()  # a second fetch that touched the URL would now fail
    second = fetch_additional_files(tarball.as_uri(), digest, tmp_path / "cache")
    assert second == first and marker.stat().st_ino == inode and marker.stat().st_mtime_ns == mtime


def test_unreadable_source_and_bad_tarball(tmp_path):
    with pytest.raises(ContainerSpecError, match="cannot read file://"):
        fetch_additional_files((tmp_path / "missing.tar.gz").as_uri(), "0" * 64, tmp_path / "cache")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(ContainerSpecError, match="is not a valid tarball"):
        fetch_additional_files(junk.as_uri(), hashlib.sha256(b"not a tarball").hexdigest(), tmp_path / "cache")


def test_entries_escaping_the_folder_are_refused(tmp_path):
    tarball = tmp_path / "evil.tar.gz"
    digest = make_tarball(tarball, {"../outside.txt": b"x"})
    with pytest.raises(ContainerSpecError, match="is not a valid tarball"):
        fetch_additional_files(tarball.as_uri(), digest, tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()


def test_http_download(tmp_path):
    tarball = tmp_path / "served" / "w.tar.gz"
    tarball.parent.mkdir()
    digest = make_tarball(tarball, {"./a": b"over http"})

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tarball.parent), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        folder = fetch_additional_files(f"{base}/w.tar.gz", digest, tmp_path / "cache")
        assert (folder / "a").read_bytes() == b"over http"
        with pytest.raises(ContainerSpecError, match="answered 404"):
            fetch_additional_files(f"{base}/nope.tar.gz", "1" * 64, tmp_path / "cache")
    finally:
        server.shutdown()


def test_empty_additional_files_folder(tmp_path):
    folder = empty_additional_files(tmp_path / "cache")
    assert folder.is_dir() and list(folder.iterdir()) == []
