"""Opening the SQLite database: one short-lived connection per unit of work.

Every connection gets WAL, a busy timeout and ``synchronous=NORMAL``; with them many processes can write at
once without "database is locked". Connections are never shared across threads (Streamlit reruns may come on
another thread), so callers open one with :func:`open_db` for the work at hand and let it close.

We never use sqlite-utils' ``upsert()``: on its first call it probes ``ON CONFLICT`` support by writing, and if
that probe meets a lock it silently turns every later upsert into a no-op. All upserts in ``db/`` are written
as explicit ``INSERT … ON CONFLICT … DO UPDATE`` statements instead.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

DEFAULT_DB_PATH = Path("data") / "synthloop.db"
BUSY_TIMEOUT_MS = 30_000


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The database path: the argument, else ``SYNTHLOOP_DB``, else ``data/synthloop.db``."""
    if path:
        return Path(path)
    return Path(os.environ.get("SYNTHLOOP_DB") or DEFAULT_DB_PATH)


def connect(path: str | os.PathLike[str] | None = None, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open the database file (creating its folder), set the pragmas and apply pending migrations."""
    db_path = resolve_db_path(path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    if migrate:
        from db.migrations import migrate as apply_migrations

        apply_migrations(db)
    return db


@contextmanager
def open_db(path: str | os.PathLike[str] | None = None) -> Iterator[sqlite_utils.Database]:
    """A connection for one unit of work, closed afterwards."""
    db = connect(path)
    try:
        yield db
    finally:
        db.conn.close()


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All-or-nothing: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    IMMEDIATE takes the write lock up front, so two writers queue on the busy timeout instead of failing
    with a deadlock when both try to upgrade a read lock. Nested use joins the outer transaction.
    """
    if db.conn.in_transaction:
        yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def db_file(db: sqlite_utils.Database) -> str:
    """The path of the file behind an open database (what a job process is given to open its own)."""
    return db.conn.execute("PRAGMA database_list").fetchone()[2]


def now() -> str:
    """UTC timestamp as stored in every ``*_at`` column (ISO 8601, sortable)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
