"""Who labels what next: assignment with reservations, skips, edits and per-annotator progress.

Assignment rules (each is tested):

- Every pool item needs *k* labels (the project's overlap). An item leaves *my* queue when *I* label it; the
  UNIQUE (item, annotator) constraint and the next-item query make sure nobody labels an item twice.
- Handing out an item reserves it for ``reservation_seconds`` (default 120 s). An item is offered only while its
  labels plus other annotators' live reservations are fewer than *k*, so two annotators never race for an item's
  last slot. Finding the item and reserving it happen in one ``BEGIN IMMEDIATE`` transaction. A reservation that
  expires (the annotator walked away) frees the slot. While mine is live, reloading the page shows me the same item.
- Strategies: ``closest`` (default; fill the items closest to *k* first, so complete items accumulate),
  ``least`` (fewest labels first, breadth), ``random`` (a seeded, per-annotator random order) and
  ``disagreement`` (dynamic overlap: items that reached *k* labels with agreement below ``agreement_threshold``
  are offered first, lowest agreement first, until they have ``max_overlap`` labels; then as ``closest``).
- **Skip rule**: a skipped item leaves my queue for ``skip_minutes`` (default 10). It comes back after that, or
  sooner, as soon as nothing else is left in my queue.
- Labels can be changed later (back/edit); a label is always stored, even if a reservation expired meanwhile
  (the item may then end with one label more than *k*: no annotator's work is thrown away).
"""


from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from core.annotation.pool import AssignmentSettings, assignment_settings
from core.errors import NotFoundError, SynthloopError
from core.projects import Project
from db import annotation as annotation_db
from db import transaction


