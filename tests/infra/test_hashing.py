"""MedPerf's folder hash: equal to a straightforward computation, and a stat cache that reads nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner.errors import HashError
from runner.hashing import HashCache, combine, file_hash, folders_hash

OLD = 1_500_000_000  # an mtime far in the past (seconds), outside the "just modified" window
REPO = Path(__file__).resolve().parents[2]


def medperf_reference(paths) -> str:
    """The algorithm as MedPerf's CLI states it, written out plainly and independently."""
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
    """Nested and hidden dirs, empty files, duplicate contents, a large file, symlinks to a file and a dir."""
    data = tmp_path / "data"
    (data / "a" / "b" / "c").mkdir(parents=True)
    (data / "empty_dir").mkdir()
    (data / ".hidden_dir").mkdir()
    (data / "a" / "one.png").write_bytes(b"\x89PNG one")
    (data / "a" / "b" / "dup1").write_bytes(b"same bytes")
    (data / "a" / "b" / "c" / "dup2").write_bytes(b"same bytes")
    (data / "empty").write_bytes(b"")
    (data / "a" / "empty2").write_bytes(b"")
    (data / ".hidden").write_bytes(b"a dot file counts too")
    (data / ".hidden_dir" / "x").write_bytes(b"so does a file in a dot folder")
    (data / "big.bin").write_bytes(os.urandom(3 * (1 << 20) + 17))  # spans several read buffers
    os.symlink("a/one.png", data / "link_to_file")  # read through: counts with its target's bytes
    os.symlink(data / "a" / "b", data / "link_to_dir")  # not entered, as os.walk does not
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.csv").write_text("id,label\n1,atelectasis\n")
    age(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Enough files that the work goes to worker processes: small, empty, hidden, large, nested, shared."""
    root = tmp_path_factory.mktemp("many")
    rng = __import__("random").Random(7)
    for i in range(2600):
        d = root / f"site{i % 3}" / f"case{i % 40:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1, 100, 4096, 4097, 20000])
        (d / f"{'.' if i % 97 == 0 else ''}img{i:05d}.bin").write_bytes(rng.randbytes(size))
    (root / "flat").mkdir()
    for i in range(700):  # one folder of several chunks
        (root / "flat" / f"f{i:04d}").write_bytes(b"%d" % (i % 50))
    (root / "site0" / "large.bin").write_bytes(rng.randbytes(9 << 20))  # a hash task of its own
    (root / "site1" / "larger.bin").write_bytes(rng.randbytes((1 << 20) + 3))
    age(root)
    return root


class OpenCounter:
    """Counts files opened for reading in this process (the reads of a small job are done here)."""

    def __init__(self, monkeypatch):
        self.opened: list[str] = []
        real = os.open

        def counting(path, flags, *args, **kw):
            if not flags & getattr(os, "O_DIRECTORY", 0):
                self.opened.append(os.fsdecode(path))
            return real(path, flags, *args, **kw)

        monkeypatch.setattr(os, "open", counting)


def test_file_hash_is_sha256_of_bytes(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    assert file_hash(p) == hashlib.sha256(b"abc" * 1000).hexdigest()
    big = tmp_path / "big"
    big.write_bytes(b"xyz" * (1 << 20))
    assert file_hash(big) == hashlib.sha256(b"xyz" * (1 << 20)).hexdigest()


def test_combine_is_medperf_on_hex_digests():
    ds = [hashlib.sha256(b).hexdigest() for b in (b"2", b"1", b"3")]
    assert combine(ds) == hashlib.sha256("".join(sorted(ds)).encode()).hexdigest()


def test_folders_hash_equals_the_reference_algorithm(tree):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    assert folders_hash(paths) == expected
    assert folders_hash(paths, workers=1) == expected
    assert folders_hash(paths, workers=4) == expected


def test_worker_processes_give_the_reference_digest(many, tmp_path):
    expected = medperf_reference([many])
    assert folders_hash([many], workers=2) == expected
    assert folders_hash([many], workers=3) == expected
    with HashCache(tmp_path / "c.sqlite", settle=0) as cache:
        assert folders_hash([many], cache=cache, workers=2) == expected  # first plan
        assert folders_hash([many], cache=cache, workers=2) == expected  # everything remembered
    with HashCache(tmp_path / "c.sqlite", settle=0) as cache:
        assert folders_hash([many / "site0", many / "flat", many / "site0"], cache=cache, workers=2) == \
            medperf_reference([many / "site0", many / "flat", many / "site0"])
    with HashCache(tmp_path / "d.sqlite", settle=0) as cache:  # a part remembered, the rest not
        assert folders_hash([many / "site1"], cache=cache, workers=2) == medperf_reference([many / "site1"])
        assert folders_hash([many], cache=cache, workers=2) == expected


def test_symlinks_follow_medperf(tree):
    """A symlinked file counts with its target's bytes; a symlinked dir contributes nothing."""
    data = tree / "data"
    with_link = folders_hash([data])
    assert with_link == medperf_reference([data])
    os.unlink(data / "link_to_dir")
    assert folders_hash([data]) == with_link
    os.unlink(data / "link_to_file")
    assert folders_hash([data]) != with_link


@pytest.mark.parametrize("target", ["file", "dir"])
def test_a_symlink_leading_outside_the_data_folder_is_an_error_naming_link_and_target(tree, target):
    outside = tree / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"the container would not see me")
    os.symlink(outside / "target.txt" if target == "file" else outside, tree / "data" / "a" / "sneaky")
    with pytest.raises(HashError) as e:
        folders_hash([tree / "data"])
    assert "sneaky" in str(e.value) and str(outside) in str(e.value)


