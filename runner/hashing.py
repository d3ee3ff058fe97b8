"""MedPerf's folder hash, read by worker processes in batches, with a stat cache in SQLite.

The digest is MedPerf's exactly: SHA-256 of every file under each path (os.walk, symlinked folders not
entered, symlinked files read through), all hex digests sorted, each fed in order into one SHA-256.

One module though long: the worker processes import it alone (`from runner.hashing import _serve`), so that a
worker starts with nothing of the program but this file; a package would make them import its every part.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import selectors
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from runner.errors import HashError, StateError

# Why processes and not threads: measured on 2 cores over 200,000 files of 4 KiB in the page cache,
# one thread took 2.0 s, two threads 3.0 to 3.8 s (each file is a few syscalls and some bytecode under
# the GIL; hashlib lets go of it only for buffers over 2 KiB, so the threads mostly wait for each other);
# two worker processes fed batches of names take 1.15 s (MedPerf's sequential algorithm: 2.4 s). Large
# files gain either way (1 GiB in 5,000 files: one thread 0.85 s, two threads 0.5 to 0.7 s); one
# mechanism serves both shapes. Small jobs run in this process.

_CHUNK = 256  # files of one folder per cache chunk: the unit of the chunk fingerprint and of a re-read
_SCAN_FILES = 1024  # files per scan task (several chunks of small folders go together)
_BATCH_FILES = 512  # files per hash task ...
_BATCH_BYTES = 8 << 20  # ... and bytes: large files spread over the workers, a small tail at the end
_EAGER_BYTES = 8 << 20  # a scan task hashes up to this much itself in folders the cache does not know
_AHEAD_FILES = 32768  # files listed but not finished: bounds memory whatever the tree's size
_POOL_FILES = 2048  # below this many files to read (8 times as many to stat) and ...
_POOL_BYTES = 64 << 20  # ... this many bytes to read, everything runs in this process
_DEPTH = 3  # tasks queued at each worker, so it never waits for the next one
_WRITE_FILES = 16384  # files in the chunks written per transaction
_PROGRESS_EVERY = 0.2  # seconds between progress reports
_BUFFER_SIZE = 1 << 20  # 1 MiB reads for files larger than that; smaller ones are read in one call
_SETTLE = 2.0  # seconds since a file's last change before the cache trusts its stat (see HashCache)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_DIRECTORY", 0)
# What tells a file changed: size, mtime_ns, ctime_ns, inode; read back with the inode signed, as SQLite
# stores it (an inode number may use all 64 bits).
_STAT = struct.Struct("qqqQ")
_STAT_READ = struct.Struct("qqqq")
_DIGEST = 32
_READ_HINT = "make every file under the data folders readable by this user"


class Amount(int):
    """A number of bytes (the int itself) with the number of files; `final` once no more will be found."""

    files: int
    final: bool

    def __new__(cls, nbytes: int, files: int, final: bool = True) -> Amount:
        self = super().__new__(cls, nbytes)
        self.files, self.final = files, final
        return self


def file_hash(path: Path) -> str:
    """Return the SHA-256 hex digest of the file's bytes."""
    buf = bytearray(_BUFFER_SIZE)
    try:
        return _digest(None, os.fsencode(path), os.stat(path).st_size, buf, memoryview(buf)).hex()
    except OSError as e:
        raise HashError(f"cannot read {path}: {e.strerror or e}", where=str(path), hint=_READ_HINT) from e


def combine(hex_digests: Iterable[str]) -> str:
    """Return the SHA-256 of the sorted hex digests, fed in order: MedPerf's folder hash of those files."""
    total = hashlib.sha256()
    for d in sorted(hex_digests):
        total.update(d.encode("utf-8"))
    return total.hexdigest()


# -- reading files: the same functions run in this process and in the workers ------------------------------

class _Unreadable(Exception):
    """A file or folder that cannot be read: (path, reason)."""


def _digest(dir_fd: int | None, name: bytes, size: int, buf: bytearray, view: memoryview) -> bytes:
    fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    try:
        return _digest_fd(fd, size, buf, view)
    finally:
        os.close(fd)


def _digest_fd(fd: int, size: int, buf: bytearray, view: memoryview) -> bytes:
    """SHA-256 of an open file that had this size a moment ago (it may have changed since)."""
    if size < _BUFFER_SIZE:
        # the whole file in one call, into the same buffer every time (no allocation, no copy but the
        # kernel's), and one byte more to see it did not grow: 10 to 20% faster than os.read here
        n = os.readv(fd, [view[:size + 1]])
        h = hashlib.sha256(view[:n])
        if n == size:
            return h.digest()
    else:
        h = hashlib.sha256()
        try:  # read once, front to back: tell the kernel
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
    while n := os.readv(fd, [buf]):  # into the same buffer every time: no copy, no allocation
        h.update(view[:n])
    return h.digest()


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


