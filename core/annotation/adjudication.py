"""Adjudication: a researcher sets an item's final label, which overrides the annotators' majority."""


from __future__ import annotations

import pandas as pd
import sqlite_utils

from core.data.items import item_table
from core.data.tables import reference_candidates
from core.errors import NotFoundError, SynthloopError
from core.projects import Project
from db import annotation as annotation_db
from db import transaction


def adjudication_rows(table: pd.DataFrame, *, include_done: bool) -> pd.DataFrame:
    """The items (of an item table) that need a final label: two or more labels, least agreement first."""
    queue = table[table["n_labels"] >= 2]
    if not include_done:
        queue = queue[queue["adjudicated_label"].isna()]
    queue = queue.sort_values(["instance_agreement", "tie", "id"], ascending=[True, False, True])
    columns = ["id", "external_id", "text", "n_labels", "votes", "majority_label", "tie", "instance_agreement",
               "adjudicated_label"]
    return queue[columns].reset_index(drop=True)


def adjudication_queue(db: sqlite_utils.Database, project: Project, *, include_done: bool = False) -> pd.DataFrame:
    """Items with ≥ 2 labels, lowest agreement first (ties before non-ties at equal agreement).

    Columns: ``id``, ``external_id``, ``text``, ``n_labels``, ``votes``, ``majority_label``, ``tie``,
    ``instance_agreement``, ``adjudicated_label``. Adjudicated items are left out unless ``include_done``.
    """
    return adjudication_rows(item_table(db, project.id), include_done=include_done)


def resolve_item(db: sqlite_utils.Database, project: Project, reference: str | int) -> int:
    """An item of the project by its imported id (as in exports, a neutralised CSV cell such as ``'=x``
    included), else its database id."""
    if isinstance(reference, int):  # a database id (pages); strings are looked up as imported ids first (CLI)
        state = annotation_db.item_state(db, reference)
        item_id = reference if state is not None and state["project_id"] == project.id else None
    else:
        found = (annotation_db.find_item(db, project.id, ref) for ref in reference_candidates(str(reference)))
        item_id = next((found_id for found_id in found if found_id is not None), None)
    if item_id is None:
        raise NotFoundError(
            f"no item {reference!r} in project {project.name!r}: use an item_id of the agreement items table"
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