def test_a_symlink_from_data_to_labels_is_outside_the_data_folder(tree):
    os.symlink(tree / "labels" / "labels.csv", tree / "data" / "labels.csv")
    with pytest.raises(HashError, match="outside the data folder"):
        folders_hash([tree / "data", tree / "labels"])


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


def test_a_socket_is_an_error_naming_it(tmp_path):
    """Works as root too: a socket in the data folder cannot be read."""
    (tmp_path / "ok.png").write_bytes(b"x")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "weird.sock"))
        with pytest.raises(HashError) as e:
            folders_hash([tmp_path], workers=2)
        assert "weird.sock" in str(e.value) and "socket" in str(e.value)
    finally:
        sock.close()


def test_a_fifo_is_an_error_naming_it_at_once(tmp_path, many):
    """A named pipe with no writer would block a reader forever: it is named, not opened."""
    for where in (tmp_path, many / "site2" / "case05"):
        os.mkfifo(where / "pipe")
        try:
            started = time.monotonic()
            with pytest.raises(HashError) as e:
                folders_hash([where.parent.parent if where != tmp_path else tmp_path], workers=2)
            assert "pipe" in str(e.value) and "FIFO" in str(e.value)
            assert time.monotonic() - started < 10
        finally:
            os.unlink(where / "pipe")


def test_cache_hit_reads_no_content(tree, tmp_path, monkeypatch):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
        assert folders_hash(paths, cache=cache) == expected
        counter = OpenCounter(monkeypatch)
        assert folders_hash(paths, cache=cache) == expected
        assert counter.opened == []
        monkeypatch.undo()
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:  # the next process
        counter = OpenCounter(monkeypatch)
        assert folders_hash(paths, cache=cache) == expected
        assert counter.opened == []


def test_changed_content_size_or_mtime_invalidates(tree, tmp_path, monkeypatch):
    labels = tree / "labels"
    f = labels / "labels.csv"
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
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
        counter = OpenCounter(monkeypatch)
        assert folders_hash([labels], cache=cache) == expected
        assert [os.path.basename(p) for p in counter.opened] == ["labels.csv"]


def test_same_bytes_count_same_mtime_new_content_is_read_again(tmp_path):
    """Rewritten in place, same size, its mtime put back to the nanosecond: the ctime still tells."""
    d = tmp_path / "d"
    d.mkdir()
    f = d / "f"
    f.write_bytes(b"version 1")
    os.utime(f, (OLD, OLD))
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
        assert folders_hash([d], cache=cache) == medperf_reference([d])
        f.write_bytes(b"version 2")
        os.utime(f, (OLD, OLD))
        assert folders_hash([d], cache=cache) == medperf_reference([d])


