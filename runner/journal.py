"""How the state dir's files are written and guarded: atomic writes, YAML files, the run lock, the step journal
and the privacy ledger (JSON lines)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from runner.errors import LockHeld, StateError

COMPACT_ABOVE = 1 << 20  # the journal is rewritten without its finished steps past this size


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """Write the file so that readers see the old content or the new, never a part: temp + fsync + rename."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # imported here: a plan that writes nothing does not pay for it

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise StateError(f"cannot write: {e.strerror or e}", where=str(path),
                         hint="check the state dir's permissions and free space") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise StateError(f"cannot write: {e.strerror or e}", where=str(path),
                             hint="check the state dir's permissions and free space") from e
        raise
    _fsync_dir(path.parent)


def write_yaml_atomic(path: Path, obj: Any) -> None:
    """Write obj as YAML, atomically."""
    write_atomic(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True))


def read_yaml(path: Path, default: Any = None) -> Any:
    """Return the file's YAML content, default when it does not exist; StateError when it cannot be parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as e:
        raise StateError(f"cannot read: {getattr(e, 'strerror', None) or e}", where=str(path),
                         hint="check the file's permissions, or delete it so it is rebuilt") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise StateError(f"corrupt YAML ({getattr(e, 'problem', None) or e})", where=where,
                         hint="delete the file; the next run rebuilds it from the server and the local data") from e


# -- the lock ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a state dir's lock."""

    pid: int | None
    host: str
    started: str
    run_id: str

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        try:
            d = json.loads(text)
            return cls(pid=d.get("pid"), host=str(d.get("host", "?")), started=str(d.get("started", "?")),
                       run_id=str(d.get("run_id", "?")))
        except (ValueError, AttributeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}, run {self.run_id}"


@dataclass
class Lock:
    """A held lock: this run's identity, and the earlier holder it took over from, if that one had died."""

    path: Path
    info: LockInfo
    took_over: LockInfo | None = None
    _fd: int | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # the file stays (unlinking it would let two runs lock two inodes)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing drops the flock


def _read_fd(fd: int) -> str:
    chunks = []
    offset = 0
    while True:
        b = os.pread(fd, 65536, offset)
        if not b:
            break
        chunks.append(b)
        offset += len(b)
    return b"".join(chunks).decode("utf-8", "replace")


# -- the journal and the ledger -----------------------------------------------------------------------------

