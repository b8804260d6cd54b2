"""``job run|list|cancel``: background jobs (the app launches ``job run`` in a detached process)."""

from __future__ import annotations

import argparse
from typing import Any

from core import jobs
from core.store import db_file


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    job = subparsers.add_parser("job", help="background jobs").add_subparsers(dest="job_command", required=True)
    run = job.add_parser("run", parents=[common], help="run a queued job in this process")
    run.add_argument("job_id", type=int)
    run.set_defaults(handler=_run)
    lst = job.add_parser("list", parents=[common], help="list recent jobs")
    lst.set_defaults(handler=_list)
    cancel = job.add_parser("cancel", parents=[common], help="ask a job to stop")
    cancel.add_argument("job_id", type=int)
    cancel.set_defaults(handler=_cancel)



def _run(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    job = jobs.run(db_file(db), args.job_id)
    return {"job_id": job["id"], "status": job["status"], "error": job["error"], "result": job["result"],
            "message": f"job {job['id']} {job['status']}" + (f": {job['error']}" if job["error"] else "")}


def _list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    rows = jobs.list_jobs(db)  # marks jobs whose process died as failed first
    lines = [f"{j['id']}\t{j['kind']}\t{j['status']}\t{j['progress_done']}/{j['progress_total']}\t{j['message']}"
             + (f": {j['error'].splitlines()[0]}" if j["status"] == "failed" and j["error"] else "")
             for j in rows]
    return {"jobs": rows, "message": "\n".join(lines) or "no jobs"}


def _cancel(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    jobs.cancel(db, args.job_id)
    return {"job_id": args.job_id, "message": f"cancel requested for job {args.job_id}"}