def test_a_file_rewritten_within_the_same_second_is_never_served_a_stale_digest(tmp_path, monkeypatch):
    """Timestamps that tick once a second (or 2 s on FAT): a second write in the same tick leaves size,
    mtime and inode as they were. A file that new is read on every plan until it is old enough, while the
    rest of its folder is answered by the cache."""
    d = tmp_path / "d"
    d.mkdir()
    for i in range(300):  # more than a chunk's worth
        (d / f"old{i:03d}").write_bytes(b"%d" % i)
    age(d)
    time.sleep(1.05)  # their ctime, set by age(), is now older than the cache's settle time below
    f = d / "new"
    f.write_bytes(b"version 1")
    tick = (int(time.time()) * 10**9,) * 2  # the current second, as a coarse file system would record it
    os.utime(f, ns=tick)
    with HashCache(tmp_path / "cache.sqlite", settle=1.0) as cache:
        assert folders_hash([d], cache=cache) == medperf_reference([d])
        f.write_bytes(b"version 2")  # same size, same second
        os.utime(f, ns=tick)
        counter = OpenCounter(monkeypatch)
        assert folders_hash([d], cache=cache) == medperf_reference([d])
        assert [os.path.basename(p) for p in counter.opened] == ["new"]  # and not the other 300
        f.write_bytes(b"version 3")
        os.utime(f, ns=tick)
        assert folders_hash([d], cache=cache) == medperf_reference([d])


