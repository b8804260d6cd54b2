"""Background jobs: each runs in its own detached process (``python -m core job run ID``).

A job process survives a browser refresh and a Streamlit restart; a crash or out-of-memory in it cannot take
the server down. Progress, heartbeat and result live in the ``job`` table, which pages poll. A job whose
process died without finishing (``kill -9``, machine reboot) is marked failed by :func:`fail_orphaned_jobs`,
and its kind decides whether it can be resumed (generation resumes with only the remainder).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from core.errors import NotFoundError, SynthloopError
from core.vocab import ACTIVE_STATUSES
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
HEARTBEAT_INTERVAL_S = 10.0  # how often a running job's process says it is alive (see _heartbeat)
# What to do about a job whose process died, by kind (the error ends with it).
AFTER_DEATH: dict[str, str] = {
    "generation": "resume the job to generate only the rest",
    "training": "start a new run",
    "analysis": "run the analysis again",
    "study": "start the study again",
}
LOG_DIR_NAME = "logs"


def create(db: sqlite_utils.Database, *, kind: str, project_id: int | None, config: dict[str, Any],
           total: int = 0, message: str = "queued") -> int:
    if kind not in JOB_RUNNERS:
        raise SynthloopError(f"unknown job kind {kind!r}: one of {sorted(JOB_RUNNERS)}")
    return jobs_db.create_job(db, kind=kind, project_id=project_id, config=config, total=total, message=message)


def log_path(db_path: str | os.PathLike[str], job_id: int) -> Path:
    """The job process's output: ``<db file>.files/logs/job-<id>.log`` (its database's own folder)."""
    return connection.files_dir(db_path, LOG_DIR_NAME, f"job-{job_id}.log")


def launch(db_path: str | os.PathLike[str], job_id: int) -> subprocess.Popen:
    """Start the job in a detached process (its own session, so it outlives the app's process group)."""
    log = log_path(db_path, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", "job", "run", str(job_id), "--db", str(db_path)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
        )
    with connection.open_db(db_path) as db:
        jobs_db.record_launch(db, job_id, pid=process.pid)
    return process



def start(db: sqlite_utils.Database, *, kind: str, project_id: int, config: dict[str, Any], total: int = 0,
          one_at_a_time: bool = False, launch_now: bool = True) -> int:
    """Record a job and start its detached process (``launch_now=False``: the caller runs it in the foreground).
    ``one_at_a_time`` refuses while another job of this kind is queued or running in the project."""
    if one_at_a_time:
        fail_orphaned_jobs(db)
        active = [j for j in jobs_db.list_jobs(db, project_id=project_id, kind=kind, limit=5)
                  if j["status"] in ACTIVE_STATUSES]
        if active:
            raise SynthloopError(f"another {kind} job of this project is already {active[0]['status']} (job"
                                 f" {active[0]['id']}): wait for it or cancel it")
    job_id = create(db, kind=kind, project_id=project_id, config=config, total=total)
    if launch_now:
        launch(connection.db_file(db), job_id)
    return job_id

def run(db_path: str | os.PathLike[str], job_id: int) -> dict[str, Any]:
    """Run a queued job in this process to its end; marks it done, cancelled or failed. Returns the job row.

    The job is claimed first (queued → running, one atomic UPDATE): of two processes started for one job (two
    resumes at once, ``job run`` on a job already running) only one runs it; the other raises at once.
    """
    pid = os.getpid()
    with connection.open_db(db_path) as db:
        fail_orphaned_jobs(db)  # a job whose process died reads as failed below, not as running
        job = jobs_db.get_job(db, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        if not jobs_db.claim_job(db, job_id, pid=pid):
            raise SynthloopError(_not_claimable(jobs_db.get_job(db, job_id)))
    with _heartbeat(str(db_path), job_id, pid):
        try:
            module_name, _, function_name = JOB_RUNNERS[job["kind"]].partition(":")
            runner = getattr(importlib.import_module(module_name), function_name)
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


def _not_claimable(job: dict[str, Any]) -> str:
    if job["status"] == "running":
        return (f"job {job['id']} is already running (process {job['pid']}): wait for it to finish, or stop it"
                f" with `python -m core job cancel {job['id']}`")
    return f"job {job['id']} is {job['status']}: resume it first if it should run again"


@contextmanager
def _heartbeat(db_path: str, job_id: int, pid: int) -> Iterator[None]:
    """Refresh the job's heartbeat from a side thread while it runs, so that a long silent step (loading a
    model, a slow model call) is never taken for a dead process; only a dead or frozen process goes silent."""
    stop = threading.Event()

    def beat() -> None:
        db = connection.connect(db_path, migrate=False)
        try:
            while not stop.wait(HEARTBEAT_INTERVAL_S):
                with contextlib.suppress(sqlite3.OperationalError):  # locked for 30 s: the next beat will do
                    jobs_db.beat(db, job_id, pid=pid)
        finally:
            db.conn.close()

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
    """Mark failed every job whose process is gone, with a message that says so; returns their ids.

    Gone: a running job whose process died (or sent no heartbeat for ``HEARTBEAT_STALE_SECONDS``: frozen, or
    its machine stopped), or a queued job whose launched process died before it could claim the job. One
    query and a signal per active job: the app calls it at start, and ``job list``, ``job run`` and every
    read a page polls (``watch``, the generation summary, the training runs) call it first.
    """
    now = now or datetime.now(UTC)
    stale_before = now - timedelta(seconds=HEARTBEAT_STALE_SECONDS)
    failed = []
    for job in jobs_db.active_jobs(db):
        pid = job["pid"]
        if job["status"] == "queued":
            if pid is None or _process_alive(pid):
                continue
            reason = f"the job's process (pid {pid}) died before it started"
        else:
            heartbeat = datetime.fromisoformat(job["heartbeat_at"]) if job["heartbeat_at"] else None
            if not _process_alive(pid):
                reason = f"the job's process (pid {pid}) died without finishing (killed or crashed)"
            elif heartbeat is not None and heartbeat < stale_before:
                reason = (f"the job's process (pid {pid}) sent no heartbeat for over {HEARTBEAT_STALE_SECONDS} s"
                          " (frozen, or its machine stopped)")
            else:
                continue
        error = f"{reason}: {AFTER_DEATH.get(job['kind'], 'start it again')}"
        if jobs_db.fail_orphan(db, job["id"], status=job["status"], pid=pid, error=error):
            failed.append(job["id"])
    return failed


def watch(db: sqlite_utils.Database, job_id: int) -> dict[str, Any]:
    """The job as a page that polls it should show it: a job whose process died is marked failed first."""
    fail_orphaned_jobs(db)
    return get(db, job_id)


def cancel(db: sqlite_utils.Database, job_id: int) -> None:
    job = watch(db, job_id)
    if job["status"] not in ACTIVE_STATUSES:
        raise SynthloopError(f"job {job_id} is already {job['status']}")
    jobs_db.request_cancel(db, job_id)


def get(db: sqlite_utils.Database, job_id: int) -> dict[str, Any]:
    job = jobs_db.get_job(db, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def list_jobs(db: sqlite_utils.Database, *, project_id: int | None = None, kind: str | None = None) -> list[dict]:
    """Recent jobs, newest first; a job whose process died is marked failed first."""
    fail_orphaned_jobs(db)
    return jobs_db.list_jobs(db, project_id=project_id, kind=kind)


def run_foreground(db_path: str | os.PathLike[str], job_id: int) -> dict[str, Any]:
    """Run a recorded job in this process (the CLI's path: the app lists it like any other); its result with
    ``job_id``, or a ``SynthloopError`` saying how it ended."""
    job = run(db_path, job_id)
    if job["status"] != "done":
        raise SynthloopError(f"{job['kind']} job {job_id} {job['status']}: {job['error'] or job['message']}")
    return {"job_id": job_id, **job["result"]}


def latest(db: sqlite_utils.Database, project_id: int, kind: str) -> dict[str, Any] | None:
    """The project's most recent job of this kind (any status), or None."""
    rows = jobs_db.list_jobs(db, project_id=project_id, kind=kind, limit=1)
    return rows[0] if rows else None
