"""Annotation work: the pool, who labels what next, skips, edits, adjudication, and the project's agreement.

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
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import pandas as pd
import sqlite_utils

from core import agreement
from core.errors import NotFoundError, SynthloopError
from core.items import item_table
from core.projects import Project, update_settings
from core.text import neutralise_formula
from db import annotation as annotation_db
from db import items as items_db
from db import transaction

Strategy = Literal["closest", "least", "random", "disagreement"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
STRATEGY_TEXT: dict[str, str] = {
    "closest": "closest to completion first (default): finishes items, so complete items accumulate",
    "least": "least-annotated first: spreads labels over the whole pool",
    "random": "random order, seeded per annotator",
    "disagreement": "disagreement first: items still below the agreement threshold after k labels get more"
                    " annotators, up to the maximum overlap",
}
Source = Literal["real", "synthetic"]
Split = Literal["train", "dev", "test", "pool"]

SKIP_RULE = ("A skipped item leaves your queue for {minutes} minutes; it comes back after that, or sooner when"
             " nothing else is left for you.")


@dataclass(frozen=True)
class AssignmentSettings:
    """How the project's pool is handed out (stored in ``project.settings["annotation"]``)."""

    strategy: Strategy = "closest"
    max_overlap: int | None = None  # disagreement strategy: label an item at most this often (default k + 2)
    agreement_threshold: float = 0.75  # disagreement strategy: items with a_i below this after k labels get more
    reservation_seconds: int = 120
    skip_minutes: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SynthloopError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.max_overlap is not None and (not isinstance(self.max_overlap, int) or not 1 <= self.max_overlap <= 50):
            raise SynthloopError(f"max_overlap {self.max_overlap!r} must be a whole number from 1 to 50")
        if not 0 < self.agreement_threshold <= 1:
            raise SynthloopError(
                f"agreement_threshold {self.agreement_threshold!r} must lie in (0, 1], e.g. 0.75"
            )
        if not isinstance(self.reservation_seconds, int) or not 10 <= self.reservation_seconds <= 3600:
            raise SynthloopError(
                f"reservation_seconds {self.reservation_seconds!r} must be a whole number from 10 to 3600"
            )
        if not 0 <= self.skip_minutes <= 24 * 60:
            raise SynthloopError(f"skip_minutes {self.skip_minutes!r} must lie between 0 and 1440")

    def max_target(self, overlap: int) -> int:
        return max(self.max_overlap if self.max_overlap is not None else overlap + 2, overlap)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AssignmentSettings:
        return cls(**{k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__})


def assignment_settings(project: Project) -> AssignmentSettings:
    return AssignmentSettings.from_dict(project.settings.get("annotation", {}))


def save_assignment_settings(db: sqlite_utils.Database, project_id: int, settings: AssignmentSettings) -> Project:
    return update_settings(db, project_id, annotation=settings.to_dict())


