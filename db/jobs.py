"""The ``job`` table: background work (generation, training, analysis) and its progress.

Workers write progress and a heartbeat here; pages poll it. A job whose worker died (no heartbeat for a while,
or a pid that no longer exists) is marked failed by ``core.jobs.fail_orphaned_jobs``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import sqlite_utils

from db.connection import now

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE_STATUSES = ("queued", "running")


def _row_to_job(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["config"] = json.loads(row["config"] or "{}")
    row["result"] = json.loads(row["result"] or "{}")
    row["cancel_requested"] = bool(row["cancel_requested"])
    return row


def create_job(
    db: sqlite_utils.Database,
    *,
    kind: str,
    project_id: int | None,
    config: dict[str, Any] | None = None,
    total: int = 0,
    message: str = "",
) -> int:
    cursor = db.execute(
        "INSERT INTO job (project_id, kind, status, progress_total, message, config, created_at)"
        " VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        [project_id, kind, total, message, json.dumps(config or {}), now()],
    )
    return int(cursor.lastrowid)


def get_job(db: sqlite_utils.Database, job_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM job WHERE id = ?", [job_id]))
    return _row_to_job(rows[0]) if rows else None


def list_jobs(
    db: sqlite_utils.Database, *, project_id: int | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    clauses, params = [], []
    if project_id is not None:
        clauses.append("project_id = ?")
        params.append(project_id)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return [_row_to_job(r) for r in db.query(f"SELECT * FROM job {where} ORDER BY id DESC LIMIT ?", params)]


def start_job(db: sqlite_utils.Database, job_id: int, *, pid: int | None = None) -> None:
    db.execute(
        "UPDATE job SET status = 'running', pid = ?, started_at = COALESCE(started_at, ?), heartbeat_at = ?,"
        " error = '', finished_at = NULL WHERE id = ?",
        [pid if pid is not None else os.getpid(), now(), now(), job_id],
    )


def update_progress(
    db: sqlite_utils.Database,
    job_id: int,
    *,
    done: int | None = None,
    total: int | None = None,
    message: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Record progress and a heartbeat; returns True when a cancel was requested."""
    db.execute(
        "UPDATE job SET progress_done = COALESCE(?, progress_done), progress_total = COALESCE(?, progress_total),"
        " message = COALESCE(?, message), result = COALESCE(?, result), heartbeat_at = ? WHERE id = ?",
        [done, total, message, json.dumps(result) if result is not None else None, now(), job_id],
    )
    row = db.execute("SELECT cancel_requested FROM job WHERE id = ?", [job_id]).fetchone()
    return bool(row and row[0])


def finish_job(
    db: sqlite_utils.Database,
    job_id: int,
    *,
    status: JobStatus,
    message: str | None = None,
    error: str = "",
    result: dict[str, Any] | None = None,
) -> None:
    db.execute(
        "UPDATE job SET status = ?, message = COALESCE(?, message), error = ?, result = COALESCE(?, result),"
        " finished_at = ?, heartbeat_at = ? WHERE id = ?",
        [status, message, error, json.dumps(result) if result is not None else None, now(), now(), job_id],
    )


def request_cancel(db: sqlite_utils.Database, job_id: int) -> None:
    """Ask a running job to stop; a queued job is cancelled at once."""
    db.execute("UPDATE job SET cancel_requested = 1 WHERE id = ?", [job_id])
    db.execute(
        "UPDATE job SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'", [now(), job_id]
    )


def reset_for_resume(db: sqlite_utils.Database, job_id: int) -> None:
    """Put a failed or cancelled job back to queued so a worker can pick up the remainder."""
    db.execute(
        "UPDATE job SET status = 'queued', cancel_requested = 0, error = '', finished_at = NULL, pid = NULL"
        " WHERE id = ?",
        [job_id],
    )


def active_jobs(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_row_to_job(r) for r in db.query("SELECT * FROM job WHERE status IN ('queued', 'running')")]


def mark_failed(db: sqlite_utils.Database, job_id: int, error: str) -> None:
    finish_job(db, job_id, status="failed", error=error, message="failed")
