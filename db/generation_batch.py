"""SQL for generation through a provider's Batch API: ``generation_batch`` (one submitted batch: the provider's
id, its last seen status, whether it was ingested) and ``generation_batch_request`` (each request's label, call
number and prompt — messages, seeds and steering — as JSON), so a resumed job can poll and ingest it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from db.connection import now, transaction


def create_batch(db: sqlite_utils.Database, generation_job_id: int, requests: Sequence[dict[str, Any]]) -> int:
    """Record a batch about to be submitted with its requests (``custom_id``, ``label``, ``call_number``,
    ``prompt``), all or nothing; returns its id."""
    stamp = now()
    with transaction(db):
        batch_id = int(db.execute(
            "INSERT INTO generation_batch (generation_job_id, n_requests, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [generation_job_id, len(requests), stamp, stamp]).lastrowid)
        db.conn.executemany(
            "INSERT INTO generation_batch_request (batch_id, custom_id, label, call_number, prompt)"
            " VALUES (?, ?, ?, ?, ?)",
            [(batch_id, r["custom_id"], r["label"], r["call_number"], json.dumps(r["prompt"])) for r in requests])
    return batch_id


def set_submitted(db: sqlite_utils.Database, batch_id: int, *, provider_batch_id: str, input_file_id: str,
                  status: str) -> None:
    stamp = now()
    db.execute("UPDATE generation_batch SET provider_batch_id = ?, input_file_id = ?, status = ?, submitted_at = ?,"
               " updated_at = ? WHERE id = ?", [provider_batch_id, input_file_id, status, stamp, stamp, batch_id])


def set_polled(db: sqlite_utils.Database, batch_id: int, *, status: str, n_done: int) -> None:
    db.execute("UPDATE generation_batch SET status = ?, n_done = ?, updated_at = ? WHERE id = ?",
               [status, n_done, now(), batch_id])


def finish_batch(db: sqlite_utils.Database, batch_id: int, *, status: str, error: str = "") -> bool:
    """Mark the batch ingested (or ended without answers, with ``error``); run it in the transaction that writes
    its calls. False when it was finished already (so its answers must not be written again)."""
    stamp = now()
    cursor = db.execute("UPDATE generation_batch SET status = ?, error = ?, finished_at = ?, updated_at = ?"
                        " WHERE id = ? AND finished_at IS NULL", [status, error, stamp, stamp, batch_id])
    return cursor.rowcount == 1


def unfinished_batch(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, Any] | None:
    """The job's batch that was recorded but not ingested (at most one: a job submits the next after ingesting),
    with its ``requests`` in call order; None when there is none."""
    rows = list(db.query("SELECT * FROM generation_batch WHERE generation_job_id = ? AND finished_at IS NULL"
                         " ORDER BY id LIMIT 1", [generation_job_id]))
    if not rows:
        return None
    batch = dict(rows[0])
    batch["requests"] = [
        {"custom_id": r[0], "label": r[1], "call_number": r[2], "prompt": json.loads(r[3])}
        for r in db.execute("SELECT custom_id, label, call_number, prompt FROM generation_batch_request"
                            " WHERE batch_id = ? ORDER BY call_number", [batch["id"]]).fetchall()]
    return batch


def list_batches(db: sqlite_utils.Database, generation_job_id: int) -> list[dict[str, Any]]:
    """The job's batches, oldest first (without their requests)."""
    return [dict(r) for r in db.query("SELECT * FROM generation_batch WHERE generation_job_id = ? ORDER BY id",
                                      [generation_job_id])]


def next_call_number(db: sqlite_utils.Database, generation_job_id: int) -> int:
    """One past the highest call number any batch of the job asked for, answered or not (0 without batches)."""
    return db.execute(
        "SELECT COALESCE(MAX(r.call_number) + 1, 0) FROM generation_batch_request r JOIN generation_batch b"
        " ON b.id = r.batch_id WHERE b.generation_job_id = ?", [generation_job_id]).fetchone()[0]