def _scan(task: tuple, buf: bytearray, view: memoryview) -> list:
    """Stat each chunk's files: [(bytes, fingerprint, stats | None, (digests, hashed) | None, recent)].

    stats is None when the fingerprint of names and stats is the expected one. Files of chunks marked
    eager are read on the way, up to a byte budget for the task (hashed: 1 for each file read). recent:
    the files modified since cutoff.
    """
    cutoff, items = task
    out = []
    budget = _EAGER_BYTES
    open_, fstat, stat_, close, pack, isreg = os.open, os.fstat, os.stat, os.close, _STAT.pack, stat.S_ISREG
    for folder, names, expected, eager in items:
        try:
            dfd = os.open(folder, _DIR_FLAGS)
        except OSError as e:
            raise _Unreadable(folder, e.strerror or str(e)) from e
        stats = bytearray()
        digests = bytearray() if eager else None
        hashed = bytearray(len(names)) if eager else None
        nbytes = 0
        recent = []
        i = -1  # the hot loop of a first plan: every line counts
        try:
            for i, name in enumerate(names):
                if eager and budget > 0:  # open first: one lookup of the name, the stat of what is read
                    fd = open_(name, _OPEN_FLAGS, dir_fd=dfd)
                    try:
                        st = fstat(fd)
                        size = st.st_size
                        if size <= budget and isreg(st.st_mode):
                            digests += _digest_fd(fd, size, buf, view)
                            hashed[i] = 1
                            budget -= size
                        else:
                            digests += bytes(_DIGEST)
                    finally:
                        close(fd)
                else:
                    st = stat_(name, dir_fd=dfd)  # follows a symlinked file, as MedPerf's open() does
                    if eager:
                        digests += bytes(_DIGEST)
                if not isreg(st.st_mode):
                    raise _Unreadable(os.path.join(folder, name), f"{_kind(st.st_mode)}, not a regular file")
                stats += pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                nbytes += st.st_size
                if st.st_mtime_ns >= cutoff or st.st_ctime_ns >= cutoff:
                    recent.append(i)
        except OSError as e:
            raise _Unreadable(os.path.join(folder, names[i]), e.strerror or str(e)) from e
        finally:
            os.close(dfd)
        fingerprint = None
        if expected is not None:
            fingerprint = hashlib.blake2b(b"\0".join(names) + b"\1" + stats, digest_size=16).digest()
            if fingerprint == expected:
                out.append((nbytes, fingerprint, None, None, recent))
                continue
        out.append((nbytes, fingerprint, bytes(stats), (bytes(digests), bytes(hashed)) if eager else None, recent))
    return out


def _hash_batch(groups: list, buf: bytearray, view: memoryview) -> bytes:
    """Digests (32 bytes each, in order) of [(folder, names, sizes)]."""
    out = bytearray()
    for folder, names, sizes in groups:
        try:
            dfd = os.open(folder, _DIR_FLAGS)
        except OSError as e:
            raise _Unreadable(folder, e.strerror or str(e)) from e
        try:
            for name, size in zip(names, sizes, strict=True):
                try:
                    out += _digest(dfd, name, size, buf, view)
                except OSError as e:
                    raise _Unreadable(os.path.join(folder, name), e.strerror or str(e)) from e
        finally:
            os.close(dfd)
    return bytes(out)


def _run(kind: str, payload, buf: bytearray, view: memoryview):
    return _scan(payload, buf, view) if kind == "scan" else _hash_batch(payload, buf, view)


