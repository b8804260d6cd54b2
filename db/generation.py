"""SQL for generation: ``generation_job`` (frozen config, totals), ``generation_call`` (every LLM request,
whole) and the synthetic items they produced (provenance, review status, annotation pool)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlite_utils

from db.connection import now, where


def _job_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["config"] = json.loads(row["config"] or "{}")
    return row


def create_generation_job(
    db: sqlite_utils.Database, *, project_id: int, job_id: int, config: dict[str, Any]
) -> int:
    """A generation job shares its id with its ``job`` row, so "job 7" means the same thing on every page."""
    stamp = now()
    db.execute(
        "INSERT INTO generation_job (id, project_id, job_id, config, status, round, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
        [job_id, project_id, job_id, json.dumps(config), next_round(db, project_id), stamp, stamp],
    )
    return job_id


def next_round(db: sqlite_utils.Database, project_id: int) -> int:
    """Every generation job is a round of its project's loop, numbered from 1 in the order they were created."""
    return db.execute("SELECT COALESCE(MAX(round), 0) + 1 FROM generation_job WHERE project_id = ?",
                      [project_id]).fetchone()[0]


def job_rounds(db: sqlite_utils.Database, project_id: int) -> dict[int, int]:
    """``generation job id → round`` of the project's generation jobs."""
    return {job_id: round_ for job_id, round_ in db.execute(
        "SELECT id, round FROM generation_job WHERE project_id = ? AND round IS NOT NULL", [project_id]).fetchall()}


