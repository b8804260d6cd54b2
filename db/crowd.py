"""SQL of crowd studies: studies and their links, workers, quality checks (gold, attention) and their answers.

A check's answer lives in ``crowd_answer``, never in ``annotation``: it is not a data label (migration 0570).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlite_utils

from db.connection import now

# ------------------------------------------------------------------------------------------------ studies

_STUDY_COLUMNS = "s.id, s.project_id, s.platform, s.token, s.settings, s.created_at"


def create_study(db: sqlite_utils.Database, *, project_id: int, platform: str, token: str, settings: str) -> int:
    cursor = db.execute(
        "INSERT INTO crowd_study (project_id, platform, token, settings, created_at) VALUES (?, ?, ?, ?, ?)",
        [project_id, platform, token, settings, now()],
    )
    return int(cursor.lastrowid)


def study_by_token(db: sqlite_utils.Database, token: str) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {_STUDY_COLUMNS} FROM crowd_study s WHERE s.token = ?", [token]))
    return rows[0] if rows else None


def get_study(db: sqlite_utils.Database, study_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {_STUDY_COLUMNS} FROM crowd_study s WHERE s.id = ?", [study_id]))
    return rows[0] if rows else None


def list_studies(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """The project's studies, newest first, with their workers counted by stored status."""
    return list(db.query(
        f"SELECT {_STUDY_COLUMNS}, COUNT(w.id) AS workers,"
        " COALESCE(SUM(w.status = 'completed'), 0) AS completed,"
        " COALESCE(SUM(w.status = 'screened_out'), 0) AS screened_out"
        " FROM crowd_study s LEFT JOIN crowd_worker w ON w.study_id = s.id"
        " WHERE s.project_id = ? GROUP BY s.id ORDER BY s.id DESC",
        [project_id],
    ))


# ------------------------------------------------------------------------------------------------ workers

_WORKER_COLUMNS = ("w.id, w.study_id, w.user_id, w.annotator, w.worker_id, w.platform_study_id,"
                   " w.platform_session_id, w.status, w.qualified, w.pending_check_id, w.first_seen, w.last_seen,"
                   " w.finished_at")


def arrive(
    db: sqlite_utils.Database, *, study_id: int, user_id: int, annotator: str, worker_id: str,
    platform_study_id: str, platform_session_id: str,
) -> dict[str, Any]:
    """Record a worker's arrival through a study's link (first time or again); returns the worker row."""
    stamp = now()
    db.execute(
        "INSERT INTO crowd_worker (study_id, user_id, annotator, worker_id, platform_study_id, platform_session_id,"
        " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (study_id, user_id) DO UPDATE SET last_seen = excluded.last_seen,"
        " platform_study_id = CASE WHEN excluded.platform_study_id <> '' THEN excluded.platform_study_id"
        "                     ELSE crowd_worker.platform_study_id END,"
        " platform_session_id = CASE WHEN excluded.platform_session_id <> '' THEN excluded.platform_session_id"
        "                       ELSE crowd_worker.platform_session_id END",
        [study_id, user_id, annotator, worker_id, platform_study_id, platform_session_id, stamp, stamp],
    )
    return next(iter(db.query(f"SELECT {_WORKER_COLUMNS} FROM crowd_worker w WHERE w.study_id = ? AND w.user_id = ?",
                              [study_id, user_id])))


def current_worker(db: sqlite_utils.Database, annotator: str) -> dict[str, Any] | None:
    """The annotator's worker row of the study they arrived through last, with the study's project, platform,
    token and settings (as ``study_*`` columns); None when the annotator is no crowd worker."""
    rows = list(db.query(
        f"SELECT {_WORKER_COLUMNS}, s.project_id, s.platform, s.token AS study_token, s.settings AS study_settings"
        " FROM crowd_worker w JOIN crowd_study s ON s.id = w.study_id"
        " WHERE w.annotator = ? ORDER BY w.last_seen DESC, w.id DESC LIMIT 1",
        [annotator],
    ))
    return rows[0] if rows else None


def update_worker(db: sqlite_utils.Database, worker_id: int, **columns: Any) -> None:
    """Set some of ``status``, ``qualified``, ``pending_check_id``, ``finished_at``, ``last_seen``."""
    allowed = {"status", "qualified", "pending_check_id", "finished_at", "last_seen"}
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"not a worker column to update: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = ?" for name in columns)
    db.execute(f"UPDATE crowd_worker SET {assignments} WHERE id = ?", [*columns.values(), worker_id])