def _serve() -> None:
    """A worker process: read tasks on stdin, write results on stdout, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends a worker at once, without a traceback
    buf = bytearray(_BUFFER_SIZE)
    view = memoryview(buf)
    _write_all(1, bytes(4))  # an empty frame: ready
    while (frame := _read_frame(0)) is not None:
        tag, kind, payload = marshal.loads(frame)
        try:
            reply = (tag, None, _run(kind, payload, buf, view))
        except _Unreadable as e:
            reply = (tag, (os.fsdecode(e.args[0]), e.args[1]), None)
        data = marshal.dumps(reply)
        _write_all(1, len(data).to_bytes(4, "little") + data)


def _read_frame(fd: int) -> bytes | None:
    head = _read_exactly(fd, 4)
    return None if head is None else _read_exactly(fd, int.from_bytes(head, "little"))


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        data = os.read(fd, left)
        if not data:
            return None
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Worker:
    __slots__ = ("proc", "stdin", "stdout", "out", "inbox", "tasks", "ready")

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.stdin, self.stdout = proc, proc.stdin.fileno(), proc.stdout.fileno()
        self.out = bytearray()  # frames not yet written to its stdin
        self.inbox = bytearray()  # bytes read from its stdout, not yet a whole frame
        self.tasks: dict[int, object] = {}  # tag -> context, sent and not answered
        self.ready = False


class _Pool:
    """Worker processes: tasks go out in frames on their stdin, results come back on their stdout.

    Own processes rather than multiprocessing: a worker imports this module only (not the program's
    __main__), Ctrl-C kills it without a traceback, and a pool that is told to stop kills its workers
    instead of waiting for one stuck in a read.
    """

    def __init__(self, count: int):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = "import sys; sys.path.insert(0, sys.argv[1]); from runner.hashing import _serve; _serve()"
        self._sel = selectors.DefaultSelector()
        self._workers: list[_Worker] = []
        self._tag = 0
        try:
            for _ in range(count):
                w = _Worker(subprocess.Popen([sys.executable, "-I", "-S", "-c", code, root], bufsize=0,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True))
                self._workers.append(w)
                os.set_blocking(w.stdin, False)
                self._sel.register(w.stdout, selectors.EVENT_READ, w)
        except BaseException:
            self.kill()
            raise

    @property
    def starting(self) -> bool:
        return not all(w.ready for w in self._workers)

    def free(self) -> _Worker | None:
        """The least busy started worker, if it can take a task."""
        ready = [w for w in self._workers if w.ready]
        w = min(ready, key=lambda w: len(w.tasks), default=None)
        return w if w is not None and len(w.tasks) < _DEPTH else None

    def idle(self) -> bool:
        return not any(w.tasks for w in self._workers)

    def send(self, w: _Worker, kind: str, payload, context: object) -> None:
        self._tag += 1
        w.tasks[self._tag] = context
        data = marshal.dumps((self._tag, kind, payload))
        w.out += len(data).to_bytes(4, "little") + data
        self._flush(w)

    def _flush(self, w: _Worker) -> None:
        try:
            del w.out[:os.write(w.stdin, w.out)]
        except BlockingIOError:
            pass
        except BrokenPipeError:
            self._stopped()
        key = self._sel.get_map().get(w.stdin)
        if w.out and key is None:
            self._sel.register(w.stdin, selectors.EVENT_WRITE, w)
        elif not w.out and key is not None:
            self._sel.unregister(w.stdin)

    def wait(self, timeout: float) -> list[tuple[object, object, object]]:
        """Results that arrived within timeout: [(context, error, result)]."""
        done = []
        for key, events in self._sel.select(timeout):
            w = key.data
            if events & selectors.EVENT_WRITE:
                self._flush(w)
                continue
            data = os.read(w.stdout, 1 << 20)
            if not data:
                self._stopped()
            inbox = w.inbox
            inbox += data
            while len(inbox) >= 4 and len(inbox) >= 4 + (n := int.from_bytes(inbox[:4], "little")):
                if n == 0:  # the empty frame a worker sends once started
                    w.ready = True
                else:
                    tag, error, result = marshal.loads(inbox[4:4 + n])
                    done.append((w.tasks.pop(tag), error, result))
                del inbox[:4 + n]
        return done

    def _stopped(self) -> None:
        time.sleep(0.05)  # its exit status, once it has one
        codes = [w.proc.poll() for w in self._workers]
        if -signal.SIGINT in codes:  # Ctrl-C reached the workers first
            raise KeyboardInterrupt
        raise HashError(f"a hash worker process stopped (exit statuses {codes})",
                        hint="hash again, or pass workers=1 to read in this process")

    def stop(self) -> None:
        """Tell the workers there is no more work: they exit when their stdin closes."""
        for w in self._workers:
            w.proc.stdin.close()

    def close(self) -> None:
        """Wait for the workers to exit (stopped earlier, they have by now); kill any that do not."""
        self.stop()
        deadline = time.monotonic() + 2
        for w in self._workers:
            try:
                w.proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
        self._release()

    def kill(self) -> None:
        """Stop at once, however stuck a worker is (a read from a hung disk ends when it ends, unwaited)."""
        for w in self._workers:
            try:
                w.proc.kill()
            except OSError:
                pass
        for w in self._workers:
            try:
                w.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        self._release()

    def _release(self) -> None:
        self._sel.close()
        for w in self._workers:
            for f in (w.proc.stdin, w.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass


# -- the cache ---------------------------------------------------------------------------------------------

class HashCache:
    """Remembers file digests by (path, size, mtime_ns, ctime_ns, inode) in a sqlite file; thread-safe.

    A folder's files are listed in runs of up to 256 (chunks). A row of `chunks` holds one run's names,
    stats and digests, with a fingerprint of the names and stats in listing order: a run whose files did
    not change is answered by one row, and a changed file costs its run's row, not its folder's. `dirs`
    holds each folder's number of runs and a fingerprint of its subfolder names (to forget what is gone);
    `folders` the digest of a set of folders hashed together, with a fingerprint of all their runs.

    A row per file would cost 1.5 to 2 us per file in Python's sqlite3 (0.3 to 0.5 s of CPU for 200,000
    files on the machine this was measured on), more than the rest of a first plan's bookkeeping together.
    """

    _SCHEMA = 6

    def __init__(self, path: Path, *, timeout: float = 30.0, settle: float = _SETTLE):
        self.path = Path(path)
        self.timeout = timeout  # seconds to wait for another process's write
        # A file modified (mtime or ctime) less than settle seconds before a hash began might be modified
        # again within the same timestamp tick, unseen by its stat (git's "racy clean" problem; FAT has 2 s
        # ticks): it is read on every plan until it is older, while the rest of its folder is remembered.
        self.settle = settle
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
        db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA user_version").fetchone()[0] != self._SCHEMA:
                db.execute("BEGIN IMMEDIATE")  # another process may be creating it at the same moment
                if db.execute("PRAGMA user_version").fetchone()[0] != self._SCHEMA:
                    for table in ("files", "folders", "digests", "dirs", "chunks"):  # older layouts
                        db.execute(f"DROP TABLE IF EXISTS {table}")
                    db.execute("CREATE TABLE dirs (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE, "
                               "chunks INTEGER NOT NULL, subdirs BLOB)")
                    # what an unchanged chunk needs comes first: names and stats (read only for a chunk that
                    # changed) at the end of a row of several KiB, most of it on overflow pages
                    db.execute("CREATE TABLE chunks (dir INTEGER NOT NULL, n INTEGER NOT NULL, "
                               "fingerprint BLOB NOT NULL, bytes INTEGER NOT NULL, digests BLOB NOT NULL, "
                               "names BLOB NOT NULL, stats BLOB NOT NULL, PRIMARY KEY (dir, n))")
                    db.execute("CREATE TABLE folders (paths BLOB PRIMARY KEY, fingerprint BLOB NOT NULL, "
                               "digest TEXT NOT NULL)")
                    db.execute(f"PRAGMA user_version={self._SCHEMA}")
                db.execute("COMMIT")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def folder(self, path: bytes) -> tuple[int, int, bytes | None, tuple | None] | None:
        """(id, number of chunks, subfolder fingerprint, its first chunk as chunk() has it) of a folder, or None."""
        with self._lock:
            row = self._db.execute("SELECT d.id, d.chunks, d.subdirs, c.fingerprint, c.digests FROM dirs d "
                                   "LEFT JOIN chunks c ON c.dir = d.id AND c.n = 0 WHERE d.path = ?",
                                   (path,)).fetchone()
        if row is None:
            return None
        return row[:3] + ((row[3:] if row[3] is not None else None),)

    def chunk(self, folder: int, n: int) -> tuple[bytes, bytes] | None:
        """(fingerprint, digests) of a folder's n-th chunk, or None."""
        with self._lock:
            return self._db.execute("SELECT fingerprint, digests FROM chunks WHERE dir = ? AND n = ?",
                                    (folder, n)).fetchone()

    def records(self, folder: int, n: int | None = None) -> list[tuple[bytes, bytes, bytes]]:
        """(names, stats, digests) of a folder's n-th chunk, or of all its chunks."""
        with self._lock:
            if n is None:
                return self._db.execute("SELECT names, stats, digests FROM chunks WHERE dir = ?",
                                        (folder,)).fetchall()
            return self._db.execute("SELECT names, stats, digests FROM chunks WHERE dir = ? AND n = ?",
                                    (folder, n)).fetchall()

    def digest(self, paths: bytes, fingerprint: bytes) -> str | None:
        """The digest remembered for this set of folders with exactly this fingerprint, or None."""
        with self._lock:
            row = self._db.execute("SELECT fingerprint, digest FROM folders WHERE paths = ?", (paths,)).fetchone()
        return row[1] if row is not None and row[0] == fingerprint else None

    def write(self, writes: _Writes) -> None:
        """Apply the pending writes in one transaction (sqlite3.Error if they cannot be)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = writes.ids
                for path in writes.new_dirs:
                    if path not in ids:
                        db.execute("INSERT OR IGNORE INTO dirs (path, chunks) VALUES (?, 0)", (path,))
                        ids[path] = db.execute("SELECT id FROM dirs WHERE path = ?", (path,)).fetchone()[0]
                db.executemany("INSERT OR REPLACE INTO chunks (dir, n, fingerprint, names, stats, digests, bytes) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", ((ids[path], *rest) for path, *rest in writes.chunks))
                for path, chunks, subdirs, prune in writes.dirs:
                    self._settle(ids[path], path, chunks, subdirs, prune)
                db.executemany("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", writes.folders)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _settle(self, folder: int, path: bytes, chunks: int, subdirs: tuple, prune: bool) -> None:
        """Forget a folder's chunks from the chunks-th on, and (when prune) its subfolders not in subdirs."""
        db = self._db
        db.execute("DELETE FROM chunks WHERE dir = ? AND n >= ?", (folder, chunks))
        if prune:
            keep = set(subdirs)
            lo = path.rstrip(b"/") + b"/"
            for sub, sub_path in db.execute("SELECT id, path FROM dirs WHERE path > ? AND path < ?",
                                            (lo, lo[:-1] + b"0")).fetchall():
                if sub_path[len(lo):].split(b"/", 1)[0] not in keep:
                    db.execute("DELETE FROM chunks WHERE dir = ?", (sub,))
                    db.execute("DELETE FROM dirs WHERE id = ?", (sub,))
        db.execute("UPDATE dirs SET chunks = ?, subdirs = ? WHERE id = ?",
                   (chunks, _subdirs_fingerprint(subdirs), folder))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Writes:
    """Cache writes waiting for the next transaction, and the ids of the folders the cache knows."""

    def __init__(self):
        self.ids: dict[bytes, int] = {}
        self.clear()

    def clear(self) -> None:
        self.files = 0  # in the chunks below
        self.new_dirs: list[bytes] = []
        self.chunks: list[tuple] = []  # (folder, n, fingerprint, names, stats, digests, bytes)
        self.dirs: list[tuple] = []  # (folder, chunks, subfolder names, prune)
        self.folders: list[tuple] = []  # (paths, fingerprint, digest)

    def __len__(self) -> int:
        return len(self.chunks) + len(self.dirs) + len(self.folders)