def test_a_recent_file_is_remembered_once_old_enough(tmp_path, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    (d / "fresh").write_bytes(b"just written")
    path = tmp_path / "cache.sqlite"
    with HashCache(path) as cache:  # trusts a stat 2 s old
        folders_hash([d], cache=cache)
        counter = OpenCounter(monkeypatch)
        folders_hash([d], cache=cache)
        assert len(counter.opened) == 1  # written within the racy window: read again
        monkeypatch.undo()
    with HashCache(path, settle=0) as cache:  # the same file, judged old enough
        folders_hash([d], cache=cache)
        counter = OpenCounter(monkeypatch)
        folders_hash([d], cache=cache)
        assert counter.opened == []


def test_one_changed_file_is_the_only_one_read_again(tmp_path, monkeypatch):
    d = tmp_path / "d"
    for i in range(1000):
        (d / f"s{i % 3}").mkdir(parents=True, exist_ok=True)
        (d / f"s{i % 3}" / f"f{i:04d}").write_bytes(b"%d" % i)
    age(d)
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
        folders_hash([d], cache=cache, workers=1)
        changed = d / "s1" / "f0400"
        changed.write_bytes(b"changed")
        os.utime(changed, (OLD + 1, OLD + 1))
        counter = OpenCounter(monkeypatch)
        assert folders_hash([d], cache=cache, workers=1) == medperf_reference([d])
        assert [os.path.basename(p) for p in counter.opened] == ["f0400"]
        # a file added moves the others within their folder's listing: none of them is read again
        (d / "s1" / "added").write_bytes(b"new")
        os.utime(d / "s1" / "added", (OLD, OLD))
        counter.opened.clear()
        assert folders_hash([d], cache=cache, workers=1) == medperf_reference([d])
        assert [os.path.basename(p) for p in counter.opened] == ["added"]


def test_files_and_folders_gone_are_forgotten(tmp_path):
    d = tmp_path / "d"
    (d / "keep").mkdir(parents=True)
    (d / "drop" / "deeper").mkdir(parents=True)
    for i in range(600):
        (d / "keep" / f"f{i:03d}").write_bytes(b"%d" % i)
    (d / "drop" / "x").write_bytes(b"x")
    (d / "drop" / "deeper" / "y").write_bytes(b"y")
    age(d)
    path = tmp_path / "cache.sqlite"
    with HashCache(path, settle=0) as cache:
        folders_hash([d], cache=cache)
        for i in range(300, 600):
            os.unlink(d / "keep" / f"f{i:03d}")
        (d / "drop" / "x").unlink()
        (d / "drop" / "deeper" / "y").unlink()
        (d / "drop" / "deeper").rmdir()
        (d / "drop").rmdir()
        assert folders_hash([d], cache=cache) == medperf_reference([d])
    db = sqlite3.connect(path)
    dirs = {os.fsdecode(p) for (p,) in db.execute("SELECT path FROM dirs")}
    chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    db.close()
    assert dirs == {str(d), str(d / "keep")}
    assert chunks == 2  # 300 files left in keep: chunks of 256 and 44


def test_progress_reports_files_and_bytes(tree, tmp_path, many):
    seen = []
    total_size = sum(os.stat(os.path.join(r, n)).st_size for r, _d, fs in os.walk(tree / "data") for n in fs)
    total_files = sum(len(fs) for _r, _d, fs in os.walk(tree / "data"))
    folders_hash([tree / "data"], workers=2, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (total_size, total_size)
    assert seen[-1][0].files == seen[-1][1].files == total_files and seen[-1][1].final
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all(d <= t for d, t in seen)
    # warm: the last report is the whole tree
    with HashCache(tmp_path / "c.sqlite", settle=0) as cache:
        folders_hash([tree / "data"], cache=cache)
        seen.clear()
        folders_hash([tree / "data"], cache=cache, on_progress=lambda d, t: seen.append((d, t)))
        assert seen[-1] == (total_size, total_size)
    # through the workers
    seen.clear()
    folders_hash([many], workers=2, on_progress=lambda d, t: seen.append((d, t)))
    size = sum(os.stat(os.path.join(r, n)).st_size for r, _d, fs in os.walk(many) for n in fs)
    assert seen[-1] == (size, size) and seen[-1][1].files == sum(len(fs) for _r, _d, fs in os.walk(many))


def test_a_cache_that_cannot_be_written_is_reported_and_the_hash_is_right(tree, tmp_path, capsys):
    paths = [tree / "data", tree / "labels"]
    path = tmp_path / "cache.sqlite"
    HashCache(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for longer than we wait
    try:
        with HashCache(path, timeout=0.05, settle=0) as cache:
            warnings = []
            assert folders_hash(paths, cache=cache, on_warning=warnings.append) == medperf_reference(paths)
            assert len(warnings) == 1 and "cannot be written" in warnings[0] and "locked" in warnings[0]
            assert str(path) in warnings[0]
            # without a callback: a warning line on stderr
            assert folders_hash(paths, cache=cache) == medperf_reference(paths)
            assert "warning: the hash cache" in capsys.readouterr().err
    finally:
        other.execute("ROLLBACK")
        other.close()
    with HashCache(path, settle=0) as cache:  # writable again: no warning
        warnings = []
        assert folders_hash(paths, cache=cache, on_warning=warnings.append) == medperf_reference(paths)
        assert warnings == []


def test_cache_shared_by_threads(tree, tmp_path, many):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    expected_many = medperf_reference([many])
    results, errors = [], []
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
        def run(i):
            try:
                if i % 2:
                    results.append(folders_hash(paths, cache=cache, workers=2) == expected)
                else:
                    results.append(folders_hash([many], cache=cache, workers=2) == expected_many)
            except Exception as e:  # surfaced below
                errors.append(e)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == [] and results == [True] * 4


def test_corrupt_cache_file_is_rebuilt(tree, tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with HashCache(bad, settle=0) as cache:
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])


def test_a_damaged_cache_row_is_not_trusted(tree, tmp_path):
    paths = [tree / "data", tree / "labels"]
    path = tmp_path / "cache.sqlite"
    with HashCache(path, settle=0) as cache:
        folders_hash(paths, cache=cache)
    db = sqlite3.connect(path)
    db.execute("UPDATE chunks SET digests = substr(digests, 1, 40)")  # cut short
    db.execute("DELETE FROM folders")
    db.commit()
    db.close()
    with HashCache(path, settle=0) as cache:
        assert folders_hash(paths, cache=cache) == medperf_reference(paths)
        assert folders_hash(paths, cache=cache) == medperf_reference(paths)  # and repaired


def test_cache_from_an_older_layout_is_replaced(tree, tmp_path):
    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE folders (top TEXT PRIMARY KEY, files TEXT NOT NULL)")
    db.execute("INSERT INTO folders VALUES ('x', 'y')")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    with HashCache(path, settle=0) as cache:
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])
        assert folders_hash([tree / "labels"], cache=cache) == medperf_reference([tree / "labels"])