def calls_per_round(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """Per round and label: ``round, generation_job_id, label, calls, generated`` (texts parsed out of the
    calls' outputs, whatever happened to them next)."""
    return pd.read_sql_query(
        "SELECT g.round, g.id AS generation_job_id, c.label, COUNT(*) AS calls,"
        " COALESCE(SUM(json_array_length(c.parsed)), 0) AS generated"
        " FROM generation_call c JOIN generation_job g ON g.id = c.generation_job_id"
        " WHERE g.project_id = ? GROUP BY g.round, g.id, c.label ORDER BY g.round, c.label",
        db.conn, params=[project_id])


def earlier_synthetic_items(db: sqlite_utils.Database, project_id: int, *, before_round: int) -> pd.DataFrame:
    """The accepted synthetic items of the project's rounds before ``before_round``: ``id, text,
    reference_label`` (the intended label), ``round``."""
    return pd.read_sql_query(
        "SELECT i.id, i.text, i.reference_label, g.round FROM item i JOIN generation_job g"
        " ON g.id = i.generation_job_id WHERE i.project_id = ? AND i.source = 'synthetic'"
        " AND i.review_status = 'accepted' AND g.round < ? ORDER BY i.id",
        db.conn, params=[project_id, before_round])


def grounding_texts(db: sqlite_utils.Database, project_id: int, *, held_out: Sequence[str],
                    up_to_item: int | None = None) -> list[tuple[int, str, str | None]]:
    """``(id, text, label)`` of the real items a generation call may be grounded in: labelled or not (the label is
    the adjudicated one, else the imported one), outside the ``held_out`` splits, and with ids up to
    ``up_to_item`` (the corpus as it was when the job was created)."""
    return [(r[0], r[1], r[2]) for r in db.execute(
        f"SELECT id, text, COALESCE(adjudicated_label, reference_label) FROM item WHERE project_id = ?"
        f" AND source = 'real' AND split NOT IN"
        f" ({_ids_clause(held_out)}) AND id <= ? ORDER BY id",
        [project_id, *held_out, up_to_item if up_to_item is not None else 2**63 - 1]).fetchall()]


def last_item_id(db: sqlite_utils.Database, project_id: int) -> int:
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM item WHERE project_id = ?", [project_id]).fetchone()[0]


def get_generation_job(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM generation_job WHERE id = ?", [generation_job_id]))
    return _job_row(rows[0]) if rows else None


def get_generation_job_by_job(db: sqlite_utils.Database, job_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM generation_job WHERE job_id = ?", [job_id]))
    return _job_row(rows[0]) if rows else None


def list_generation_jobs(db: sqlite_utils.Database, project_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """The project's generation jobs, newest first, with the job table's status and message."""
    rows = db.query(
        "SELECT g.*, j.status AS job_status, j.message AS job_message, j.error AS job_error,"
        " j.created_at AS job_created_at, j.finished_at AS job_finished_at"
        " FROM generation_job g LEFT JOIN job j ON j.id = g.job_id"
        " WHERE g.project_id = ? ORDER BY g.id DESC LIMIT ?",
        [project_id, limit],
    )
    return [_job_row(r) for r in rows]


def set_status(db: sqlite_utils.Database, generation_job_id: int, status: str) -> None:
    db.execute("UPDATE generation_job SET status = ?, updated_at = ? WHERE id = ?", [status, now(), generation_job_id])


def insert_calls(db: sqlite_utils.Database, generation_job_id: int, calls: Sequence[dict[str, Any]]) -> list[int]:
    """Store many calls with one statement; returns their ids in input order. Runs in the caller's transaction."""
    first = db.execute("SELECT COALESCE(MAX(id), 0) FROM generation_call").fetchone()[0] + 1
    stamp = now()
    db.conn.executemany(
        "INSERT INTO generation_call (id, generation_job_id, label, messages, seed_item_ids, counter_example_ids,"
        " retrieved_ids, attributes, raw_output, parsed, outcomes, n_accepted, n_rejected, prompt_tokens,"
        " completion_tokens, latency_s, error, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (first + offset, generation_job_id, call["label"], json.dumps(call.get("messages", [])),
             json.dumps(call.get("seed_item_ids", [])), json.dumps(call.get("counter_example_ids", [])),
             json.dumps(call.get("retrieved_ids", [])), json.dumps(call.get("attributes", {})),
             call.get("raw_output"), json.dumps(call.get("parsed", [])),
             json.dumps(call.get("outcomes", [])), call.get("n_accepted", 0), call.get("n_rejected", 0),
             call.get("prompt_tokens", 0), call.get("completion_tokens", 0), call.get("latency_s"),
             call.get("error") or "", stamp)
            for offset, call in enumerate(calls)
        ],
    )
    return list(range(first, first + len(calls)))


def add_call_totals(
    db: sqlite_utils.Database,
    generation_job_id: int,
    *,
    n_calls: int,
    n_failed_calls: int,
    n_accepted: int,
    n_rejected: int,
    prompt_tokens: int,
    completion_tokens: int,
    cost: float,
) -> None:
    db.execute(
        "UPDATE generation_job SET n_calls = n_calls + ?, n_failed_calls = n_failed_calls + ?,"
        " n_accepted = n_accepted + ?, n_rejected = n_rejected + ?, prompt_tokens = prompt_tokens + ?,"
        " completion_tokens = completion_tokens + ?, cost = cost + ?, updated_at = ? WHERE id = ?",
        [n_calls, n_failed_calls, n_accepted, n_rejected, prompt_tokens, completion_tokens, cost, now(),
         generation_job_id],
    )


def accepted_per_label(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, int]:
    """Items this job has written, per intended label (whatever their later review status)."""
    rows = db.execute(
        "SELECT i.reference_label, COUNT(*) FROM item i JOIN generation_call c ON c.id = i.generation_call_id"
        " WHERE c.generation_job_id = ? GROUP BY i.reference_label",
        [generation_job_id],
    ).fetchall()
    return {label: n for label, n in rows}


def calls_per_label(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT label, COUNT(*) FROM generation_call WHERE generation_job_id = ? GROUP BY label",
        [generation_job_id],
    ).fetchall()
    return {label: n for label, n in rows}


def rejected_by_reason(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, int]:
    rows = db.execute(
        "SELECT json_extract(o.value, '$.reason') AS reason, COUNT(*) FROM generation_call c,"
        " json_each(c.outcomes) o WHERE c.generation_job_id = ? AND json_extract(o.value, '$.accepted') = 0"
        " GROUP BY reason ORDER BY reason",
        [generation_job_id],
    ).fetchall()
    return {reason: n for reason, n in rows}


def call_totals(db: sqlite_utils.Database, generation_job_id: int) -> dict[str, Any]:
    row = db.execute(
        "SELECT COUNT(*), SUM(error != ''), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
        " AVG(latency_s) FROM generation_call WHERE generation_job_id = ?",
        [generation_job_id],
    ).fetchone()
    return {"calls": row[0], "failed_calls": int(row[1] or 0), "prompt_tokens": row[2],
            "completion_tokens": row[3], "mean_latency_s": row[4]}


def calls_frame(
    db: sqlite_utils.Database, generation_job_id: int, *, limit: int = 500, only_with_rejections: bool = False
) -> pd.DataFrame:
    where = "generation_job_id = ?" + (" AND (n_rejected > 0 OR error != '')" if only_with_rejections else "")
    return pd.read_sql_query(
        f"SELECT id, label, raw_output, parsed, outcomes, n_accepted, n_rejected, prompt_tokens,"
        f" completion_tokens, latency_s, error, created_at FROM generation_call WHERE {where}"
        f" ORDER BY id DESC LIMIT ?",
        db.conn,
        params=[generation_job_id, limit],
    )


def get_call(db: sqlite_utils.Database, call_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM generation_call WHERE id = ?", [call_id]))
    if not rows:
        return None
    row = dict(rows[0])
    for column in ("messages", "seed_item_ids", "parsed", "outcomes", "counter_example_ids", "retrieved_ids"):
        row[column] = json.loads(row[column] or "[]")
    row["attributes"] = json.loads(row["attributes"] or "{}")
    return row


def project_texts(db: sqlite_utils.Database, project_id: int) -> list[tuple[int, str]]:
    """``(item id, text)`` of every item of the project, whatever its source, split or review status."""
    return [(r[0], r[1]) for r in db.execute("SELECT id, text FROM item WHERE project_id = ? ORDER BY id",
                                              [project_id]).fetchall()]


# --- review -------------------------------------------------------------------------------------------


def synthetic_items(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    generation_job_id: int | None = None,
    label: str | None = None,
    review_status: str | None = None,
    in_pool: bool | None = None,
    limit: int = 5000,
) -> pd.DataFrame:
    """Synthetic items with their provenance columns (generation job, call, model, mode, temperature)."""
    body, params = where(["i.project_id = ?", "i.source = 'synthetic'"], [project_id], {
        "i.generation_job_id": generation_job_id, "i.reference_label": label, "i.review_status": review_status,
        "i.in_pool": None if in_pool is None else int(in_pool)})
    params.append(limit)
    return pd.read_sql_query(
        "SELECT i.id, i.text, i.reference_label, i.review_status, i.in_pool, i.generation_call_id,"
        " i.generation_job_id, g.round, i.generation_mode AS mode, json_extract(i.meta, '$.model') AS model,"
        " json_extract(i.meta, '$.temperature') AS temperature, c.attributes, i.meta, i.created_at"
        " FROM item i LEFT JOIN generation_job g ON g.id = i.generation_job_id"
        f" LEFT JOIN generation_call c ON c.id = i.generation_call_id WHERE {body}"
        " ORDER BY i.id LIMIT ?",
        db.conn,
        params=params,
    )


def _ids_clause(item_ids: Sequence[int]) -> str:
    return ", ".join("?" for _ in item_ids)


def set_review_status(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int], status: str) -> int:
    if not item_ids:
        return 0
    cursor = db.execute(
        f"UPDATE item SET review_status = ? WHERE project_id = ? AND source = 'synthetic'"
        f" AND id IN ({_ids_clause(item_ids)})",
        [status, project_id, *item_ids],
    )
    return cursor.rowcount


def set_in_pool(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int], in_pool: bool) -> int:
    if not item_ids:
        return 0
    cursor = db.execute(
        f"UPDATE item SET in_pool = ? WHERE project_id = ? AND source = 'synthetic'"
        f" AND id IN ({_ids_clause(item_ids)})",
        [int(in_pool), project_id, *item_ids],
    )
    return cursor.rowcount


def update_item_text(db: sqlite_utils.Database, item_id: int, text: str, text_hash: str, meta: dict[str, Any]) -> None:
    db.execute("UPDATE item SET text = ?, text_hash = ?, meta = ? WHERE id = ?",
               [text, text_hash, json.dumps(meta), item_id])


def item_with_hash(db: sqlite_utils.Database, project_id: int, text_hash: str) -> int | None:
    row = db.execute("SELECT id FROM item WHERE project_id = ? AND text_hash = ? LIMIT 1",
                     [project_id, text_hash]).fetchone()
    return row[0] if row else None
