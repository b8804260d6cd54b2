"""Review of synthetic items: browse them with provenance, accept or reject, edit, and send to annotation.

Review status lives in ``item.review_status`` (rejected items drop out of training and analysis); sending to
annotation sets ``item.in_pool = 1``, which the annotation queue reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import sqlite_utils

from core.agreement.metrics import reaches
from core.agreement.panel import panel_agreement
from core.data.text import normalise_text, text_hash
from core.errors import NotFoundError, SynthloopError
from db import generation as gen_db
from db import items as items_db
from db import transaction

ReviewStatus = Literal["accepted", "rejected"]
SHOWN_AT_MOST = 5000  # synthetic items listed at once (the first by id); the page says when the list is cut
REVIEW_COLUMNS = ["id", "text", "reference_label", "panel_agreement", "review_status", "in_pool", "mode", "model",
                  "temperature", "generation_job_id", "round", "attributes", "generation_call_id", "edited"]


def synthetic_items(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    job_id: int | None = None,
    label: str | None = None,
    review_status: ReviewStatus | None = None,
    in_pool: bool | None = None,
    min_panel_agreement: float | None = None,
) -> pd.DataFrame:
    """Synthetic items with provenance columns; ``job_id`` is the job-table id shown on the Generate page.
    ``panel_agreement``: the share of the LLM panel (``llm:`` annotators) that gave the intended label (NaN when
    no member labelled the item); ``min_panel_agreement`` keeps the items at or above it (none: every item)."""
    generation_job_id = None
    if job_id is not None:
        row = gen_db.get_generation_job_by_job(db, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id} is not a generation job")
        generation_job_id = int(row["id"])
    # The panel filter applies before the cut to SHOWN_AT_MOST, so the items shown are the first that pass it.
    frame = gen_db.synthetic_items(db, project_id, generation_job_id=generation_job_id, label=label,
                                   review_status=review_status, in_pool=in_pool,
                                   limit=-1 if min_panel_agreement is not None else SHOWN_AT_MOST)
    frame["edited"] = frame["meta"].map(lambda m: "original_text" in json.loads(m or "{}"))
    frame["in_pool"] = frame["in_pool"].astype(bool)
    intended = pd.Series(frame["reference_label"].to_numpy(object), index=frame["id"].to_numpy())
    agreement = panel_agreement(items_db.annotation_labels_frame(db, project_id), intended)
    frame["panel_agreement"] = agreement.to_numpy(float)
    if min_panel_agreement is not None:
        frame = frame[reaches(frame["panel_agreement"], min_panel_agreement)].head(SHOWN_AT_MOST)
    return frame[REVIEW_COLUMNS].reset_index(drop=True)


def attribute_counts(items: pd.DataFrame) -> pd.DataFrame:
    """Per attribute and value, how many of ``items`` (rows of :func:`synthetic_items`) were asked for it, per
    intended label: ``attribute, value, label, items``. Empty when no call sampled attributes."""
    rows = [{"attribute": name, "value": value, "label": label}
            for label, attributes in zip(items["reference_label"], items["attributes"], strict=True)
            for name, value in json.loads(attributes or "{}").items()]
    if not rows:
        return pd.DataFrame(columns=["attribute", "value", "label", "items"])
    frame = pd.DataFrame(rows)
    return (frame.groupby(["attribute", "value", "label"], sort=True).size().rename("items").reset_index())


@dataclass(frozen=True)
class SeedShown:
    item_id: int
    external_id: str | None
    text: str
    label: str | None


@dataclass(frozen=True)
class Provenance:
    """Where a synthetic item came from: the call that produced it (messages, seeds shown, raw reply, screening
    outcomes) and the settings of its generation job. ``job_id`` is the job-table id shown on the Generate page."""

    item_id: int
    text: str
    intended_label: str | None
    review_status: str
    in_pool: bool
    original_text: str | None  # the generated text, when a reviewer edited it
    mode: str | None
    model: str | None
    backend: str | None
    temperature: float | None
    job_id: int | None
    call_id: int | None
    messages: tuple[dict[str, str], ...]
    raw_output: str | None
    outcomes: tuple[dict[str, Any], ...]
    seeds: tuple[SeedShown, ...]
    round: int | None  # the round of the project's loop (its generation job)
    counter_examples: tuple[SeedShown, ...]  # earlier texts people judged otherwise, shown as what not to write
    retrieved: tuple[SeedShown, ...]  # real texts the call was grounded in
    attributes: dict[str, str]  # the attribute values the call asked for
    latency_s: float | None
    config: dict[str, Any]


def provenance(db: sqlite_utils.Database, project_id: int, item_id: int) -> Provenance:
    item = items_db.get_item(db, item_id)
    if item is None or item["project_id"] != project_id or item["source"] != "synthetic":
        raise NotFoundError(f"no synthetic item {item_id} in this project")
    meta = json.loads(item["meta"] or "{}")
    call = gen_db.get_call(db, item["generation_call_id"]) if item["generation_call_id"] else None
    generation_job = gen_db.get_generation_job(db, call["generation_job_id"]) if call else None

    def shown(column: str) -> tuple[SeedShown, ...]:
        return tuple(SeedShown(item_id=s["id"], external_id=s["external_id"], text=s["text"],
                               label=s["adjudicated_label"] or s["reference_label"])
                     for s in items_db.get_items(db, call[column])) if call else ()

    return Provenance(
        item_id=item_id, text=item["text"], intended_label=item["reference_label"],
        review_status=item["review_status"], in_pool=bool(item["in_pool"]), original_text=meta.get("original_text"),
        mode=item["generation_mode"], model=meta.get("model"), backend=meta.get("backend"),
        temperature=meta.get("temperature"), job_id=generation_job["job_id"] if generation_job else None,
        call_id=item["generation_call_id"], messages=tuple(call["messages"]) if call else (),
        raw_output=call["raw_output"] if call else None, outcomes=tuple(call["outcomes"]) if call else (),
        seeds=shown("seed_item_ids"), round=generation_job["round"] if generation_job else None,
        counter_examples=shown("counter_example_ids"), retrieved=shown("retrieved_ids"),
        attributes=call["attributes"] if call else {},
        latency_s=call["latency_s"] if call else None,
        config=generation_job["config"] if generation_job else {},
    )


def set_review_status(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int],
                      status: ReviewStatus) -> int:
    if status not in ("accepted", "rejected"):
        raise SynthloopError(f"review status {status!r} is not valid: accepted or rejected")
    with transaction(db):
        changed = gen_db.set_review_status(db, project_id, [int(i) for i in item_ids], status)
        if status == "rejected":
            # A rejected text should not be annotated: take it out of the pool too.
            gen_db.set_in_pool(db, project_id, [int(i) for i in item_ids], False)
    return changed


def send_to_annotation(db: sqlite_utils.Database, project_id: int, item_ids: Sequence[int],
                       in_pool: bool = True) -> int:
    """Put synthetic items in (or take them out of) the annotation pool; rejected items cannot go in."""
    ids = [int(i) for i in item_ids]
    if in_pool:
        rejected = [r["id"] for r in items_db.get_items(db, ids) if r["review_status"] == "rejected"]
        if rejected:
            raise SynthloopError(f"item {rejected[0]} is rejected: accept it before sending it to annotation")
    with transaction(db):
        return gen_db.set_in_pool(db, project_id, ids, in_pool)


def edit_text(db: sqlite_utils.Database, project_id: int, item_id: int, text: str) -> None:
    """Replace a synthetic item's text (re-hashed); the first original text is kept in ``meta.original_text``."""
    text = " ".join((text or "").split())
    if not normalise_text(text):
        raise SynthloopError("the new text is empty: type the text, or reject the item instead")
    with transaction(db):
        item = items_db.get_item(db, item_id)
        if item is None or item["project_id"] != project_id or item["source"] != "synthetic":
            raise NotFoundError(f"no synthetic item {item_id} in this project")
        digest = text_hash(text)
        other = gen_db.item_with_hash(db, project_id, digest)
        if other is not None and other != item_id:
            raise SynthloopError(f"the new text duplicates item {other}: change it or reject this item")
        meta = json.loads(item["meta"] or "{}")
        meta.setdefault("original_text", item["text"])
        gen_db.update_item_text(db, item_id, text, digest, meta)
