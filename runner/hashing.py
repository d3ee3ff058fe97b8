"""MedPerf's folder hash (reference 3.1), parallel across files, with a stat cache.

The digest is MedPerf's exactly: SHA-256 of every file under each path (os.walk, symlinked directories not
followed, symlinked files read through), all hex digests sorted, each fed in order into one SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from runner.errors import HashError, StateError

_BUFFER_SIZE = 1 << 20  # 1 MiB: big enough that hashlib releases the GIL and syscalls stay few
# A file modified this close to the moment it was hashed might change again within the same mtime tick,
# unseen by its stat; such files are hashed but not remembered (git's "racy clean" problem).
_RACY_WINDOW_NS = 2_000_000_000

_thread_buffers = threading.local()


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


# What a file's stat says about it, enough to tell it changed: (path, size, mtime_ns, ctime_ns, inode).
_Stat = tuple[str, int, int, int, int]


def _stat_of(path: str, st: os.stat_result) -> _Stat:
    return (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class HashCache:
    """Remembers file digests by (path, size, mtime_ns, ctime_ns, inode) in a sqlite file; thread-safe.

    One row per hashed folder holds all its files (JSON), so a warm lookup is one read, not one per file.
    One row per set of folders hashed together holds the digest with a fingerprint of every file's stat:
    an unchanged re-plan is the walk, one SHA-256 of the stats and one read.
    """

    _SCHEMA = 3

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.OperationalError as e:  # locked, read-only, no space: not a reason to delete it
            raise StateError(f"cannot open the hash cache: {e}", where=str(self.path),
                             hint="check the state dir's permissions and free space") from e
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
            if db.execute("PRAGMA user_version").fetchone()[0] != self._SCHEMA:
                db.execute("BEGIN IMMEDIATE")  # another process may be creating it at the same moment
                if db.execute("PRAGMA user_version").fetchone()[0] != self._SCHEMA:
                    db.execute("DROP TABLE IF EXISTS files")  # the per-file layout of schema 1
                    db.execute("DROP TABLE IF EXISTS folders")
                    db.execute("DROP TABLE IF EXISTS digests")
                    db.execute("CREATE TABLE folders (top TEXT PRIMARY KEY, files TEXT NOT NULL)")
                    db.execute("CREATE TABLE digests (tops TEXT PRIMARY KEY, stats TEXT NOT NULL, "
                               "digest TEXT NOT NULL)")
                    db.execute(f"PRAGMA user_version={self._SCHEMA}")
                db.execute("COMMIT")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def load(self, top: str) -> dict[str, list]:
        """Return {path relative to top: [size, mtime_ns, ctime_ns, inode, digest]} as last remembered."""
        with self._lock:
            row = self._db.execute("SELECT files FROM folders WHERE top = ?", (top,)).fetchone()
        if row is None:
            return {}
        try:
            files = json.loads(row[0])
        except ValueError:
            return {}
        return files if isinstance(files, dict) else {}

    def save(self, top: str, files: Mapping[str, list]) -> None:
        """Remember the folder's files (replacing what was remembered for it)."""
        data = json.dumps(files, separators=(",", ":"))
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO folders (top, files) VALUES (?, ?)", (top, data))
            except sqlite3.Error:
                pass  # a cache that cannot be written costs speed, never correctness

    def digest(self, tops: str, stats: str) -> str | None:
        """The folders' digest remembered with exactly this fingerprint of their files' stats, or None."""
        with self._lock:
            row = self._db.execute("SELECT stats, digest FROM digests WHERE tops = ?", (tops,)).fetchone()
        return row[1] if row is not None and row[0] == stats else None

    def save_digest(self, tops: str, stats: str, digest: str) -> None:
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO digests (tops, stats, digest) VALUES (?, ?, ?)",
                                 (tops, stats, digest))
            except sqlite3.Error:
                pass  # a cache that cannot be written costs speed, never correctness

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _walk(top: str) -> list[_Stat]:
    """Stat every file under top as os.walk(top) finds it: symlinked dirs not entered, symlinked files followed."""
    found: list[_Stat] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            # MedPerf's os.walk skips an unreadable folder silently, giving a wrong hash without a word.
            raise HashError(f"cannot list {folder}: {e.strerror or e}", where=folder,
                            hint="make every folder under the data folders readable by this user") from e
        append = found.append
        for entry in entries:  # the hot loop of a warm re-plan: one stat per file, nothing more
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        stack.append(entry.path)
                    continue
                st = entry.stat()  # follows a symlinked file, as MedPerf's open() does
            except OSError as e:
                raise HashError(f"cannot read {entry.path}: {e.strerror or e}", where=entry.path,
                                hint="a broken symlink, or a file removed while hashing") from e
            append((entry.path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return found


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
    given = [os.path.abspath(os.fspath(p)) for p in paths]
    tops = [t for t in dict.fromkeys(given) if os.path.isdir(t)]  # a missing path contributes nothing
    walked = {top: _walk(top) for top in tops}
    total = sum(e[1] for found in walked.values() for e in found)
    key = stats = None
    if cache is not None:
        key, stats = json.dumps(given), _fingerprint(walked)
        known = cache.digest(key, stats)
        if known is not None:  # not one file's stat changed since this digest was made
            if on_progress is not None:
                on_progress(total, total)
            return known
    remembered = {top: cache.load(top) for top in tops} if cache is not None else {}

    digests: dict[str, str] = {}  # path -> digest, for every file
    to_hash: list[_Stat] = []
    queued: set[str] = set()
    for top, found in walked.items():
        old = remembered.get(top, {})
        cut = len(top) + 1
        for e in found:
            row = old.get(e[0][cut:])
            if row is not None and row[0] == e[1] and row[1] == e[2] and row[2] == e[3] and row[3] == e[4]:
                digests[e[0]] = row[4]
            elif e[0] not in queued:  # nested folders list a file twice: read it once
                queued.add(e[0])
                to_hash.append(e)

    done = total - sum(e[1] for e in to_hash)
    if on_progress is not None:
        on_progress(done, total)
    trusted = True  # every file's digest is remembered against its stat: the whole digest may be too
    if to_hash:
        started_ns = time.time_ns()
        _hash_all(to_hash, digests, workers or _default_workers(), on_progress, done, total)
        if cache is not None:
            hashed = {e[0] for e in to_hash}
            for top, found in walked.items():
                cut = len(top) + 1
                rows = {
                    e[0][cut:]: [e[1], e[2], e[3], e[4], digests[e[0]]]
                    for e in found
                    # a file modified just before it was read may change again unseen by its stat;
                    # one that changed while it was read has a digest of neither version
                    if e[2] < started_ns - _RACY_WINDOW_NS and (e[0] not in hashed or _unchanged(e))
                }
                trusted = trusted and len(rows) == len(found)
                cache.save(top, rows)

    # every occurrence counts: the same folder given twice counts its files twice, as in MedPerf
    digest = combine(digests[e[0]] for top in given if top in walked for e in walked[top])
    if cache is not None and trusted:
        cache.save_digest(key, stats, digest)
    return digest


def _fingerprint(walked: Mapping[str, list[_Stat]]) -> str:
    """SHA-256 of every file's (path, size, mtime_ns, ctime_ns, inode), independent of listing order."""
    h = hashlib.sha256()
    for top in sorted(walked):
        h.update(marshal.dumps(sorted(walked[top]), 2))  # version 2: no back-references, so the same bytes
    return h.hexdigest()


def _hash_all(todo: list[_Stat], digests: dict[str, str], workers: int,
              on_progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    progress_lock = threading.Lock()
    progress = [done]

    def count(n: int) -> None:
        with progress_lock:
            progress[0] += n

    def hash_one(e: _Stat) -> str:
        return _hash_file(e[0], count if on_progress is not None else None)

    if workers == 1 or len(todo) == 1:
        for e in todo:
            digests[e[0]] = hash_one(e)
            if on_progress is not None:
                on_progress(progress[0], total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        futures = {pool.submit(hash_one, e): e for e in todo}
        try:
            for fut in as_completed(futures):
                digests[futures[fut][0]] = fut.result()
                if on_progress is not None:
                    on_progress(progress[0], total)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _unchanged(entry: _Stat) -> bool:
    """Tell whether the file still has the stat it had before it was read (so the digest is of that file)."""
    try:
        return _stat_of(entry[0], os.stat(entry[0])) == entry
    except OSError:
        return False


def combine(hex_digests: Iterable[str]) -> str:
    """Return the SHA-256 of the sorted hex digests, fed in order: MedPerf's folder hash of those files."""
    total = hashlib.sha256()
    for d in sorted(hex_digests):
        total.update(d.encode("utf-8"))
    return total.hexdigest()
