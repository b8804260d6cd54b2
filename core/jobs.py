"""Background jobs: each runs in its own detached process (``python -m core job run ID``).

A job process survives a browser refresh and a Streamlit restart; a crash or out-of-memory in it cannot take
the server down. Progress, heartbeat and result live in the ``job`` table, which pages poll. A job whose
process died without finishing (``kill -9``, machine reboot) is marked failed by :func:`fail_orphaned_jobs`,
and its kind decides whether it can be resumed (generation resumes with only the remainder).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from core.errors import NotFoundError, SynthloopError
from db import connection
from db import jobs as jobs_db

# kind → "module:function"; the function takes (db_path, job_id) and runs the job to its end, writing
# progress through db.jobs.update_progress and returning the result dict stored with the job.
JOB_RUNNERS: dict[str, str] = {
    "generation": "core.generation.jobs:run_generation",
    "llm_annotation": "core.generation.llm_annotator:run_llm_annotation",
    "training": "core.training.run:run_job",
    "analysis": "core.analysis.service:run_analysis_job",
    "study": "core.analysis.study:run_study_job",
}

HEARTBEAT_STALE_SECONDS = 120
LOG_DIR_NAME = "logs"


def create(db: sqlite_utils.Database, *, kind: str, project_id: int | None, config: dict[str, Any],
           total: int = 0, message: str = "queued") -> int:
    if kind not in JOB_RUNNERS:
        raise SynthloopError(f"unknown job kind {kind!r}: one of {sorted(JOB_RUNNERS)}")
    return jobs_db.create_job(db, kind=kind, project_id=project_id, config=config, total=total, message=message)


def log_path(db_path: str | os.PathLike[str], job_id: int) -> Path:
    return Path(db_path).resolve().parent / LOG_DIR_NAME / f"job-{job_id}.log"


def launch(db_path: str | os.PathLike[str], job_id: int) -> subprocess.Popen:
    """Start the job in a detached process (its own session, so it outlives the app's process group)."""
    log = log_path(db_path, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "core", "job", "run", str(job_id), "--db", str(db_path)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
        )


def run(db_path: str | os.PathLike[str], job_id: int) -> dict[str, Any]:
    """Run a job in this process to its end; marks it done, cancelled or failed. Returns the job row."""
    with connection.open_db(db_path) as db:
        job = jobs_db.get_job(db, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        if job["status"] not in ("queued", "running"):
            raise SynthloopError(f"job {job_id} is {job['status']}: resume it first if it should run again")
        jobs_db.start_job(db, job_id)
    module_name, _, function_name = JOB_RUNNERS[job["kind"]].partition(":")
    runner = getattr(importlib.import_module(module_name), function_name)
    try:
        result = runner(str(db_path), job_id)
    except SynthloopError as exc:
        _finish_failed(db_path, job_id, str(exc))
    except BaseException as exc:  # any crash must end the job visibly, then surface
        _finish_failed(db_path, job_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        if not isinstance(exc, Exception):
            raise
    else:
        with connection.open_db(db_path) as db:
            cancelled = jobs_db.get_job(db, job_id)["cancel_requested"]
            jobs_db.finish_job(db, job_id, status="cancelled" if cancelled else "done",
                               message="cancelled" if cancelled else "done", result=result)
    with connection.open_db(db_path) as db:
        return jobs_db.get_job(db, job_id)


def _finish_failed(db_path: str | os.PathLike[str], job_id: int, error: str) -> None:
    with connection.open_db(db_path) as db:
        jobs_db.mark_failed(db, job_id, error)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is not alive either.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def fail_orphaned_jobs(db: sqlite_utils.Database, *, now: datetime | None = None) -> list[int]:
    """Mark running jobs whose process is gone (or silent too long) as failed; returns their ids."""
    now = now or datetime.now(UTC)
    stale_before = now - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    failed = []
    for job in jobs_db.active_jobs(db):
        if job["status"] != "running":
            continue
        heartbeat = datetime.fromisoformat(job["heartbeat_at"]) if job["heartbeat_at"] else None
        if not _process_alive(job["pid"]) or (heartbeat is not None and heartbeat < stale_before):
            jobs_db.mark_failed(db, job["id"], "the job's process stopped without finishing (killed or crashed);"
                                " resume it to continue")
            failed.append(job["id"])
    return failed


def cancel(db: sqlite_utils.Database, job_id: int) -> None:
    job = get(db, job_id)
    if job["status"] not in ("queued", "running"):
        raise SynthloopError(f"job {job_id} is already {job['status']}")
    jobs_db.request_cancel(db, job_id)


def get(db: sqlite_utils.Database, job_id: int) -> dict[str, Any]:
    job = jobs_db.get_job(db, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def list_jobs(db: sqlite_utils.Database, *, project_id: int | None = None, kind: str | None = None) -> list[dict]:
    return jobs_db.list_jobs(db, project_id=project_id, kind=kind)
