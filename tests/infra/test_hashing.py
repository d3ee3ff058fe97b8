"""MedPerf's folder hash: equal to a straightforward computation, and a stat cache that reads nothing."""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import threading

import pytest

from runner.errors import HashError
from runner.hashing import HashCache, file_hash, folders_hash

OLD = 1_500_000_000  # an mtime far in the past (seconds), outside the "just modified" window


def medperf_reference(paths) -> str:
    """The algorithm as reference 3.1 states it, written out plainly and independently."""
    digests = []
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for name in files:
                h = hashlib.sha256()
                with open(os.path.join(root, name), "rb") as f:
                    for chunk in iter(lambda: f.read(65536), b""):
                        h.update(chunk)
                digests.append(h.hexdigest())
    total = hashlib.sha256()
    for d in sorted(digests):
        total.update(d.encode())
    return total.hexdigest()


def age(root) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(dirpath, name), (OLD, OLD), follow_symlinks=False)


@pytest.fixture
def tree(tmp_path):
    """Nested dirs, empty files, duplicate contents, a large file, a symlinked file and a symlinked dir."""
    data = tmp_path / "data"
    (data / "a" / "b" / "c").mkdir(parents=True)
    (data / "empty_dir").mkdir()
    (data / "a" / "one.png").write_bytes(b"\x89PNG one")
    (data / "a" / "b" / "dup1").write_bytes(b"same bytes")
    (data / "a" / "b" / "c" / "dup2").write_bytes(b"same bytes")
    (data / "empty").write_bytes(b"")
    (data / "a" / "empty2").write_bytes(b"")
    (data / "big.bin").write_bytes(os.urandom(3 * (1 << 20) + 17))  # spans several read buffers
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"read through the symlink")
    (outside / "hidden_in_linked_dir").write_bytes(b"never hashed: the dir link is not followed")
    os.symlink(outside / "target.txt", data / "link_to_file")
    os.symlink(outside, data / "link_to_dir")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.csv").write_text("id,label\n1,atelectasis\n")
    age(tmp_path)
    return tmp_path