def test_processes_opening_a_new_cache_at_once(tree, many, tmp_path):
    code = ("import sys; from runner.hashing import HashCache, folders_hash\n"
            "with HashCache(sys.argv[1], settle=0) as c: print(folders_hash([sys.argv[2]], cache=c))")
    for folder in (tree / "data", many):
        procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c.sqlite"), str(folder)],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [o.strip() for o, _ in outs] == [medperf_reference([folder])] * 3, [e for _, e in outs]


def test_nested_and_repeated_folders(tree, tmp_path, monkeypatch):
    data, inner = tree / "data", tree / "data" / "a"
    expected = medperf_reference([data, inner, data])
    counter = OpenCounter(monkeypatch)
    assert folders_hash([data, inner, data]) == expected
    assert len(counter.opened) == len(set(counter.opened))  # each file read once, counted as often as listed
    monkeypatch.undo()
    with HashCache(tmp_path / "c.sqlite", settle=0) as cache:
        assert folders_hash([inner, data], cache=cache) == medperf_reference([inner, data])
        assert folders_hash([data, inner, inner], cache=cache) == medperf_reference([data, inner, inner])


def test_an_unchanged_re_plan_is_answered_by_the_remembered_digest(tree, tmp_path, monkeypatch):
    paths = [tree / "data", tree / "labels"]
    expected = medperf_reference(paths)
    with HashCache(tmp_path / "cache.sqlite", settle=0) as cache:
        assert folders_hash(paths, cache=cache) == expected
        answers = []
        real = cache.digest
        monkeypatch.setattr(cache, "digest", lambda *a: answers.append(real(*a)) or answers[-1])
        assert folders_hash(paths, cache=cache) == expected
        assert answers == [expected]  # not sorted again: the set's fingerprint matched
        assert folders_hash([tree / "labels", tree / "data"], cache=cache) == expected  # other order, own row
        f = tree / "labels" / "labels.csv"
        f.write_text(f.read_text().replace("atelectasis", "effusionsss"))  # same size
        os.utime(f, (OLD, OLD))  # and the same mtime: only the ctime tells
        answers.clear()
        assert folders_hash(paths, cache=cache) == medperf_reference(paths) != expected
        assert answers in ([], [None])  # too recent to be trusted, or not the remembered fingerprint


STOPPABLE = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from runner.hashing import folders_hash
print("started", flush=True)
try:
    if sys.argv[2] == "thread":  # as observe does: the hash in a pool thread, the main thread waiting
        with ThreadPoolExecutor(1) as pool:
            pool.submit(folders_hash, [sys.argv[1]], workers=2).result()
    else:
        folders_hash([sys.argv[1]], workers=2)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def children(pid: int) -> list[int]:
    """The processes started by any thread of pid."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that has just ended
            pass
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc")
@pytest.mark.parametrize("how", ["main", "stuck", "thread"])
def test_ctrl_c_stops_hashing_within_a_second(tmp_path, how):
    """Large sparse files keep the workers reading for seconds. SIGINT to the process alone (with the
    workers stopped dead: stuck), or Ctrl-C at a terminal (SIGINT to the process group) while the hash
    runs in a pool thread, ends it at once, and no worker is left behind."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        with open(data / f"sparse{i}", "wb") as f:
            f.truncate(6 << 30)  # reads as zeros at memory speed, takes no disk
    p = subprocess.Popen([sys.executable, "-c", STOPPABLE, str(data), how], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 10
    while len(workers := children(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2
    time.sleep(0.3)
    if how == "stuck":
        for w in workers:
            os.kill(w, signal.SIGSTOP)
    started = time.monotonic()
    if how == "thread":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert time.monotonic() - started < 1.0, err
    assert out.strip() == "interrupted", err
    for w in workers:
        assert not Path(f"/proc/{w}").exists() or "Z" in Path(f"/proc/{w}/stat").read_text().split()[2]
