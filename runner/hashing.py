"""MedPerf's folder hash (reference 3.1), parallel across files, with a stat cache.

The digest is MedPerf's exactly: SHA-256 of every file under each path (os.walk, symlinked directories not
followed, symlinked files read through), all hex digests sorted, each fed in order into one SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from runner.errors import MedperfApplyError, StateError

_BUFFER_SIZE = 1 << 20  # 1 MiB: big enough that hashlib releases the GIL and syscalls stay few
# A file modified this close to the moment it was hashed might change again within the same mtime tick,
# unseen by its stat; such files are hashed but not remembered (git's "racy clean" problem).
_RACY_WINDOW_NS = 2_000_000_000

_thread_buffers = threading.local()


class HashError(MedperfApplyError):
    """A file under a data folder cannot be read, so the folder has no hash."""


def _buffer() -> bytearray:
    buf = getattr(_thread_buffers, "buf", None)
    if buf is None:
        buf = _thread_buffers.buf = bytearray(_BUFFER_SIZE)
    return buf


def file_hash(path: Path) -> str:
    """Return the SHA-256 hex digest of the file's bytes."""
    return _hash_file(os.fspath(path), None)


def _hash_file(path: str, on_bytes: Callable[[int], None] | None) -> str:
    buf = _buffer()
    view = memoryview(buf)
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as f:
            try:  # we read each file once, front to back: tell the kernel
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except (AttributeError, OSError):
                pass
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                digest.update(view[:n])
                if on_bytes is not None:
                    on_bytes(n)
    except OSError as e:
        raise HashError(f"cannot read {path}: {e.strerror or e}", where=path,
                        hint="make every file under the data folders readable by this user") from e
    return digest.hexdigest()


@dataclass(frozen=True)
class _Entry:
    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> _Entry:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class HashCache:
    """Remembers file digests by (path, size, mtime_ns, ctime_ns, inode) in a sqlite file; thread-safe."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError:
            # Only a cache: a corrupt file is replaced, costing one full re-hash.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            try:
                self._db = self._open()
            except sqlite3.Error as e:
                raise StateError(f"cannot open the hash cache: {e}", where=str(self.path),
                                 hint="delete the file; it is only a cache") from e
        except sqlite3.Error as e:
            raise StateError(f"cannot open the hash cache: {e}", where=str(self.path),
                             hint="check the state dir's permissions") from e

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
                " sha256 TEXT NOT NULL)"
            )
        except sqlite3.Error:
            db.close()
            raise
        return db

    def lookup(self, entries: Iterable[_Entry]) -> dict[str, str]:
        """Return {path: digest} for the entries whose stat still matches what was hashed."""
        found: dict[str, str] = {}
        entries = list(entries)
        with self._lock:
            for i in range(0, len(entries), 500):
                chunk = {e.path: e for e in entries[i:i + 500]}
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM files WHERE path IN ({marks})",
                    list(chunk),
                )
                for path, size, mtime_ns, ctime_ns, inode, digest in rows:
                    if chunk[path] == _Entry(path, size, mtime_ns, ctime_ns, inode):
                        found[path] = digest
        return found

    def store(self, items: Iterable[tuple[_Entry, str]]) -> None:
        """Remember digests of entries hashed just now."""
        rows = [(e.path, e.size, e.mtime_ns, e.ctime_ns, e.inode, d) for e, d in items]
        if not rows:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                # A cache that cannot be written costs speed, never correctness.

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _walk(paths: Sequence[Path]) -> list[_Entry]:
    entries: list[_Entry] = []

    def fail(err: OSError) -> None:
        # MedPerf's os.walk skips unreadable directories silently, which would give a wrong hash
        # without a word; a missing top path still contributes nothing (checked below).
        raise HashError(f"cannot list {err.filename}: {err.strerror or err}", where=str(err.filename),
                        hint="make every folder under the data folders readable by this user") from err

    for top in paths:
        top = os.path.abspath(os.fspath(top))
        if not os.path.isdir(top):
            continue  # as os.walk: a missing path (or a plain file) yields nothing
        for root, _dirs, files in os.walk(top, onerror=fail, followlinks=False):
            for name in files:
                full = os.path.join(root, name)
                try:
                    st = os.stat(full)  # follows a symlinked file, as MedPerf's open() does
                except OSError as e:
                    raise HashError(f"cannot read {full}: {e.strerror or e}", where=full,
                                    hint="a broken symlink or a file removed while hashing") from e
                entries.append(_Entry.of(full, st))
    return entries


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def folders_hash(
    paths: Sequence[Path],
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> str:
    """Return MedPerf's hash of the folders, reading only files the cache cannot answer for."""
    entries = _walk(paths)
    total = sum(e.size for e in entries)
    digests: dict[int, str] = {}

    known = cache.lookup(entries) if cache is not None else {}
    missing: list[int] = []
    done = 0
    for i, e in enumerate(entries):
        if e.path in known:
            digests[i] = known[e.path]
            done += e.size
        else:
            missing.append(i)
    if on_progress is not None:
        on_progress(done, total)

    if missing:
        progress_lock = threading.Lock()
        progress = [done]

        def count(n: int) -> None:
            with progress_lock:
                progress[0] += n

        hash_one = (lambda i: _hash_file(entries[i].path, count)) if on_progress else \
            (lambda i: _hash_file(entries[i].path, None))
        n_workers = workers or _default_workers()
        started_ns = time.time_ns()
        if n_workers == 1 or len(missing) == 1:
            for i in missing:
                digests[i] = hash_one(i)
                if on_progress is not None:
                    on_progress(progress[0], total)
        else:
            with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="hash") as pool:
                futures = {pool.submit(hash_one, i): i for i in missing}
                try:
                    for fut in as_completed(futures):
                        digests[futures[fut]] = fut.result()
                        if on_progress is not None:
                            on_progress(progress[0], total)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
        if cache is not None:
            cache.store(
                (entries[i], digests[i]) for i in missing
                if entries[i].mtime_ns < started_ns - _RACY_WINDOW_NS
                and _unchanged(entries[i])
            )

    return combine(digests.values())


def _unchanged(entry: _Entry) -> bool:
    """Tell whether the file still has the stat it had before it was read (so the digest is of that file)."""
    try:
        return _Entry.of(entry.path, os.stat(entry.path)) == entry
    except OSError:
        return False


def combine(hex_digests: Iterable[str]) -> str:
    """Return the SHA-256 of the sorted hex digests, fed in order: MedPerf's folder hash of those files."""
    total = hashlib.sha256()
    for d in sorted(hex_digests):
        total.update(d.encode("utf-8"))
    return total.hexdigest()
