"""Quality control of annotators: quality checks, per-annotator quality figures, and exclusion.

- A **check** is a gold item (an item of the project with a known label, or several acceptable ones) or an
  attention check (an instruction as its text, "Please choose “spam” for this item", scored like gold). A
  *qualification* check is answered before real items (core.annotation.crowd). Answers to checks live apart
  from annotations (``crowd_answer``): they never count as data labels. A gold item leaves the annotation pool
  and cannot re-enter it (a trigger, migration 0570), so nobody labels it as data from then on.
- **Quality figures** per annotator (:func:`annotator_quality`, pure): gold accuracy, attention checks passed,
  qualification score, seconds per item, and straight-lining — the longest run of one label in the annotator's
  sequence of answers, flagged when longer than ``max_run``.
- **Exclusion**: an excluded annotator's labels stay in the database and the raw export, but leave agreement,
  aggregation and training (the one rule lives in ``db.items``: every data read leaves them out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from core.annotation.adjudication import resolve_item
from core.errors import NotFoundError, SynthloopError
from core.projects import Project
from core.vocab import CheckKind
from db import annotation as annotation_db
from db import crowd as crowd_db
from db import items as items_db
from db import transaction

DEFAULT_MAX_RUN = 10  # a run of one label longer than this is flagged as straight-lining
ATTENTION_TEXT = "Please choose “{label}” for this item."


# ------------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Check:
    id: int
    kind: CheckKind
    text: str
    labels: tuple[str, ...]  # the accepted answers
    qualification: bool
    item_id: int | None = None  # a gold item's item; None for an attention check

    def is_correct(self, label: str | None) -> bool:
        return label is not None and label in self.labels


def _check(row: dict[str, Any]) -> Check:
    return Check(id=row["id"], kind=row["kind"], text=row["text"] or "", labels=tuple(json.loads(row["labels"])),
                 qualification=bool(row["qualification"]), item_id=row["item_id"])


def _labels(project: Project, labels: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if not chosen:
        raise SynthloopError("a check needs its correct label: give one of the project's labels "
                             f"{project.label_names}")
    unknown = [label for label in chosen if label not in project.label_names]
    if unknown:
        raise SynthloopError(f"label {unknown[0]!r} is not one of the project's labels {project.label_names}")
    return chosen


def add_gold(db: sqlite_utils.Database, project: Project, item: str | int, labels: Sequence[str], *,
             qualification: bool = False) -> Check:
    """Mark an item of the project as gold with its correct label(s) (again: new labels and flag). The item
    leaves the annotation pool: from now on it is shown only as a check. ``item``: its imported id, else its
    database id (an int: the database id)."""
    chosen = _labels(project, labels)
    with transaction(db):
        item_id = resolve_item(db, project, item)
        check_id = crowd_db.save_check(db, project_id=project.id, kind="gold", item_id=item_id,
                                       labels=json.dumps(chosen), qualification=qualification)
        annotation_db.set_pool(db, project.id, in_pool=False, item_ids=[item_id])
    return get_check(db, project, check_id)


def add_attention_check(db: sqlite_utils.Database, project: Project, label: str, *, text: str = "",
                        qualification: bool = False) -> Check:
    """An attention check: ``text`` (by default "Please choose “LABEL” for this item.") whose correct answer
    is ``label``."""
    (chosen,) = _labels(project, [label])
    text = text.strip() or ATTENTION_TEXT.format(label=chosen)
    if len(text) > 2000:
        raise SynthloopError(f"the attention check's text has {len(text)} characters: keep it under 2000")
    with transaction(db):
        check_id = crowd_db.save_check(db, project_id=project.id, kind="attention", text=text,
                                       labels=json.dumps([chosen]), qualification=qualification)
    return get_check(db, project, check_id)


def get_check(db: sqlite_utils.Database, project: Project, check_id: int) -> Check:
    row = crowd_db.get_check(db, check_id)
    if row is None or row["project_id"] != project.id:
        raise NotFoundError(f"no check {check_id} in project {project.name!r}: see the list of checks")
    return _check(row)


def remove_check(db: sqlite_utils.Database, project: Project, check_id: int) -> None:
    """Delete a check and its answers (a gold item stays out of the pool until it is added again)."""
    get_check(db, project, check_id)
    with transaction(db):
        crowd_db.delete_check(db, check_id)


CHECK_COLUMNS = ("check_id", "kind", "item_id", "text", "labels", "qualification", "answers", "correct")


def checks_table(db: sqlite_utils.Database, project: Project) -> pd.DataFrame:
    """The project's checks (``CHECK_COLUMNS``): ``item_id`` is a gold item's imported id (else its database id),
    ``labels`` the accepted answers joined by ", ", ``answers``/``correct`` what workers answered."""
    rows = crowd_db.list_checks(db, project.id)
    frame = pd.DataFrame([{
        "check_id": row["id"], "kind": row["kind"],
        "item_id": None if row["item_id"] is None else (row["external_id"] or str(row["item_id"])),
        "text": row["text"], "labels": ", ".join(json.loads(row["labels"])),
        "qualification": bool(row["qualification"]), "answers": row["answers"], "correct": row["correct"],
    } for row in rows], columns=list(CHECK_COLUMNS))
    return frame


# ---------------------------------------------------------------------------------------------- exclusion


def set_excluded(db: sqlite_utils.Database, project: Project, annotator: str, *, excluded: bool = True,
                 reason: str = "") -> bool:
    """Exclude an annotator from the project's agreement, aggregation and training (``excluded=False``: take
    them back). Their labels are kept. True when this changed anything."""
    annotator = resolve_annotator(db, project, annotator) if excluded else annotator.strip()
    with transaction(db):
        return items_db.set_excluded(db, project.id, annotator, excluded=excluded, reason=reason.strip())


def resolve_annotator(db: sqlite_utils.Database, project: Project, name: str) -> str:
    """An annotator of the project by name, or a crowd worker of its studies by their platform id alone."""
    name = name.strip()
    workers = crowd_db.workers_frame(db, project.id)
    if name in set(items_db.annotators_of(db, project.id)) | set(workers["annotator"]):
        return name
    matches = sorted(set(workers.loc[workers["worker_id"] == name, "annotator"]))
    if len(matches) == 1:
        return matches[0]
    raise NotFoundError(f"no annotator {name!r} in project {project.name!r}: use a name of the per-annotator"
                        " table (a crowd worker is <platform>:<worker id>)")


def excluded_annotators(db: sqlite_utils.Database, project: Project) -> list[str]:
    return items_db.excluded_annotators(db, project.id)


# ------------------------------------------------------------------------------------------ quality figures


def longest_run(labels: Sequence[str | None]) -> int:
    """The longest run of one label in a sequence; a missing label (a skipped check) ends a run."""
    best = run = 0
    previous: str | None = None
    for label in labels:
        run = run + 1 if label is not None and label == previous else (1 if label is not None else 0)
        previous = label
        best = max(best, run)
    return best


QUALITY_COLUMNS = (
    "annotator", "n_labels", "n_gold", "gold_correct", "gold_accuracy", "n_attention", "attention_passed",
    "n_qualification", "qualification_correct", "qualification_score", "median_seconds", "time_on_task_s",
    "longest_run", "straight_lining",
)


def annotator_quality(events: pd.DataFrame, *, max_run: int = DEFAULT_MAX_RUN) -> pd.DataFrame:
    """Quality figures per annotator (``QUALITY_COLUMNS``, one row per annotator, sorted by name).

    ``events``: one row per answer an annotator gave, in the order given — ``annotator``, ``label`` (None for a
    skipped check), ``seconds`` (None when unknown), ``kind`` (``data`` for a data label, ``gold`` or
    ``attention`` for a check) and ``phase`` (``qualification`` or ``main``; ignored for data labels),
    ``correct`` (0/1 for checks). Gold accuracy counts gold checks of the main phase; qualification checks of
    either kind count only in the qualification score. ``straight_lining``: the longest run of one label is
    longer than ``max_run``. Ratios and the median are missing (NaN) where nothing was answered.
    """
    if max_run < 1:
        raise SynthloopError(f"{{max_run}} {max_run!r} is not valid: use a whole number ≥ 1, e.g. 10",
                             fields=("max_run",))
    rows = []
    for annotator, group in events.groupby("annotator", sort=True):
        data = group["kind"] == "data"
        qualification = ~data & (group["phase"] == "qualification")
        gold = ~data & ~qualification & (group["kind"] == "gold")
        attention = ~data & ~qualification & (group["kind"] == "attention")
        correct = group["correct"].fillna(0).astype(int)
        seconds = group["seconds"].dropna().astype(float)
        run = longest_run([None if pd.isna(label) else str(label) for label in group["label"]])
        rows.append({
            "annotator": str(annotator),
            "n_labels": int(data.sum()),
            "n_gold": int(gold.sum()),
            "gold_correct": int(correct[gold].sum()),
            "gold_accuracy": _share(correct[gold]),
            "n_attention": int(attention.sum()),
            "attention_passed": int(correct[attention].sum()),
            "n_qualification": int(qualification.sum()),
            "qualification_correct": int(correct[qualification].sum()),
            "qualification_score": _share(correct[qualification]),
            "median_seconds": float(np.median(seconds)) if len(seconds) else None,
            "time_on_task_s": float(seconds.sum()),
            "longest_run": run,
            "straight_lining": run > max_run,
        })
    return pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))


def _share(correct: pd.Series) -> float | None:
    return float(correct.mean()) if len(correct) else None


def answer_events(db: sqlite_utils.Database, project: Project) -> pd.DataFrame:
    """Every answer given in the project in time order: data labels (excluded annotators' too) and answers to
    checks, in the shape :func:`annotator_quality` reads."""
    labels = items_db.annotations_frame(db, project.id, include_excluded=True)
    data = pd.DataFrame({"annotator": labels["annotator"], "label": labels["label"], "seconds": labels["seconds"],
                         "kind": "data", "phase": None, "correct": np.nan, "created_at": labels["created_at"]})
    answers = crowd_db.answers_frame(db, project.id)
    checks = answers[["annotator", "label", "seconds", "kind", "phase", "correct", "created_at"]]
    frames = [frame for frame in (data, checks) if not frame.empty]
    if not frames:
        return data.drop(columns="created_at")
    events = pd.concat(frames, ignore_index=True)
    # A stable sort keeps each table's own order among equal timestamps (both are written to the millisecond).
    return events.sort_values("created_at", kind="stable").drop(columns="created_at").reset_index(drop=True)


REPORT_COLUMNS = ("annotator", "platform", "worker_id", "status", "excluded", *QUALITY_COLUMNS[1:])


def quality_report(db: sqlite_utils.Database, project: Project, *, max_run: int = DEFAULT_MAX_RUN) -> pd.DataFrame:
    """One row per annotator of the project (``REPORT_COLUMNS``): who labelled or answered anything, and every
    crowd worker who arrived. ``platform``/``worker_id``/``status`` are set for crowd workers (their latest
    study); ``status`` is ``excluded`` for an excluded worker."""
    figures = annotator_quality(answer_events(db, project), max_run=max_run)
    workers = crowd_db.workers_frame(db, project.id).drop_duplicates("annotator", keep="last")
    everyone = sorted(set(figures["annotator"]) | set(workers["annotator"]))
    table = pd.DataFrame({"annotator": pd.Series(everyone, dtype=object)}).merge(
        figures.astype({"annotator": object}), on="annotator", how="left")
    table = table.merge(workers[["annotator", "platform", "worker_id", "status"]], on="annotator", how="left")
    excluded = set(items_db.excluded_annotators(db, project.id))
    table["excluded"] = table["annotator"].isin(excluded)
    table.loc[table["excluded"] & table["status"].notna(), "status"] = "excluded"
    for column in ("n_labels", "n_gold", "gold_correct", "n_attention", "attention_passed", "n_qualification",
                   "qualification_correct", "longest_run"):
        table[column] = table[column].fillna(0).astype(int)
    table["time_on_task_s"] = table["time_on_task_s"].fillna(0.0).astype(float)
    table["straight_lining"] = table["straight_lining"].astype("boolean").fillna(False).astype(bool)
    table = table.astype({"platform": object, "worker_id": object, "status": object})
    return table[list(REPORT_COLUMNS)].where(table[list(REPORT_COLUMNS)].notna(), None)
