"""Training runs and their per-item predictions (tables ``run`` and ``prediction``, migration 0300)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlite_utils

from db.connection import now

# status: one of core.vocab.JOB_STATUSES (a run has the statuses of its job)
JSON_COLUMNS = ("config", "train_item_ids", "history", "metrics")
UPDATABLE = frozenset({"status", "job_id", "train_item_ids", "n_train", "n_test", "history", "metrics", "error",
                       "artifact_path", "device", "seconds", "started_at", "finished_at"})


def _row_to_run(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for column in JSON_COLUMNS:
        if column in row:
            row[column] = json.loads(row[column] or ("[]" if column == "train_item_ids" else "{}"))
    return row


def create_run(
    db: sqlite_utils.Database,
    *,
    project_id: int,
    config: dict[str, Any],
    data_source: str,
    job_id: int | None = None,
    status: str = "queued",
) -> int:
    cursor = db.execute(
        "INSERT INTO run (project_id, job_id, status, config, seed, model, label_source, data_source, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [project_id, job_id, status, json.dumps(config), config["seed"], config["model"], config["label_source"],
         data_source, now()],
    )
    return int(cursor.lastrowid)


def update_run(db: sqlite_utils.Database, run_id: int, **fields: Any) -> None:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise KeyError(f"not updatable run fields: {sorted(unknown)}")
    values = [json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()]
    assignments = ", ".join(f"{column} = ?" for column in fields)
    db.execute(f"UPDATE run SET {assignments} WHERE id = ?", [*values, run_id])


def start_run(db: sqlite_utils.Database, run_id: int) -> None:
    db.execute("UPDATE run SET status = 'running', started_at = ?, error = '' WHERE id = ?", [now(), run_id])


def finish_run(db: sqlite_utils.Database, run_id: int, *, status: str, error: str = "") -> None:
    db.execute("UPDATE run SET status = ?, error = ?, finished_at = ? WHERE id = ?", [status, error, now(), run_id])


_RUN_SELECT = (
    "SELECT r.*, p.name AS project_name, j.status AS job_status, j.error AS job_error,"
    " j.progress_done AS job_done, j.progress_total AS job_total, j.message AS job_message,"
    " j.result AS job_result, j.heartbeat_at AS job_heartbeat_at"
    " FROM run r JOIN project p ON p.id = r.project_id LEFT JOIN job j ON j.id = r.job_id"
)


def get_run(db: sqlite_utils.Database, run_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"{_RUN_SELECT} WHERE r.id = ?", [run_id]))
    return _row_to_run(rows[0]) if rows else None


def _run_filter(project_id: int | None, statuses: Sequence[str] | None) -> tuple[str, list[Any]]:
    """`` WHERE …`` (or nothing) for the run lists' optional project and status filters."""
    clauses, params = [], []
    if project_id is not None:
        clauses.append("r.project_id = ?")
        params.append(project_id)
    if statuses:
        clauses.append(f"r.status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def list_runs(
    db: sqlite_utils.Database, *, project_id: int | None = None, statuses: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Runs newest first, each with its project's name and its job's status, error and progress."""
    where, params = _run_filter(project_id, statuses)
    return [_row_to_run(r) for r in db.query(f"{_RUN_SELECT}{where} ORDER BY r.id DESC", params)]


def delete_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Delete the run and (by cascade) its predictions; its job row stays as the record of the work done."""
    db.execute("DELETE FROM run WHERE id = ?", [run_id])


def replace_predictions(db: sqlite_utils.Database, run_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Make the run's predictions exactly ``rows`` (dicts with item_id, true_label, predicted_label,
    probabilities (dict), agreement)."""
    db.execute("DELETE FROM prediction WHERE run_id = ?", [run_id])
    db.conn.executemany(
        "INSERT INTO prediction (run_id, item_id, true_label, predicted_label, probabilities, agreement)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(run_id, int(r["item_id"]), r.get("true_label"), r["predicted_label"], json.dumps(r["probabilities"]),
          r.get("agreement")) for r in rows],
    )


def predictions_frame(db: sqlite_utils.Database, run_id: int) -> pd.DataFrame:
    """One row per test item of the run: item_id, text, true_label, predicted_label, probabilities (JSON),
    agreement."""
    return pd.read_sql_query(
        "SELECT pr.item_id, i.external_id, i.text, pr.true_label, pr.predicted_label, pr.probabilities,"
        " pr.agreement FROM prediction pr JOIN item i ON i.id = pr.item_id WHERE pr.run_id = ? ORDER BY pr.item_id",
        db.conn,
        params=[run_id],
    )



# What lists of runs show of the JSON columns: a summary row's ``config`` and ``metrics`` hold only these keys,
# and it has no ``history`` or ``train_item_ids`` (tens of thousands of ids per run, parsed for nothing).
SUMMARY_CONFIG_KEYS = ("epochs", "min_agreement", "objective", "annotator_heads")
SUMMARY_METRIC_KEYS = ("accuracy", "macro_f1", "sweep_r2", "sweep_spearman_rho", "sweep", "soft_metrics")


def _json_subset(column: str, keys: Sequence[str]) -> str:
    return "json_object(" + ", ".join(f"'{key}', json_extract({column}, '$.{key}')" for key in keys) + ")"


def list_run_summaries(
    db: sqlite_utils.Database, *, project_id: int | None = None, statuses: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """:func:`list_runs` in slim rows, newest first: every plain column with the project's name and the job's
    status, error and progress, ``config`` and ``metrics`` cut to ``SUMMARY_CONFIG_KEYS`` and
    ``SUMMARY_METRIC_KEYS``, without ``history`` and ``train_item_ids``."""
    where, params = _run_filter(project_id, statuses)
    rows = db.query(
        "SELECT r.id, r.project_id, r.job_id, r.status, r.seed, r.model, r.label_source, r.data_source, r.n_train,"
        " r.n_test, r.error, r.artifact_path, r.device, r.seconds, r.created_at, r.started_at, r.finished_at,"
        f" {_json_subset('r.config', SUMMARY_CONFIG_KEYS)} AS config,"
        f" {_json_subset('r.metrics', SUMMARY_METRIC_KEYS)} AS metrics,"
        " p.name AS project_name, j.status AS job_status, j.error AS job_error, j.progress_done AS job_done,"
        " j.progress_total AS job_total, j.message AS job_message, j.result AS job_result,"
        " j.heartbeat_at AS job_heartbeat_at"
        f" FROM run r JOIN project p ON p.id = r.project_id LEFT JOIN job j ON j.id = r.job_id{where}"
        f" ORDER BY r.id DESC{'' if limit is None else ' LIMIT ?'}",
        params + ([] if limit is None else [limit]),
    )
    return [_row_to_run(row) for row in rows]