def _subdirs_fingerprint(names: Iterable[bytes]) -> bytes:
    return hashlib.blake2b(b"\0".join(sorted(names)), digest_size=16).digest()


def _records(names: bytes, stats: bytes, digests: bytes) -> dict[bytes, tuple[tuple, bytes]]:
    """{name: (stat, digest)} of a chunk row (nothing from a damaged one)."""
    count = names.count(b"\0") + 1 if names else 0
    if not count or len(stats) != 32 * count or len(digests) != _DIGEST * count:
        return {}
    return dict(zip(names.split(b"\0"), zip(_STAT_READ.iter_unpack(stats),
                                             (digests[i:i + _DIGEST] for i in range(0, len(digests), _DIGEST)),
                                             strict=True), strict=True))


# -- the walk ----------------------------------------------------------------------------------------------

def _under(path: bytes, folder: bytes) -> bool:
    return path == folder or path.startswith(folder.rstrip(b"/") + b"/")


def _walk(top: bytes, count: int, nested: dict[bytes, int]) -> Iterator[tuple]:
    """List the files under top as os.walk(top) finds them, in chunks: ("files", folder, names, times) and,
    after a folder's last chunk, ("end", folder, subfolder names). times: how often the folder is counted
    (a top given twice, or a top inside another, counts its files as often). Symlinked files are listed
    when they lead inside the (innermost) top; symlinked folders are not entered, as in MedPerf."""
    stack = [(top, count, os.path.realpath(top), top)]
    while stack:
        folder, times, inside, named = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as e:
            # MedPerf's os.walk skips an unreadable folder silently, giving a wrong hash without a word.
            raise HashError(f"cannot list {os.fsdecode(folder)}: {e.strerror or e}", where=os.fsdecode(folder),
                            hint="make every folder under the data folders readable by this user") from e
        names: list[bytes] = []
        subdirs: list[bytes] = []
        add = names.append
        with it:
            for entry in it:  # the hot loop of a re-plan: no system call for a file or a folder
                try:
                    if entry.is_file(follow_symlinks=False) or (entry.is_symlink()
                                                                and _linked_file(entry.path, inside, named)):
                        add(entry.name)
                        if len(names) == _CHUNK:
                            yield ("files", folder, names, times)
                            names = []
                            add = names.append
                    elif entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
                        extra = nested.get(entry.path)
                        stack.append((entry.path, times + extra, os.path.realpath(entry.path), entry.path)
                                     if extra else (entry.path, times, inside, named))
                    elif not entry.is_symlink():
                        mode = entry.stat(follow_symlinks=False).st_mode
                        raise HashError(f"{os.fsdecode(entry.path)} is {_kind(mode)}, not a regular file",
                                        where=os.fsdecode(entry.path),
                                        hint="move it out of the data folder: only files and folders are hashed")
                except OSError as e:
                    raise HashError(f"cannot read {os.fsdecode(entry.path)}: {e.strerror or e}",
                                    where=os.fsdecode(entry.path),
                                    hint="a broken symlink, or a file removed while hashing") from e
        if names:
            yield ("files", folder, names, times)
        yield ("end", folder, subdirs)