def _stamp(moment: datetime) -> str:
    """The same format as ``db.connection.now()`` so that timestamps compare as strings."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


# ------------------------------------------------------------------------------------------------ pool


def set_pool(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    add: bool = True,
    source: str | None = None,
    split: str | None = None,
    generation_job_id: int | None = None,
    item_ids: list[int] | None = None,
) -> int:
    """Add matching items to the annotation pool (or remove them with ``add=False``); returns how many changed.

    Filters combine: e.g. ``source="real", split="test"``; ``generation_job_id`` picks one generation job's
    synthetic items. Rejected synthetic items are never pooled.
    """
    if source is not None and source not in get_args(Source):
        raise SynthloopError(f"source {source!r} is not one of real, synthetic")
    if split is not None and split not in get_args(Split):
        raise SynthloopError(f"split {split!r} is not one of {', '.join(get_args(Split))}")
    with transaction(db):
        return annotation_db.set_pool(db, project_id, in_pool=add, source=source, split=split,
                                      generation_job_id=generation_job_id, item_ids=item_ids)


@dataclass(frozen=True)
class PoolStatus:
    n_items: int
    n_complete: int  # items with at least k labels
    n_slots_filled: int  # labels counted up to k per item
    n_slots: int  # n_items × k
    n_annotations: int
    overlap: int
    groups: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_status(db: sqlite_utils.Database, project: Project) -> PoolStatus:
    summary = annotation_db.pool_summary(db, project.id, target=project.overlap)
    return PoolStatus(
        n_items=summary["n_items"], n_complete=summary["n_complete"], n_slots_filled=summary["n_slots_filled"],
        n_slots=summary["n_items"] * project.overlap, n_annotations=summary["n_annotations"],
        overlap=project.overlap, groups=tuple(summary["groups"]),
    )


def generation_jobs_in_project(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    return annotation_db.generation_jobs_with_items(db, project_id)


# ------------------------------------------------------------------------------------------ assignment


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


def release_reservations(db: sqlite_utils.Database, project: Project, annotator: str) -> None:
    """Give back every item ``annotator`` holds in this project (e.g. when they log out)."""
    with transaction(db):
        annotation_db.release_all(db, project_id=project.id, annotator=annotator)


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


def adjudication_queue(db: sqlite_utils.Database, project: Project, *, include_done: bool = False) -> pd.DataFrame:
    """Items with ≥ 2 labels, lowest agreement first (ties before non-ties at equal agreement).

    Columns: ``id``, ``external_id``, ``text``, ``n_labels``, ``votes``, ``majority_label``, ``tie``,
    ``instance_agreement``, ``adjudicated_label``. Adjudicated items are left out unless ``include_done``.
    """
    return _queue(item_table(db, project.id), include_done=include_done)


def resolve_item(db: sqlite_utils.Database, project: Project, reference: str | int) -> int:
    """An item of the project by its imported id (as in exports), else its database id."""
    if isinstance(reference, int):  # a database id (pages); strings are looked up as imported ids first (CLI)
        state = annotation_db.item_state(db, reference)
        item_id = reference if state is not None and state["project_id"] == project.id else None
    else:
        item_id = annotation_db.find_item(db, project.id, str(reference))
    if item_id is None:
        raise NotFoundError(
            f"no item {reference!r} in project {project.name!r}: use the item_id of `agreement --items-out`"
        )
    return item_id


def adjudicate(db: sqlite_utils.Database, project: Project, item: str | int, label: str | None) -> int:
    """Set (or with ``None`` clear) the item's final label, which export and training use before the majority."""
    if label is not None and label not in project.label_names:
        raise SynthloopError(f"label {label!r} is not one of the project's labels {project.label_names}")
    with transaction(db):
        item_id = resolve_item(db, project, item)
        annotation_db.set_adjudicated_label(db, item_id, label)
    return item_id


# ----------------------------------------------------------------------------------- project agreement


def _report_items(items: pd.DataFrame) -> pd.DataFrame:
    """The item columns the report uses; ``group`` is a synthetic item's generation mode (zero-shot/few-shot)."""
    out = items[["id", "source", "reference_label", "imported_agreement"]].copy()
    synthetic = items["source"] == "synthetic"
    out["group"] = None
    out.loc[synthetic, "group"] = items.loc[synthetic, "meta"].map(lambda text: json.loads(text or "{}").get("mode"))
    return out


def _report_labels(project: Project, annotations: pd.DataFrame) -> list[str]:
    labels = list(project.label_names)
    return labels + sorted(set(annotations["label"].dropna().astype(str)) - set(labels))


def project_agreement(
    db: sqlite_utils.Database, project: Project, *, config: agreement.ReportConfig | None = None
) -> agreement.AgreementReport:
    """The agreement report of a project's accepted items (all annotators, LLM and imported ones included)."""
    items = _report_items(items_db.items_frame(db, project.id))
    annotations = items_db.annotations_frame(db, project.id)
    return agreement.agreement_report(annotations, items, labels=_report_labels(project, annotations), config=config)


ITEMS_OUT_COLUMNS = ("item_id", "text", "n_labels", "majority_label", "instance_agreement", "tie")


