"""The ``job`` table: background work (generation, training, analysis) and its progress.

Workers write progress and a heartbeat here; pages poll it. A job whose worker died (no heartbeat for a while,
or a pid that no longer exists) is marked failed by ``core.jobs.fail_orphaned_jobs``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sqlite_utils

from db.connection import now

# status: one of core.vocab.JOB_STATUSES (db/ takes vocabularies as plain strings)
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


def claim_job(db: sqlite_utils.Database, job_id: int, *, pid: int) -> bool:
    """Take a queued job for the process ``pid``: True for exactly one of several processes that try at once
    (one conditional UPDATE is atomic); False when the job is not queued (any more)."""
    stamp = now()
    cursor = db.execute(
        "UPDATE job SET status = 'running', pid = ?, started_at = COALESCE(started_at, ?), heartbeat_at = ?,"
        " error = '', finished_at = NULL WHERE id = ? AND status = 'queued'",
        [pid, stamp, stamp, job_id],
    )
    return cursor.rowcount == 1


def record_launch(db: sqlite_utils.Database, job_id: int, *, pid: int) -> None:
    """Note the process launched for a queued job, so a process that dies before it claims the job is seen."""
    db.execute("UPDATE job SET pid = ? WHERE id = ? AND status = 'queued' AND pid IS NULL", [pid, job_id])


def beat(db: sqlite_utils.Database, job_id: int, *, pid: int) -> None:
    """The job's process is alive: refresh the heartbeat of its running job."""
    db.execute("UPDATE job SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND pid = ?",
               [now(), job_id, pid])


def fail_orphan(db: sqlite_utils.Database, job_id: int, *, status: str, pid: int | None, error: str) -> bool:
    """Mark the job failed only if it is still ``status`` with process ``pid`` (as the caller saw it): a job
    that ended, or was claimed again, between that look and this write is left alone."""
    stamp = now()
    cursor = db.execute(
        "UPDATE job SET status = 'failed', message = 'failed', error = ?, finished_at = ?, heartbeat_at = ?"
        " WHERE id = ? AND status = ? AND pid IS ?",
        [error, stamp, stamp, job_id, status, pid],
    )
    return cursor.rowcount == 1


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
    status: str,
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


def reset_for_resume(db: sqlite_utils.Database, job_id: int) -> bool:
    """Put a finished (failed, cancelled, done) job back to queued so a worker can pick up the remainder.
    False when it is queued or running already: of two resumes at once, only one queues it."""
    cursor = db.execute(
        "UPDATE job SET status = 'queued', cancel_requested = 0, error = '', finished_at = NULL, pid = NULL"
        " WHERE id = ? AND status IN ('failed', 'cancelled', 'done')",
        [job_id],
    )
    return cursor.rowcount == 1


def active_jobs(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_row_to_job(r) for r in db.query("SELECT * FROM job WHERE status IN ('queued', 'running')")]


def mark_failed(db: sqlite_utils.Database, job_id: int, error: str) -> None:
    finish_job(db, job_id, status="failed", error=error, message="failed")
