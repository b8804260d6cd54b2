"""SQL for ``llm_annotation_call``: every request of an LLM-annotation job (item, prompt, raw reply, parsed label,
latency, error). The labels themselves are annotations (``db.items.insert_annotations``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlite_utils

from db.connection import now

CALL_COLUMNS = ["id", "item_id", "messages", "raw_output", "label", "latency_s", "error", "created_at"]


def insert_calls(db: sqlite_utils.Database, job_id: int, calls: Sequence[dict[str, Any]]) -> None:
    """Store many calls with one statement. Runs in the caller's transaction (with the labels they produced)."""
    stamp = now()
    db.conn.executemany(
        "INSERT INTO llm_annotation_call (job_id, item_id, messages, raw_output, label, latency_s, error, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(job_id, call["item_id"], json.dumps(call.get("messages", [])), call.get("raw_output"), call.get("label"),
          call.get("latency_s"), call.get("error") or "", stamp) for call in calls],
    )


def calls_frame(
    db: sqlite_utils.Database, job_id: int, *, unlabelled_only: bool = False, limit: int = 1000
) -> pd.DataFrame:
    """The job's calls in item order (``messages`` as JSON text); ``unlabelled_only``: the replies that named no
    label and the failed calls."""
    where = "job_id = ?" + (" AND label IS NULL" if unlabelled_only else "")
    return pd.read_sql_query(
        f"SELECT {', '.join(CALL_COLUMNS)} FROM llm_annotation_call WHERE {where} ORDER BY item_id, id LIMIT ?",
        db.conn,
        params=[job_id, limit],
    )
