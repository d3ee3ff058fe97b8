"""Database connections for SQLite and PostgreSQL: URL parsing, a small pool, transactions, migrations.

Queries are written once with `?` placeholders (store.py); for PostgreSQL they become `%s`. Writes are
serialized on both backends (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock, held in
the database, so across every server process), so the rules' check-then-insert sequences (one open association
per pair, unique operational uid, id allocation) cannot race; unique indexes back them (ConstraintViolation).
"""

from __future__ import annotations

import functools
import queue
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_LOCK_KEY = 7_340_001  # any constant; one lock serializes writers on PostgreSQL
BIGINT_MAX = 2**63 - 1  # integer columns are BIGINT: neither backend can bind a larger value


class DatabaseError(Exception):
    """The database could not be reached or migrated; the message says which URL and why."""


class ConstraintViolation(Exception):
    """A write broke a unique index: the database's backstop for a rule, hit by a writer that raced another.

    `what` names it: the constraint or index on PostgreSQL (`mlcubes_name_key`), the columns on SQLite
    (`mlcubes.name`); store.broken_rule turns either into the rule's name."""

    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.what = what


def _unique_violation(e: Exception) -> ConstraintViolation | None:
    """The ConstraintViolation a driver's error stands for, or None for any other error."""
    if isinstance(e, sqlite3.IntegrityError):
        prefix = "UNIQUE constraint failed: "
        text = str(e)
        return ConstraintViolation(text[len(prefix):], text) if text.startswith(prefix) else None
    if getattr(e, "sqlstate", None) == "23505":  # psycopg's UniqueViolation, without importing psycopg here
        return ConstraintViolation(e.diag.constraint_name or "", str(e).strip().splitlines()[0])
    return None


def fits_bigint(n: int) -> bool:
    """True if an integer column can hold `n` (the one place the bound is checked: ids, filters, bodies)."""
    return -BIGINT_MAX <= n <= BIGINT_MAX


def now() -> str:
    """Return the current UTC time as MedPerf writes it (ISO 8601, microseconds, `Z`)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Target:
    dialect: str  # "sqlite" | "postgresql"
    location: str  # file path or libpq URL


def parse_url(url: str) -> Target:
    """Map `--db` values to a backend: postgresql://..., a plain path, or SQLAlchemy-style sqlite:///PATH
    (sqlite:///rel.db is relative, sqlite:////abs/x.db absolute)."""
    if url.startswith(("postgresql://", "postgres://")):
        return Target("postgresql", url)
    if url.startswith("sqlite:///"):
        return Target("sqlite", url[len("sqlite:///"):])
    if url.startswith("sqlite:"):
        return Target("sqlite", url[len("sqlite:"):])
    if "://" in url:
        raise DatabaseError(f"unsupported database URL {url!r}: use a file path, sqlite:///PATH or postgresql://...")
    return Target("sqlite", url)


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class Connection:
    """One database connection with the few operations store.py needs; rows come back as dicts."""

    def __init__(self, raw, dialect: str, write_lock: threading.Lock | None = None):
        self.raw = raw
        self.dialect = dialect
        self.in_transaction = False
        self._write_lock = write_lock

    def execute(self, sql: str, params=()):
        try:
            if self.dialect == "postgresql":
                return self.raw.execute(_pg_sql(sql), params)
            return self.raw.execute(sql, params)
        except Exception as e:
            violation = _unique_violation(e)
            if violation is None:
                raise
            raise violation from e

    def one(self, sql: str, params=()) -> dict | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params=()) -> list[dict]:
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=()):
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    def begin_write(self):
        """Start a transaction that holds the write lock until commit or rollback."""
        if self.dialect == "postgresql":
            # one round trip: both statements in one simple query
            self.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY:d})")
        else:
            # Writers of this process queue on a lock that wakes the next one at once; SQLite's own
            # busy handler (still there for other processes) sleeps in steps of up to 100 ms.
            if not self._write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise DatabaseError("timed out waiting for the SQLite write lock")
            try:
                self.raw.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._write_lock.release()
                raise
        self.in_transaction = True

    def _end(self, statement: str):
        if not self.in_transaction:
            return
        self.in_transaction = False
        try:
            self.raw.execute(statement)
        finally:
            if self._write_lock is not None:  # held since begin_write (in_transaction was set)
                self._write_lock.release()

    def commit(self):
        self._end("COMMIT")

    def rollback(self):
        self._end("ROLLBACK")

    def close(self):
        self.raw.close()


def _dict_row(cursor, row):
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


class Database:
    """A pool of connections to one database; `connection()` lends one for the duration of a block."""

    def __init__(self, url: str, pool_size: int = 16):
        self.url = url
        self.target = parse_url(url)
        self.dialect = self.target.dialect
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._closed = False
        self._sqlite_write_lock = threading.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            path = Path(self.target.location)
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self) -> Connection:
        try:
            if self.dialect == "postgresql":
                import psycopg  # here, not at the top: a SQLite server should not pay for loading libpq
                from psycopg.rows import dict_row

                raw = psycopg.connect(self.target.location, autocommit=True, row_factory=dict_row, connect_timeout=10)
            else:
                raw = sqlite3.connect(
                    self.target.location,
                    timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                raw.row_factory = _dict_row
                raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                raw.execute("PRAGMA foreign_keys = ON")
                raw.execute("PRAGMA synchronous = NORMAL")
        except Exception as e:
            raise DatabaseError(f"cannot open the database {self.url}: {e}") from e
        return Connection(raw, self.dialect, self._sqlite_write_lock)

    def acquire(self) -> Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._open()

    def release(self, conn: Connection, broken: bool = False):
        if conn.in_transaction:
            try:
                conn.rollback()
            except Exception:
                broken = True
        if broken or self._closed or self._idle.qsize() >= self._pool_size:
            conn.close()
        else:
            self._idle.put(conn)

    def connection(self):
        """Context manager lending a pooled connection (autocommit unless begin_write is called); a block
        that raises gets its connection closed, not pooled."""
        return _Lease(self)

    def close(self):
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def migrate(self) -> list[str]:
        """Apply the numbered SQL files in server/migrations not applied yet; return their names."""
        with self.connection() as conn:
            if self.dialect == "sqlite":
                # WAL is a property of the file: readers never wait for the writer.
                conn.execute("PRAGMA journal_mode = WAL")
            conn.begin_write()
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
                done = {r["name"] for r in conn.all("SELECT name FROM schema_migrations")}
                applied = []
                for name, text in migration_files():
                    if name in done:
                        continue
                    for statement in split_sql(text):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, now()))
                    applied.append(name)
                conn.commit()
            except Exception as e:
                conn.rollback()
                raise DatabaseError(f"migrating {self.url} failed: {e}") from e
        return applied


class _Lease:
    def __init__(self, db: Database):
        self.db = db
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        self.conn = self.db.acquire()
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        # Whatever the block raised, the connection may be mid-statement: close it rather than pool it.
        self.db.release(self.conn, broken=exc_type is not None)
        return False


def migration_files() -> list[tuple[str, str]]:
    """The migrations shipped in the package, in order: [(file name, SQL text)]."""
    folder = resources.files("server").joinpath("migrations")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def split_sql(text: str) -> list[str]:
    """Split a migration into statements (our migrations keep `;` only at statement ends)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
