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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

DEFAULT_DB_PATH = Path("data") / "synthloop.db"
BUSY_TIMEOUT_MS = 30_000


def resolve_db_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The database path: the argument, else ``SYNTHLOOP_DB``, else ``data/synthloop.db``."""
    if path:
        return Path(path)
    return Path(os.environ.get("SYNTHLOOP_DB") or DEFAULT_DB_PATH)


class DatabasePathError(ValueError):
    """``--db`` / ``SYNTHLOOP_DB`` names something that cannot be the database; the message names the path and
    the fix. The CLI and the app show it as they show a ``SynthloopError`` (``db/`` may not import ``core``)."""


_FIX = "give --db (or SYNTHLOOP_DB)"


def _writable(path: Path) -> bool:
    # root passes os.access on any file: a file without a single write bit was made read-only on purpose.
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def check_db_path(db_path: Path) -> None:
    """Refuse, before SQLite touches anything, a path that cannot be the database: a directory, a read-only
    file, or a file in a folder that does not exist (only the default ``data/`` folder is created)."""
    if db_path.is_dir():
        raise DatabasePathError(f"the database path {db_path} is a directory: {_FIX} a database file,"
                                f" e.g. {db_path / 'synthloop.db'}")
    if not db_path.parent.is_dir():
        if db_path != DEFAULT_DB_PATH:
            raise DatabasePathError(f"the folder of the database {db_path} does not exist: create it first"
                                    f" (mkdir -p {db_path.parent}) or {_FIX} a path in an existing folder")
        db_path.parent.mkdir(parents=True, exist_ok=True)
    if db_path.exists() and not _writable(db_path):
        raise DatabasePathError(f"the database {db_path} is read-only: make it writable (chmod u+w {db_path})"
                                f" or {_FIX} a writable copy")


def _open_error(db_path: Path, exc: sqlite3.DatabaseError) -> DatabasePathError:
    if "not a database" in str(exc):
        return DatabasePathError(f"{db_path} is not a SQLite database: {_FIX} a Synthloop database, or the name"
                                 " of a new file to create one")
    if "readonly" in str(exc):
        return DatabasePathError(f"the database {db_path} is read-only: make it and its folder writable"
                                 f" or {_FIX} a writable copy")
    return DatabasePathError(f"cannot open the database {db_path} ({exc}): check that the file and its folder"
                             f" are readable and writable, or {_FIX} another path")


def connect(path: str | os.PathLike[str] | None = None, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open the database file, set the pragmas and apply pending migrations; a path that cannot be the
    database raises :class:`DatabasePathError` and creates nothing."""
    db_path = resolve_db_path(path)
    check_db_path(db_path)
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # A statement with triggers (the data-version counters, migration 0520) keeps a statement journal for
        # every row an executemany writes; in a temporary file that doubled the time of a bulk import, in
        # memory it costs next to nothing (measured on 100,000 annotations).
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _open_error(db_path, exc) from exc
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


FILES_SUFFIX = ".files"


def files_dir(db_path: str | os.PathLike[str], *parts: str) -> Path:
    """Where every file a database produces lives (model artifacts, job logs, study reports): a folder named
    after the database file, beside it (``data/x.db`` → ``data/x.db.files/``), so that two databases in one
    folder never share, or overwrite, each other's files. ``parts`` name a path inside it."""
    path = Path(db_path).resolve()
    return path.with_name(path.name + FILES_SUFFIX).joinpath(*parts)


def now() -> str:
    """UTC timestamp as stored in every ``*_at`` column (ISO 8601, sortable)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def where(conditions: Sequence[str], params: Sequence[Any], equal_to: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE body and its parameters: the fixed ``conditions`` (with ``params``), then ``column = ?`` for each
    entry of ``equal_to`` whose value is not None (an optional filter left out)."""
    clauses, values = list(conditions), list(params)
    for column, value in equal_to.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    return " AND ".join(clauses), values
