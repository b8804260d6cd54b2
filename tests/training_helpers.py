"""Helpers for the training tests: put small labelled datasets into a project through the db layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.data.text import text_hash
from db import items as items_db
from db import transaction


def add_items(db: Any, project_id: int, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert items (``text``, ``source``, ``split``, optional ``label``, ``generation`` (a dict with the
    ``generation_mode`` and ``generation_job_id`` of a synthetic item), ``review_status``, ``agreement``) and their
    ``votes`` (a list of labels, one annotator each); returns the ids."""
    items = []
    for row in rows:
        item = {"text": row["text"], "text_hash": text_hash(row["text"]), "source": row.get("source", "real"),
                "split": row.get("split", "train"), "reference_label": row.get("label"),
                "imported_agreement": row.get("agreement"), **row.get("generation", {})}
        if "review_status" in row:
            item["review_status"] = row["review_status"]
        items.append(item)
    with transaction(db):
        ids = items_db.insert_items(db, project_id, items)
        votes = [{"item_id": item_id, "annotator": f"annotator{k}", "label": label}
                 for item_id, row in zip(ids, rows, strict=True) for k, label in enumerate(row.get("votes", []))]
        if votes:
            items_db.insert_annotations(db, votes)
    return ids