def test_file_hash_is_sha256_of_bytes(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    assert file_hash(p) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_folders_hash_equals_the_reference_algorithm(tree):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    assert folders_hash(paths) == expected
    assert folders_hash(paths, workers=1) == expected
    assert folders_hash(paths, workers=4) == expected


def test_symlinks_follow_medperf(tree):
    """A symlinked file counts with its target's bytes; a symlinked dir contributes nothing."""
    data = tree / "data"
    with_link = folders_hash([data])
    os.unlink(data / "link_to_dir")
    assert folders_hash([data]) == with_link
    os.unlink(data / "link_to_file")
    assert folders_hash([data]) != with_link


def test_properties_of_the_algorithm(tree):
    data, labels, missing = tree / "data", tree / "labels", tree / "nowhere"
    # names, layout and path order do not matter; a missing path contributes nothing
    assert folders_hash([data, labels]) == folders_hash([labels, data])
    assert folders_hash([data, missing, labels]) == folders_hash([data, labels])
    assert folders_hash([missing]) == hashlib.sha256(b"").hexdigest()
    assert folders_hash([]) == hashlib.sha256(b"").hexdigest()
    # the same folder twice counts every file twice
    assert folders_hash([labels, labels]) == medperf_reference([labels, labels])
    assert folders_hash([labels, labels]) != folders_hash([labels])


def test_duplicate_contents_count_twice(tmp_path):
    (tmp_path / "x").write_bytes(b"1")
    once = folders_hash([tmp_path])
    (tmp_path / "y").write_bytes(b"1")
    assert folders_hash([tmp_path]) != once
    assert folders_hash([tmp_path]) == medperf_reference([tmp_path])


def test_unreadable_file_is_an_error_naming_it(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    bad = tmp_path / "secret.png"
    bad.write_bytes(b"x")
    bad.chmod(0)
    with pytest.raises(HashError) as e:
        folders_hash([tmp_path])
    assert "secret.png" in str(e.value)


def test_broken_symlink_is_an_error_naming_it(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    with pytest.raises(HashError) as e:
        folders_hash([tmp_path])
    assert "dangling" in str(e.value)


class OpenCounter:
    """Counts files opened for reading under a folder, through the real open()."""

    def __init__(self, monkeypatch, under):
        self.under = str(under)
        self.opened: list[str] = []
        self._lock = threading.Lock()
        real_open = builtins.open
        real_io_open = io.open

        def counting(real):
            def opener(file, *args, **kw):
                if isinstance(file, str | os.PathLike) and os.fspath(file).startswith(self.under):
                    with self._lock:
                        self.opened.append(os.fspath(file))
                return real(file, *args, **kw)
            return opener

        monkeypatch.setattr(builtins, "open", counting(real_open))
        monkeypatch.setattr(io, "open", counting(real_io_open))


def test_cache_hit_reads_no_content(tree, tmp_path, monkeypatch):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        assert folders_hash(paths, cache=cache) == expected
        counter = OpenCounter(monkeypatch, tree)
        assert folders_hash(paths, cache=cache) == expected
        assert counter.opened == []


def test_changed_content_size_or_mtime_invalidates(tree, tmp_path, monkeypatch):
    labels = tree / "labels"
    f = labels / "labels.csv"
    with HashCache(tmp_path / "cache.sqlite") as cache:
        before = folders_hash([labels], cache=cache)
        # same size, new content, mtime moved: must re-read
        f.write_text("id,label\n1,pneumothora\n")
        os.utime(f, (OLD + 10, OLD + 10))
        changed = folders_hash([labels], cache=cache)
        assert changed != before and changed == medperf_reference([labels])
        # size change with the mtime put back exactly as cached
        f.write_text("id,label\n1,atelectasis\n2,effusion\n")
        os.utime(f, (OLD + 10, OLD + 10))
        assert folders_hash([labels], cache=cache) == medperf_reference([labels])
        # mtime only (same bytes): re-read, same digest
        os.utime(f, (OLD + 20, OLD + 20))
        expected = medperf_reference([labels])
        counter = OpenCounter(monkeypatch, labels)
        assert folders_hash([labels], cache=cache) == expected
        assert counter.opened == [str(f)]


def test_recently_modified_files_are_not_trusted_from_cache(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    (d / "fresh").write_bytes(b"just written")
    with HashCache(tmp_path / "cache.sqlite") as cache:
        folders_hash([d], cache=cache)
        counter = OpenCounter(monkeypatch, d)
        folders_hash([d], cache=cache)
        assert len(counter.opened) == 1  # written within the racy window: read again


def test_progress_reports_all_bytes(tree, tmp_path):
    seen = []
    total_size = sum(os.stat(os.path.join(r, n)).st_size
                     for r, _d, fs in os.walk(tree / "data") for n in fs)
    folders_hash([tree / "data"], workers=2, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (total_size, total_size)
    assert all(t == total_size for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # warm: everything is answered by the cache at once
    with HashCache(tmp_path / "c.sqlite") as cache:
        folders_hash([tree / "data"], cache=cache)
        seen.clear()
        folders_hash([tree / "data"], cache=cache, on_progress=lambda d, t: seen.append((d, t)))
        assert seen == [(total_size, total_size)]


def test_cache_shared_by_threads(tree, tmp_path):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    results, errors = [], []
    with HashCache(tmp_path / "cache.sqlite") as cache:
        def run():
            try:
                results.append(folders_hash(paths, cache=cache, workers=2))
            except Exception as e:  # surfaced below
                errors.append(e)
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == [] and results == [expected] * 4


def test_corrupt_cache_file_is_rebuilt(tree, tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with HashCache(bad) as cache:
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])


def test_a_file_that_cannot_be_opened_is_an_error_naming_it(tmp_path):
    """Works as root too: a socket in the data folder cannot be read."""
    import socket

    (tmp_path / "ok.png").write_bytes(b"x")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "weird.sock"))
        with pytest.raises(HashError) as e:
            folders_hash([tmp_path], workers=2)
        assert "weird.sock" in str(e.value)
    finally:
        sock.close()


def test_cache_from_an_older_layout_is_replaced(tree, tmp_path):
    import sqlite3

    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT)")
    db.execute("INSERT INTO files VALUES ('x', 'y')")
    db.commit()
    db.close()
    with HashCache(path) as cache:
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])


def test_processes_opening_a_new_cache_at_once(tree, tmp_path):
    import subprocess
    import sys

    code = ("import sys; from runner.hashing import HashCache, folders_hash\n"
            "with HashCache(sys.argv[1]) as c: print(folders_hash([sys.argv[2]], cache=c))")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c.sqlite"), str(tree / "data")],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [o.strip() for o, _ in outs] == [medperf_reference([tree / "data"])] * 4, [e for _, e in outs]


def test_nested_and_repeated_folders(tree, tmp_path, monkeypatch):
    data, inner = tree / "data", tree / "data" / "a"
    expected = medperf_reference([data, inner, data])
    counter = OpenCounter(monkeypatch, tree)
    assert folders_hash([data, inner, data]) == expected
    assert len(counter.opened) == len(set(counter.opened))  # each file read once, counted as often as listed


def test_an_unchanged_re_plan_is_answered_by_the_remembered_digest(tree, tmp_path, monkeypatch):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    with HashCache(tmp_path / "cache.sqlite") as cache:
        assert folders_hash(paths, cache=cache) == expected
        loads = []
        real_load = cache.load
        monkeypatch.setattr(cache, "load", lambda top: loads.append(top) or real_load(top))
        assert folders_hash(paths, cache=cache) == expected
        assert loads == []  # no per-file rows read: the stats' fingerprint matched
        assert folders_hash([tree / "labels", tree / "data"], cache=cache) == expected  # other order, own row
        os.utime(tree / "labels" / "labels.csv", (OLD + 30, OLD + 30))  # one stat changed
        assert folders_hash(paths, cache=cache) == expected
        assert loads  # the per-file rows answered it