def _linked_file(link: bytes, inside: bytes, top: bytes) -> bool:
    """Whether a symlink is to a file (True) or a folder (False); an error if it leads outside or nowhere."""
    target = os.path.realpath(link)
    shown = os.fsdecode(link)
    if not _under(target, inside):
        raise HashError(f"{shown} is a symlink to {os.fsdecode(target)}, outside the data folder "
                        f"{os.fsdecode(top)}", where=shown,
                        hint="copy the file into the data folder: the container sees only that folder")
    try:
        mode = os.stat(link).st_mode
    except OSError as e:
        raise HashError(f"cannot read {shown}: {e.strerror or e}", where=shown,
                        hint="a broken symlink, or a file removed while hashing") from e
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        raise HashError(f"{shown} leads to {_kind(mode)}, not a regular file", where=shown,
                        hint="move it out of the data folder: only files and folders are hashed")
    return True


# -- one hash ----------------------------------------------------------------------------------------------

class _Folder:
    __slots__ = ("path", "known", "open", "ended", "listed", "subdirs", "index")

    def __init__(self, path: bytes, known: tuple | None):
        self.path = path
        self.known = known  # (id, chunks, subfolder fingerprint, first chunk) from the cache, or None
        self.open = 0  # chunks not finished
        self.ended = False  # listed to the end
        self.listed = 0
        self.subdirs: tuple[bytes, ...] = ()
        self.index: dict | None = None  # every remembered file, once a file is not where it was


class _Chunk:
    __slots__ = ("folder", "n", "names", "times", "seq", "row", "matched", "raw", "stats", "digests", "left",
                 "keep", "recent", "fp")

    def __init__(self, folder: _Folder, n: int, names: list[bytes], times: int, seq: int, row):
        self.folder, self.n, self.names, self.times, self.seq = folder, n, names, times, seq
        self.row = row  # (fingerprint, digests) remembered, or None
        self.matched = False  # every file as remembered
        self.raw = b""  # the stats as the scan packed them
        self.stats: list[tuple] = []  # unpacked, when files are looked at one by one
        self.digests: bytes | bytearray = b""
        self.left = 0  # files waiting for a hash task
        self.keep: list[int] | None = None  # the files to remember (None: all)
        self.recent = False  # a file was modified too recently to trust its stat
        self.fp = b""


class _Digests:
    """Every digest once per occurrence, 32 raw bytes each, in 256 runs by first byte (so that sorting
    takes small steps). While every chunk so far was answered whole by the cache, the runs wait: a set of
    folders whose fingerprint then matches needs no sorting at all."""

    def __init__(self):
        self.runs: list[bytearray] | None = None
        self.waiting: list[tuple[bytes, int]] = []

    def add(self, digests: bytes, times: int, matched: bool) -> None:
        if matched and self.runs is None:
            self.waiting.append((digests, times))
            return
        if self.runs is None:
            self.runs = [bytearray() for _ in range(256)]
            waiting, self.waiting = self.waiting, []
            for blob in waiting:
                self._spread(*blob)
        self._spread(digests, times)

    def _spread(self, digests: bytes, times: int) -> None:
        runs, view = self.runs, memoryview(digests)
        for _ in range(times):
            for i in range(0, len(digests), _DIGEST):
                runs[digests[i]] += view[i:i + _DIGEST]

    def hexdigest(self) -> str:
        if self.runs is None:
            self.add(b"", 1, False)
        # hex keeps the order of bytes, so sorting raw digests sorts their hex strings
        total = hashlib.sha256()
        for run in self.runs:
            total.update(b"".join(sorted(run[i:i + _DIGEST] for i in range(0, len(run), _DIGEST))).hex().encode())
            run.clear()
        return total.hexdigest()