def workers_frame(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """Every worker row of the project's studies, with the study's platform, oldest first."""
    return pd.read_sql_query(
        f"SELECT {_WORKER_COLUMNS}, s.platform FROM crowd_worker w JOIN crowd_study s ON s.id = w.study_id"
        " WHERE s.project_id = ? ORDER BY w.id",
        db.conn, params=[project_id],
    )


def count_data_labels(db: sqlite_utils.Database, *, project_id: int, annotator: str) -> int:
    """The annotator's labels on the project's items (walking their annotations by the annotator index)."""
    return db.execute(
        "SELECT COUNT(*) FROM annotation a CROSS JOIN item i ON i.id = a.item_id"
        " WHERE a.annotator = ? AND i.project_id = ?",
        [annotator, project_id],
    ).fetchone()[0]


# ----------------------------------------------------------------------------------------- quality checks

_CHECK_COLUMNS = "c.id, c.project_id, c.kind, c.item_id, COALESCE(c.text, i.text) AS text, c.labels, " \
                 "c.qualification, c.created_at, i.external_id"


def save_check(
    db: sqlite_utils.Database, *, project_id: int, kind: str, labels: str, qualification: bool,
    item_id: int | None = None, text: str | None = None,
) -> int:
    """Add a check; a gold item that is already one gets the new labels and qualification flag. Returns its id."""
    row = db.execute(
        "INSERT INTO crowd_check (project_id, kind, item_id, text, labels, qualification, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, item_id) DO UPDATE SET labels = excluded.labels,"
        " qualification = excluded.qualification RETURNING id",
        [project_id, kind, item_id, text, labels, int(qualification), now()],
    ).fetchone()
    return int(row[0])


def get_check(db: sqlite_utils.Database, check_id: int) -> dict[str, Any] | None:
    rows = list(db.query(f"SELECT {_CHECK_COLUMNS} FROM crowd_check c LEFT JOIN item i ON i.id = c.item_id"
                         " WHERE c.id = ?", [check_id]))
    return rows[0] if rows else None


def list_checks(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """The project's checks with their text and the answers they got (``answers``, ``correct``)."""
    return list(db.query(
        f"SELECT {_CHECK_COLUMNS}, (SELECT COUNT(*) FROM crowd_answer x WHERE x.check_id = c.id) AS answers,"
        " (SELECT COALESCE(SUM(x.correct), 0) FROM crowd_answer x WHERE x.check_id = c.id) AS correct"
        " FROM crowd_check c LEFT JOIN item i ON i.id = c.item_id WHERE c.project_id = ? ORDER BY c.id",
        [project_id],
    ))


def delete_check(db: sqlite_utils.Database, check_id: int) -> None:
    db.execute("DELETE FROM crowd_check WHERE id = ?", [check_id])


def unanswered_checks(
    db: sqlite_utils.Database, *, project_id: int, annotator: str, qualification: bool
) -> list[int]:
    """Ids of the project's checks of one kind of phase (qualification or not) the annotator has not answered."""
    return [row[0] for row in db.execute(
        "SELECT c.id FROM crowd_check c WHERE c.project_id = ? AND c.qualification = ?"
        " AND NOT EXISTS (SELECT 1 FROM crowd_answer x WHERE x.check_id = c.id AND x.annotator = ?) ORDER BY c.id",
        [project_id, int(qualification), annotator],
    )]


def count_checks(db: sqlite_utils.Database, project_id: int, *, qualification: bool) -> int:
    return db.execute("SELECT COUNT(*) FROM crowd_check WHERE project_id = ? AND qualification = ?",
                      [project_id, int(qualification)]).fetchone()[0]


# ------------------------------------------------------------------------------------------------ answers


def add_answer(
    db: sqlite_utils.Database, *, check_id: int, study_id: int | None, annotator: str, phase: str,
    label: str | None, correct: bool, seconds: float | None,
) -> bool:
    """Record the annotator's answer to a check; False (and nothing changed) when they had answered it already."""
    cursor = db.execute(
        "INSERT INTO crowd_answer (check_id, study_id, annotator, phase, label, correct, seconds, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (check_id, annotator) DO NOTHING",
        [check_id, study_id, annotator, phase, label, int(correct), seconds, now()],
    )
    return cursor.rowcount == 1


def answered_gold_item(db: sqlite_utils.Database, *, project_id: int, annotator: str, item_id: int) -> bool:
    return db.execute(
        "SELECT 1 FROM crowd_answer x JOIN crowd_check c ON c.id = x.check_id"
        " WHERE x.annotator = ? AND c.project_id = ? AND c.item_id = ?",
        [annotator, project_id, item_id],
    ).fetchone() is not None


def answer_counts(db: sqlite_utils.Database, *, project_id: int, annotator: str) -> dict[str, tuple[int, int]]:
    """``phase → (answers, correct)`` of the annotator's answers to the project's checks."""
    rows = db.execute(
        "SELECT x.phase, COUNT(*), COALESCE(SUM(x.correct), 0) FROM crowd_answer x"
        " JOIN crowd_check c ON c.id = x.check_id WHERE x.annotator = ? AND c.project_id = ? GROUP BY x.phase",
        [annotator, project_id],
    ).fetchall()
    return {phase: (int(n), int(correct)) for phase, n, correct in rows}


def answers_frame(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """Every answer to the project's checks: ``annotator, check_id, kind, phase, label, correct, seconds,
    created_at``, in the order given."""
    return pd.read_sql_query(
        "SELECT x.annotator, x.check_id, c.kind, x.phase, x.label, x.correct, x.seconds, x.created_at"
        " FROM crowd_answer x JOIN crowd_check c ON c.id = x.check_id WHERE c.project_id = ? ORDER BY x.id",
        db.conn, params=[project_id],
    )


def gold_item_ids(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int] | None = None) -> set[int]:
    """The project's items that are gold checks (of ``item_ids`` when given)."""
    rows = db.execute("SELECT item_id FROM crowd_check WHERE project_id = ? AND item_id IS NOT NULL",
                      [project_id]).fetchall()
    found = {int(row[0]) for row in rows}
    return found if item_ids is None else found & set(item_ids)