def _stamp(moment: datetime) -> str:
    """The same format as ``db.connection.now()`` so that timestamps compare as strings."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


@dataclass(frozen=True)
class AssignedItem:
    """What the Annotate page may show: the text and my own label, nothing else (blind annotation)."""

    item_id: int
    text: str
    label: str | None = None  # my current label when revisiting an item I labelled
    unsure: bool = False
    comment: str = ""


def _item_target(state: dict[str, Any], project: Project, settings: AssignmentSettings) -> int:
    """Labels this item may take now: k, or up to the maximum overlap when it is disputed (dynamic overlap)."""
    k = project.overlap
    if settings.strategy == "disagreement":
        agreement_now = state["annotation_agreement"]
        if state["annotation_count"] >= k and agreement_now is not None and agreement_now < settings.agreement_threshold:
            return settings.max_target(k)
    return k


def _shuffle_start(settings: AssignmentSettings, annotator: str, draw: int) -> int:
    """Where the annotator's ``draw``-th random item is looked for on the shuffled order (seeded, reproducible)."""
    digest = hashlib.blake2b(f"{settings.seed}:{annotator}:{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 4294967296


def next_item(
    db: sqlite_utils.Database, project: Project, annotator: str, *, at: datetime | None = None
) -> AssignedItem | None:
    """The item ``annotator`` should label now, reserved for them; None when their queue is empty.

    A live reservation of mine is honoured first (a page reload shows the same item).
    """
    settings = assignment_settings(project)
    moment = _now(at)
    now_at = _stamp(moment)
    expires_at = _stamp(moment + timedelta(seconds=settings.reservation_seconds))
    skip_cutoff = _stamp(moment - timedelta(minutes=settings.skip_minutes))
    k = project.overlap
    with transaction(db):
        annotation_db.purge_expired_reservations(db, now_at)
        held = annotation_db.current_reservation(db, project_id=project.id, annotator=annotator, now_at=now_at)
        if held is not None:
            state = annotation_db.item_state(db, held)
            if state and annotation_db.is_available(
                db, held, project_id=project.id, annotator=annotator, target=_item_target(state, project, settings),
                now_at=now_at,
            ):
                annotation_db.reserve(db, item_id=held, annotator=annotator, expires_at=expires_at)
                return AssignedItem(item_id=held, text=state["text"])
            annotation_db.release(db, item_id=held, annotator=annotator)
        item_id = None
        # First without my recently skipped items; if nothing is left, skipped items come back.
        for cutoff in (skip_cutoff, None):
            if settings.strategy == "disagreement":
                item_id = annotation_db.find_candidate(
                    db, project_id=project.id, annotator=annotator, order="disagreement", target=k,
                    max_target=settings.max_target(k), threshold=settings.agreement_threshold, now_at=now_at,
                    skip_cutoff=cutoff,
                )
            if item_id is None:
                order = {"closest": "closest", "disagreement": "closest", "least": "least",
                         "random": "shuffle"}[settings.strategy]
                start = 0
                if order == "shuffle":
                    start = _shuffle_start(settings, annotator,
                                           annotation_db.next_draw(db, project_id=project.id, annotator=annotator))
                item_id = annotation_db.find_candidate(
                    db, project_id=project.id, annotator=annotator, order=order, target=k, now_at=now_at,
                    skip_cutoff=cutoff, shuffle_start=start,
                )
            if item_id is not None:
                break
        if item_id is None:
            return None
        annotation_db.reserve(db, item_id=item_id, annotator=annotator, expires_at=expires_at)
        state = annotation_db.item_state(db, item_id)
    return AssignedItem(item_id=item_id, text=state["text"])


def _check_item(db: sqlite_utils.Database, project: Project, item_id: int) -> dict[str, Any]:
    state = annotation_db.item_state(db, item_id)
    if state is None or state["project_id"] != project.id:
        raise NotFoundError(f"item {item_id} is not in project {project.name!r}: reload the page")
    return state


def submit_label(
    db: sqlite_utils.Database,
    project: Project,
    annotator: str,
    item_id: int,
    label: str,
    *,
    unsure: bool = False,
    comment: str = "",
    seconds: float | None = None,
) -> bool:
    """Store (or change) ``annotator``'s label on the item and release their reservation. True when new."""
    if label not in project.label_names:
        raise SynthloopError(f"label {label!r} is not one of the project's labels {project.label_names}")
    if len(comment) > 2000:
        raise SynthloopError(f"the comment has {len(comment)} characters: keep it under 2000")
    with transaction(db):
        state = _check_item(db, project, item_id)
        mine = annotation_db.my_annotation(db, item_id=item_id, annotator=annotator)
        if mine is None and not state["in_pool"]:
            raise SynthloopError(f"item {item_id} is no longer in the annotation pool: go on to the next item")
        is_new = annotation_db.save_label(
            db, item_id=item_id, annotator=annotator, label=label, seconds=seconds, unsure=unsure,
            comment=comment.strip(),
        )
        annotation_db.release(db, item_id=item_id, annotator=annotator)
        annotation_db.clear_skip(db, item_id=item_id, annotator=annotator)
    return is_new


def skip_item(
    db: sqlite_utils.Database, project: Project, annotator: str, item_id: int, *, at: datetime | None = None
) -> None:
    """Set the item aside for ``annotator`` (see the skip rule) and free their reservation of it."""
    with transaction(db):
        _check_item(db, project, item_id)
        annotation_db.add_skip(db, item_id=item_id, annotator=annotator, at=_stamp(_now(at)))
        annotation_db.release(db, item_id=item_id, annotator=annotator)


def my_earlier_item(db: sqlite_utils.Database, project: Project, annotator: str, back: int) -> AssignedItem | None:
    """My ``back``-th most recent label (1 = the last one I gave) with its item, for reviewing and editing."""
    if back < 1:
        return None
    rows = annotation_db.my_history(db, project_id=project.id, annotator=annotator, offset=back - 1)
    if not rows:
        return None
    row = rows[0]
    return AssignedItem(item_id=row["item_id"], text=row["text"], label=row["label"], unsure=bool(row["unsure"]),
                        comment=row["comment"])


@dataclass(frozen=True)
class Progress:
    done: int  # my labels on pool items
    remaining: int  # pool items that still need labels and that I have not labelled
    skipped: int  # of those, set aside by me within the skip window

    @property
    def total(self) -> int:
        return self.done + self.remaining


def progress(db: sqlite_utils.Database, project: Project, annotator: str, *, at: datetime | None = None) -> Progress:
    settings = assignment_settings(project)
    dynamic = settings.strategy == "disagreement"
    moment = _now(at)
    done, remaining = annotation_db.progress_counts(
        db, project_id=project.id, annotator=annotator, target=project.overlap,
        max_target=settings.max_target(project.overlap) if dynamic else None,
        threshold=settings.agreement_threshold if dynamic else None,
    )
    skipped = annotation_db.count_skipped(db, project_id=project.id, annotator=annotator,
                                          since=_stamp(moment - timedelta(minutes=settings.skip_minutes)))
    return Progress(done=done, remaining=remaining, skipped=skipped)


# ------------------------------------------------------------------------------------------ adjudication