class _Hash:
    """One folders_hash: the walk feeds scan tasks, scans feed hash tasks, run by the workers (or here)."""

    def __init__(self, cache: HashCache | None, workers: int, on_progress, on_warning):
        self.cache, self.workers = cache, workers
        self.on_progress, self.on_warning = on_progress, on_warning
        self.cutoff = time.time_ns() - int((cache.settle if cache is not None else _SETTLE) * 1e9)
        self.writes = _Writes()
        self.writable = cache is not None
        self.trusted = cache is not None  # every chunk remembered: the set's digest may be too
        self.pool: _Pool | None = None
        self.buf: bytearray | None = None
        self.queue: deque[tuple[str, object, object, int]] = deque()  # (kind, payload, context, bytes)
        self.scan_items: list = []
        self.scan_chunks: list[_Chunk] = []
        self.scan_files = 0
        self.batch: list = []  # [(folder, names, sizes)]
        self.batch_refs: list[tuple[_Chunk, int]] = []
        self.batch_bytes = 0
        self.queued_bytes = 0  # in hash tasks not finished
        self.ahead = 0  # files of unfinished chunks
        self.unscanned = 0  # files of chunks not scanned yet
        self.work = 0.0  # files listed, those the cache may know counted for less
        self.exhausted = False
        self.digests = _Digests()
        self.fps: list[bytes] = []  # chunk fingerprints in walk order
        self.layout = hashlib.blake2b(digest_size=16)  # folders, chunk numbers and counts in walk order
        self.done = [0, 0]  # bytes, files
        self.total = [0, 0]
        self.reported = 0.0

    def run(self, walks: list[Iterator[tuple]], key: bytes) -> str:
        events = (event for walk in walks for event in walk)
        folders: dict[bytes, _Folder] = {}  # being listed
        try:
            while True:
                # list ahead, within bounds: enough to keep every worker busy, never the whole tree
                while not self.exhausted and self.ahead < _AHEAD_FILES and len(self.queue) < 4 * self.workers:
                    event = next(events, None)
                    if event is None:
                        self.exhausted = True
                    elif event[0] == "files":
                        self._chunk(folders, *event[1:])
                    else:
                        f = folders.pop(event[1], None) or self._folder(event[1])
                        f.ended, f.subdirs = True, tuple(event[2])
                        if not f.open:
                            self._settle(f)
                if not self.queue:
                    self._flush_scan()
                    self._flush_batch()
                if self.queue or (self.pool is not None and not self.pool.idle()):
                    self._dispatch()
                elif self.exhausted:
                    break
                elif self.ahead >= _AHEAD_FILES:
                    raise RuntimeError("hashing stalled: files unfinished and no task for them")  # a bug
            if self.ahead:
                raise RuntimeError("hashing ended with files unfinished")  # a bug
            if self.pool is not None:
                self.pool.stop()
            self._report(force=True)
            fingerprint = hashlib.blake2b(self.layout.digest() + b"".join(self.fps), digest_size=16).digest()
            digest = self._read(lambda c: c.digest(key, fingerprint)) if self.trusted else None
            if digest is None:
                digest = self.digests.hexdigest()
                if self.trusted:
                    self.writes.folders.append((key, fingerprint, digest))
            self._write(force=True)
            if self.pool is not None:
                self.pool.close()
                self.pool = None
            return digest
        finally:
            if self.pool is not None:
                self.pool.kill()

    # the walk's side ---------------------------------------------------------------------------------------

    def _folder(self, path: bytes) -> _Folder:
        f = _Folder(path, self._read(lambda c: c.folder(path)))
        if f.known:
            self.writes.ids.setdefault(path, f.known[0])
        return f

    def _chunk(self, folders: dict, path: bytes, names: list[bytes], times: int) -> None:
        f = folders.get(path)
        if f is None:
            f = folders[path] = self._folder(path)
        n = f.listed // _CHUNK
        f.listed += len(names)
        f.open += 1
        if not f.known:
            row = None
        elif n == 0:
            row = f.known[3]
        else:
            row = self._read(lambda c: c.chunk(f.known[0], n))
        if row is not None and len(row[1]) != _DIGEST * len(names):
            row = None  # not a digest for each file: a fingerprint that cannot match, or a damaged row
        c = _Chunk(f, n, names, times, len(self.fps), row)
        self.fps.append(b"")
        self.layout.update(b"%s\0%d\0%d\0%d\0" % (path, n, len(names), times))
        self.ahead += len(names)
        self.unscanned += len(names)
        # expected: the remembered fingerprint; b"" to have one computed; None when there is no cache
        expected = row[0] if row else (b"" if self.cache is not None else None)
        self.scan_items.append((path, names, expected, not f.known))
        self.scan_chunks.append(c)
        self.scan_files += len(names)
        if self.scan_files >= _SCAN_FILES:
            self._flush_scan()
        # a file the cache may know costs a stat, a fraction of reading it
        self.work += len(names) if not f.known else len(names) / 8
        if self.pool is None and self.workers > 1 and self.work >= _POOL_FILES:
            self._start_pool()

    def _flush_scan(self) -> None:
        if self.scan_items:
            self.queue.append(("scan", (self.cutoff, self.scan_items), self.scan_chunks, _EAGER_BYTES))
            self.scan_items, self.scan_chunks, self.scan_files = [], [], 0

    def _flush_batch(self) -> None:
        if self.batch:
            self.queue.append(("hash", self.batch, self.batch_refs, self.batch_bytes))
            self.queued_bytes += self.batch_bytes
            self.batch, self.batch_refs, self.batch_bytes = [], [], 0
            if self.pool is None and self.workers > 1 and self.queued_bytes >= _POOL_BYTES:
                self._start_pool()

    # running tasks -----------------------------------------------------------------------------------------

    def _start_pool(self) -> None:
        try:
            self.pool = _Pool(self.workers)  # the workers start while this process goes on listing
        except OSError as e:
            self.workers = 1
            self.on_warning(f"cannot start hash worker processes ({e}); reading the files in this process")

    def _dispatch(self) -> None:
        pool = self.pool
        if pool is None:
            self._here()
        else:
            # while the workers start (tens of ms), this process reads what is quick to read
            meanwhile = bool(self.queue) and pool.starting and self.queue[0][3] <= _BATCH_BYTES
            self._send()
            results = pool.wait(0 if meanwhile else _PROGRESS_EVERY)
            self._send()  # the workers that just finished get their next task before this process gets busy
            for (kind, context), error, result in results:
                if error is not None:
                    raise self._unreadable(*error)
                self._done(kind, context, result)
            if meanwhile and self.queue and pool.starting and self.queue[0][3] <= _BATCH_BYTES:
                self._here()
        self._report()

    def _here(self) -> None:
        """Run the next task in this process."""
        kind, payload, context, _ = self.queue.popleft()
        if self.buf is None:
            self.buf = bytearray(_BUFFER_SIZE)
        try:
            result = _run(kind, payload, self.buf, memoryview(self.buf))
        except _Unreadable as e:
            raise self._unreadable(os.fsdecode(e.args[0]), e.args[1]) from None
        self._done(kind, context, result)

    def _send(self) -> None:
        while self.queue and (w := self.pool.free()) is not None:
            kind, payload, context, _ = self.queue.popleft()
            self.pool.send(w, kind, payload, (kind, context))

    @staticmethod
    def _unreadable(path: str, reason: str) -> HashError:
        return HashError(f"cannot read {path}: {reason}", where=path, hint=_READ_HINT)

    def _done(self, kind: str, context, result) -> None:
        if kind == "scan":
            for c, item in zip(context, result, strict=True):
                self._scanned(c, *item)
            return
        self.queued_bytes -= sum(c.stats[i][0] for c, i in context)
        for k, (c, i) in enumerate(context):
            c.digests[_DIGEST * i:_DIGEST * (i + 1)] = result[_DIGEST * k:_DIGEST * (k + 1)]
            self._count(c.stats[i][0], 1)
            c.left -= 1
            if not c.left:
                self._finish(c)

    def _scanned(self, c: _Chunk, nbytes: int, fp: bytes | None, stats: bytes | None, eager, recent) -> None:
        count = len(c.names)
        self.total[0] += nbytes
        self.total[1] += count
        self.unscanned -= count
        c.fp = fp or b""
        if stats is None:  # every file as remembered
            c.matched = True
            c.digests = c.row[1]
            self._count(nbytes, count)
            self._finish(c)
            return
        c.raw = stats
        c.recent = bool(recent)
        fresh = set(recent)
        if eager is not None and eager[1].count(1) == count:  # every file read by the scan
            c.digests = eager[0]
            c.keep = [i for i in range(count) if i not in fresh] if fresh else None
            self._count(nbytes, count)
            self._finish(c)
            return
        c.stats = list(_STAT_READ.iter_unpack(stats))
        c.digests = bytearray(eager[0]) if eager is not None else bytearray(_DIGEST * count)
        hashed = eager[1] if eager is not None else bytes(count)
        find = self._finder(c)
        todo = []
        for i, (name, st) in enumerate(zip(c.names, c.stats, strict=True)):
            if not hashed[i]:
                found = find(name)
                if found is not None and found[0] == st:  # remembered only for a stat old enough to trust
                    c.digests[_DIGEST * i:_DIGEST * (i + 1)] = found[1]
                    self._count(st[0], 1)
                else:
                    todo.append(i)
            else:
                self._count(st[0], 1)
        if fresh:
            c.keep = [i for i in range(count) if i not in fresh]
        c.left = len(todo)
        for i in todo:
            self._to_batch(c, i)
        if not todo:
            self._finish(c)

    def _finder(self, c: _Chunk) -> Callable[[bytes], tuple | None]:
        """Look a file up where it was (its chunk's row), then anywhere in its folder (all of them, once)."""
        f = c.folder
        own = {}
        if f.known:
            for row in self._read(lambda cache: cache.records(f.known[0], c.n)) or ():
                own = _records(*row)

        def find(name: bytes):
            found = own.get(name)
            if found is None and f.known:
                if f.index is None:
                    f.index = {}
                    for row in self._read(lambda cache: cache.records(f.known[0])) or ():
                        f.index.update(_records(*row))
                found = f.index.get(name)
            return found
        return find

    def _to_batch(self, c: _Chunk, i: int) -> None:
        size = c.stats[i][0]
        if self.batch and (len(self.batch_refs) >= _BATCH_FILES or self.batch_bytes + size > _BATCH_BYTES):
            self._flush_batch()
        path = c.folder.path
        if not self.batch or self.batch[-1][0] != path:
            self.batch.append((path, [], []))
        self.batch[-1][1].append(c.names[i])
        self.batch[-1][2].append(size)
        self.batch_refs.append((c, i))
        self.batch_bytes += size

    def _finish(self, c: _Chunk) -> None:
        f = c.folder
        self.ahead -= len(c.names)
        self.fps[c.seq] = c.fp
        self.digests.add(c.digests, c.times, c.matched)
        if c.recent:
            self.trusted = False
        if self.writable and not c.matched and (c.keep is None or c.keep):
            # a chunk with a file too recent to trust keeps the others, under a fingerprint that never matches
            digests, raw, keep = bytes(c.digests), c.raw, c.keep
            if keep is None:
                names = b"\0".join(c.names)
            else:
                names = b"\0".join(c.names[i] for i in keep)
                raw = b"".join(raw[32 * i:32 * (i + 1)] for i in keep)
                digests = b"".join(digests[_DIGEST * i:_DIGEST * (i + 1)] for i in keep)
            self.writes.new_dirs.append(f.path)
            self.writes.chunks.append((f.path, c.n, b"" if c.recent else c.fp, names, raw, digests,
                                       sum(array("q", raw)[0::4])))
            self.writes.files += len(c.names)
            self._write()
        c.names, c.stats, c.keep, c.raw, c.digests, c.row = [], [], [], b"", b"", None
        f.open -= 1
        if f.ended and not f.open:
            self._settle(f)

    def _settle(self, f: _Folder) -> None:
        """A folder done: remember its number of chunks and subfolders; forget what is gone."""
        f.index = None
        if not self.writable:
            return
        chunks = -(-f.listed // _CHUNK)
        pruned = f.known is not None and f.known[2] != _subdirs_fingerprint(f.subdirs)
        if f.known is None or f.known[1] != chunks or pruned:
            self.writes.new_dirs.append(f.path)
            self.writes.dirs.append((f.path, chunks, f.subdirs, pruned))
            self._write()

    # the edges ---------------------------------------------------------------------------------------------

    def _read(self, query):
        if self.cache is None:
            return None
        try:
            return query(self.cache)
        except sqlite3.Error as e:
            self._cache_failed("read", e)
            self.cache = None
            self.writable = self.trusted = False
            return None

    def _write(self, force: bool = False) -> None:
        if not self.writable or not len(self.writes) or not (force or self.writes.files >= _WRITE_FILES):
            return
        try:
            self.cache.write(self.writes)
        except sqlite3.Error as e:
            self.writable = self.trusted = False
            self._cache_failed("written", e)
        self.writes.clear()

    def _cache_failed(self, what: str, e: sqlite3.Error) -> None:
        self.on_warning(f"the hash cache {self.cache.path} cannot be {what} ({e}): this hash is right, but "
                        "the next plan will read these files again; check the state dir's free space and "
                        "permissions")

    def _count(self, nbytes: int, files: int) -> None:
        self.done[0] += nbytes
        self.done[1] += files

    def _report(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self.reported >= _PROGRESS_EVERY:
            self.reported = now
            final = force or (self.exhausted and not self.unscanned)
            total = Amount(max(self.total[0], self.done[0]), max(self.total[1], self.done[1]), final)
            self.on_progress(Amount(self.done[0], self.done[1]), total)


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")  # looked up now: a progress display may have replaced stderr
    sys.stderr.flush()


def folders_hash(
    paths: Sequence[Path],
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> str:
    """Return MedPerf's hash of the folders, reading only files the cache cannot answer for.

    HashError names what cannot be hashed: a file or folder that cannot be read, a FIFO, socket or device,
    a symlink leading outside its data folder (with its target: the container would not see it).
    workers: processes reading files (default: one per CPU, up to 8; 1 reads in this process).
    on_progress(done, total): bytes, as Amount (an int with .files and, for total, .final).
    on_warning(text): a cache that cannot be read or written (default: a line on stderr).
    """
    given = [os.fsencode(os.path.abspath(os.fspath(p))) for p in paths]
    counts: dict[bytes, int] = {}
    for top in given:
        if os.path.isdir(top):  # a missing path contributes nothing
            counts[top] = counts.get(top, 0) + 1
    # A top inside another one's walk is walked with it and counted again there (each file read once).
    nested = {t: c for t, c in counts.items() if any(_within_walk(t, o) for o in counts if o != t)}
    walks = [_walk(t, c, nested) for t, c in counts.items() if t not in nested]
    job = _Hash(cache, workers or _default_workers(), on_progress, on_warning or _warn)
    return job.run(walks, b"\0".join(given))


def _within_walk(path: bytes, top: bytes) -> bool:
    """Whether os.walk(top) reaches path: it is under top with no symlink on the way."""
    if not _under(path, top) or path == top:
        return False
    rel = path[len(top.rstrip(b"/")) + 1:]
    return os.path.realpath(path) == os.path.join(os.path.realpath(top), rel)