def items_agreement(db: sqlite_utils.Database, project: Project) -> pd.DataFrame:
    """One row per item in DESIGN.md's ``--items-out`` shape: ``item_id`` (the imported id when there is one),
    ``text``, ``n_labels``, ``majority_label``, ``instance_agreement`` (imported where there are < 2 raw labels),
    ``tie``. Cells that a spreadsheet would run as a formula are neutralised."""
    table = item_table(db, project.id)
    item_id = table["external_id"].astype(object).where(table["external_id"].notna(), table["id"].astype(str))
    out = pd.DataFrame({
        "item_id": item_id.map(neutralise_formula),
        "text": table["text"].map(neutralise_formula),
        "n_labels": table["n_labels"].astype(int),
        "majority_label": table["majority_label"].map(neutralise_formula),
        "instance_agreement": table["instance_agreement"],
        "tie": table["tie"].astype(bool),
    })
    return out[list(ITEMS_OUT_COLUMNS)]


def final_labels(db: sqlite_utils.Database, project_id: int, *, model: bool = False) -> pd.DataFrame:
    """Labels for training and export, one row per accepted item (index ``item_id``).

    Columns: ``n_labels``, ``majority_label`` (None on a tie), ``tie``, ``instance_agreement`` (imported where
    raw labels are missing), ``adjudicated_label``, ``final_label`` = adjudicated label, else the majority label
    (None on an unresolved tie or without labels); with ``model=True`` also ``aggregate_label`` and
    ``aggregate_confidence`` from Dawid–Skene.
    """
    table = item_table(db, project_id).set_index("id").rename_axis("item_id")
    out = table[["n_labels", "majority_label", "tie", "instance_agreement", "adjudicated_label"]].copy()
    final = out["adjudicated_label"].astype(object)
    out["final_label"] = final.where(final.notna(), out["majority_label"].astype(object))
    out["final_label"] = out["final_label"].where(out["final_label"].notna(), None)
    if model:
        aggregate = agreement.model_aggregate(items_db.annotations_frame(db, project_id))
        out = out.join(aggregate, how="left")
    return out


# ------------------------------------------------------------------------------------------ the page view


@dataclass(frozen=True)
class AgreementView:
    """What the Agreement page shows, from one read of the project: the report, the items with their
    agreement (``item_table`` columns), and the adjudication queue."""

    report: agreement.AgreementReport
    items: pd.DataFrame
    queue: pd.DataFrame


def _queue(table: pd.DataFrame, *, include_done: bool) -> pd.DataFrame:
    queue = table[table["n_labels"] >= 2]
    if not include_done:
        queue = queue[queue["adjudicated_label"].isna()]
    queue = queue.sort_values(["instance_agreement", "tie", "id"], ascending=[True, False, True])
    columns = ["id", "external_id", "text", "n_labels", "votes", "majority_label", "tie", "instance_agreement",
               "adjudicated_label"]
    return queue[columns].reset_index(drop=True)


def agreement_view(
    db: sqlite_utils.Database,
    project: Project,
    *,
    config: agreement.ReportConfig | None = None,
    include_adjudicated: bool = False,
) -> AgreementView:
    annotations = items_db.annotations_frame(db, project.id)
    table = item_table(db, project.id, annotations=annotations)
    report = agreement.agreement_report(annotations, _report_items(table), labels=_report_labels(project, annotations),
                                        config=config)
    return AgreementView(report=report, items=table, queue=_queue(table, include_done=include_adjudicated))


def agreement_histogram(items: pd.DataFrame):
    """Altair histogram of instance agreement ``a_i`` (items with a value), stacked by source."""
    import altair as alt

    frame = items.loc[items["instance_agreement"].notna(), ["instance_agreement", "source"]]
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("instance_agreement:Q", bin=alt.Bin(extent=[0, 1], step=0.05), title="instance agreement a_i"),
            y=alt.Y("count():Q", title="items"),
            color=alt.Color("source:N", title="source"),
            tooltip=["source:N", alt.Tooltip("count():Q", title="items")],
        )
        .properties(height=220)
    )
