"""The annotation pool: which items are annotated and how the pool is handed out (assignment settings)."""


from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, get_args

import sqlite_utils

from core.config import Config, setting
from core.errors import SynthloopError
from core.projects import Project, update_settings
from core.vocab import STRATEGIES, Source, Split, Strategy
from db import annotation as annotation_db
from db import transaction

STRATEGY_TEXT: dict[str, str] = {
    "closest": "closest to completion first (default): finishes items, so complete items accumulate",
    "least": "least-annotated first: spreads labels over the whole pool",
    "random": "random order, seeded per annotator",
    "disagreement": "disagreement first: items still below the agreement threshold after k labels get more"
                    " annotators, up to the maximum overlap",
}

SKIP_RULE = ("A skipped item leaves your queue for {minutes} minutes; it comes back after that, or sooner when"
             " nothing else is left for you.")


@dataclass(frozen=True)
class AssignmentSettings(Config):
    """How the project's pool is handed out (stored in ``project.settings["annotation"]``)."""

    KIND = "assignment setting"

    strategy: Strategy = setting("closest", "which pool item an annotator gets next")
    max_overlap: int | None = setting(None, "disagreement strategy: label an item at most this often (default k + 2)")
    agreement_threshold: float = setting(0.75, "disagreement strategy: items below this a_i after k labels get more")
    reservation_seconds: int = setting(120, "how long an item handed out stays reserved for its annotator")
    skip_minutes: float = setting(10.0, "how long a skipped item stays out of the annotator's queue")
    seed: int = setting(0, "seed of the random strategy's per-annotator order")

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



def assignment_settings(project: Project) -> AssignmentSettings:
    return AssignmentSettings.from_dict(project.settings.get("annotation", {}), strict=False)


def save_assignment_settings(db: sqlite_utils.Database, project_id: int, settings: AssignmentSettings) -> Project:
    return update_settings(db, project_id, annotation=settings.to_dict())


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


