"""The data-version counters that triggers bump on every write (migration 0520): one indexed read each, for the
pages' caches to key on."""

from __future__ import annotations

import sqlite_utils


def project_data_version(db: sqlite_utils.Database, project_id: int) -> int:
    """How many writes have touched the project's items, annotations, labels, seeds or settings (0: none yet)."""
    row = db.execute("SELECT version FROM project_data_version WHERE project_id = ?", [project_id]).fetchone()
    return row[0] if row else 0


def run_data_version(db: sqlite_utils.Database) -> int:
    """How many writes have touched any run or prediction (or a project's name, which run lists show)."""
    return db.execute("SELECT version FROM run_data_version").fetchone()[0]
