"""The project's items joined with what their annotations say (majority, agreement, ties).

This is the one place that decides an item's instance agreement: from its raw labels when it has at least
two, else from an imported agreement value (datasets that publish agreement but not votes), else unknown.
"""

from __future__ import annotations

import pandas as pd
import sqlite_utils

from core.agreement.metrics import instance_agreement
from core.vocab import MODES
from db import items as items_db


def item_table(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    source: str | None = None,
    split: str | None = None,
    include_rejected: bool = False,
    annotations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per item: every ``item`` column plus ``n_labels``, ``majority_label``, ``instance_agreement``,
    ``tie``, ``votes`` and ``agreement_source`` (``labels`` | ``imported`` | None).

    ``annotations`` (``db.items.annotations_frame`` or ``annotation_labels_frame`` of the project) saves a second
    read when the caller has it.
    """
    items = items_db.items_frame(db, project_id, source=source, split=split, include_rejected=include_rejected)
    if annotations is None:
        annotations = items_db.annotation_labels_frame(db, project_id)
    per_item = instance_agreement(annotations[annotations["item_id"].isin(items["id"])])
    table = items.merge(per_item, left_on="id", right_index=True, how="left")
    table["n_labels"] = table["n_labels"].fillna(0).astype(int)
    table["tie"] = table["tie"].fillna(False).astype(bool)
    table["votes"] = table["votes"].fillna("{}")
    table["majority_label"] = table["majority_label"].astype(object).where(table["majority_label"].notna(), None)
    from_labels = table["instance_agreement"].notna()
    from_import = ~from_labels & table["imported_agreement"].notna()
    table.loc[from_import, "instance_agreement"] = table.loc[from_import, "imported_agreement"].astype(float)
    table["agreement_source"] = None
    table.loc[from_labels, "agreement_source"] = "labels"
    table.loc[from_import, "agreement_source"] = "imported"
    return table.reset_index(drop=True)


def generation_group(items: pd.DataFrame) -> pd.Series:
    """Each item's data group: ``real``, the generation mode of a synthetic item (``zero-shot``/``few-shot``,
    from its ``generation_mode`` column), or ``synthetic`` for a synthetic item of unknown mode (imported)."""
    mode = items["generation_mode"].where(items["generation_mode"].isin(MODES), "synthetic")
    return mode.where(items["source"] == "synthetic", "real").astype(object)