class _JsonLines:
    """An append-only JSON-lines file, fsync'd per record, that tolerates a torn last line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=False, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as e:
                raise StateError(f"cannot append: {e.strerror or e}", where=str(self.path),
                                 hint="check the state dir's permissions and free space") from e
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a crash tore the last record: start ours on a line of its own
                os.write(fd, line)
                os.fsync(fd)
            except OSError as e:
                raise StateError(f"cannot append: {e.strerror or e}", where=str(self.path),
                                 hint="check free space") from e
            finally:
                os.close(fd)

    def _records(self) -> list[dict]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StateError(f"cannot read: {e.strerror or e}", where=str(self.path),
                             hint="check the state dir's permissions") from e
        records = []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a record torn by a crash mid-write: it never happened
            if isinstance(rec, dict):
                records.append(rec)
        return records


@dataclass(frozen=True)
class JournalEntry:
    """A mutating step that began; outcome is None while it has not ended."""

    id: str
    step: str
    started: str
    info: Mapping[str, Any]
    outcome: str | None = None


class Journal(_JsonLines):
    """journal.jsonl: "begin" before each mutating step, "end" after it; resume reads the unfinished ones."""

    def begin(self, step_key: str, **info: Any) -> str:
        """Record that a step starts; return its entry id."""
        import uuid

        entry_id = uuid.uuid4().hex[:16]
        self._append({"event": "begin", "id": entry_id, "step": step_key, "time": _now(), **info})
        return entry_id

    def end(self, entry_id: str, outcome: str, **info: Any) -> None:
        """Record how a begun step ended (changed, failed, resolved...)."""
        self._append({"event": "end", "id": entry_id, "outcome": outcome, "time": _now(), **info})

    def entries(self) -> list[JournalEntry]:
        """Every begun step, in order, with its outcome if it ended."""
        begun: dict[str, JournalEntry] = {}
        for rec in self._records():
            rid = rec.get("id")
            if rec.get("event") == "begin" and isinstance(rid, str):
                info = {k: v for k, v in rec.items() if k not in ("event", "id", "step", "time")}
                begun[rid] = JournalEntry(rid, str(rec.get("step")), str(rec.get("time")), info)
            elif rec.get("event") == "end" and rid in begun:
                e = begun[rid]
                begun[rid] = JournalEntry(e.id, e.step, e.started, e.info, str(rec.get("outcome")))
        return list(begun.values())

    def unfinished(self) -> list[JournalEntry]:
        """Steps that began and never ended (the run crashed or was killed): resolve each by observing."""
        return [e for e in self.entries() if e.outcome is None]

    def compact(self, *, max_bytes: int = COMPACT_ABOVE) -> bool:
        """Once the file outgrows max_bytes, rewrite it with only the unfinished steps (call under the lock)."""
        try:
            if self.path.stat().st_size <= max_bytes:
                return False
        except FileNotFoundError:
            return False
        keep = {e.id for e in self.unfinished()}
        lines = [json.dumps(r, ensure_ascii=False, default=str)
                 for r in self._records() if r.get("event") == "begin" and r.get("id") in keep]
        with self._lock:
            write_atomic(self.path, "".join(line + "\n" for line in lines))
        return True


class Ledger(_JsonLines):
    """ledger.jsonl: every request body sent to a server, when and where."""

    def record(self, server: str, method: str, path: str, body: Mapping[str, Any]) -> None:
        """Append what is about to be sent."""
        self._append({"time": _now(), "server": server, "method": method, "path": path, "body": body})

    def entries(self) -> list[dict]:
        return self._records()


# -- holding the lock ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def hold_lock(lock_path: Path, journal: Journal, *, timeout: float = 0.0, run_id: str | None = None,
              poll_interval: float = 0.2) -> Iterator[Lock]:
    """Hold the state dir's lock for one run; wait up to timeout seconds for another run to finish."""
    import uuid

    info = LockInfo(pid=os.getpid(), host=socket.gethostname(), started=_now(),
                    run_id=run_id or uuid.uuid4().hex[:12])
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StateError(f"cannot open the lock file: {e.strerror or e}", where=str(lock_path),
                         hint="check the state dir's permissions") from e
    deadline = time.monotonic() + max(0.0, timeout)
    try:
        while True:
            try:
                # flock dies with its process, so a crashed run never leaves the lock held.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StateError(f"cannot lock: {e.strerror or e}", where=str(lock_path),
                                     hint="is the state dir on a file system without locks?") from e
            if time.monotonic() >= deadline:
                raise _held(fd, timeout, lock_path)
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())) or 0.001)
        previous = LockInfo.parse(_read_fd(fd))
        # The lock was free yet records a holder: that run died without releasing it (a live process
        # with that pid is a reuse of the number, since the holder's flock would still be there).
        took_over = previous if previous is not None and previous.pid is not None else None
        payload = json.dumps({"pid": info.pid, "host": info.host, "started": info.started,
                              "run_id": info.run_id}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    held = Lock(lock_path, info, took_over, fd)
    try:
        journal.compact()  # only one run at a time may rewrite it: this one, now
    except BaseException:
        held.release()
        raise
    try:
        yield held
    finally:
        held.release()

def _held(fd: int, timeout: float, lock_path: Path) -> LockHeld:
    holder = LockInfo.parse(_read_fd(fd))
    who = holder.describe() if holder else "another run (it has not written its details yet)"
    waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
    return LockHeld(f"the state dir is locked by {who}{waited}", where=str(lock_path),
                    hint="wait for that run to finish, or pass --lock-timeout SECONDS to wait for it")
