"""Held-out splits for real items imported without one: a seeded, label-stratified random split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlite_utils

from core.errors import SynthloopError
from core.vocab import HELD_OUT_SPLITS, SPLITS
from db import items as items_db
from db import transaction


@dataclass(frozen=True)
class SplitReport:
    counts: dict[str, int]

    @property
    def message(self) -> str:
        return "split real items: " + ", ".join(f"{split} {n}" for split, n in self.counts.items())


def stratified_split(labels: pd.Series, *, test: float, dev: float, seed: int) -> pd.Series:
    """``train``/``dev``/``test`` per row, the same shares within each label (unlabelled rows form one group)."""
    if not (0 <= test < 1 and 0 <= dev < 1 and test + dev < 1):
        raise SynthloopError(f"test {test} and dev {dev} must be fractions in [0, 1) that sum to less than 1")
    rng = np.random.default_rng(seed)
    result = pd.Series("train", index=labels.index, dtype=object)
    for _, group in labels.fillna("\0unlabelled").groupby(labels.fillna("\0unlabelled"), sort=True):
        order = rng.permutation(group.index.to_numpy())
        n_test = int(round(len(order) * test))
        n_dev = int(round(len(order) * dev))
        result.loc[order[:n_test]] = "test"
        result.loc[order[n_test:n_test + n_dev]] = "dev"
    return result


def split_real_items(
    db: sqlite_utils.Database, project_id: int, *, test: float = 0.2, dev: float = 0.0, seed: int = 0,
    redraw: bool = False,
) -> SplitReport:
    """Split the project's real items into train/dev/test, stratified by reference label.

    A project that already has real dev or test items is left alone unless ``redraw`` is given, which draws
    every real item afresh: the same seed always gives the same split.
    """
    items = items_db.items_frame(db, project_id, source="real")
    if items.empty:
        raise SynthloopError("the project has no real items to split: import real data first")
    held_out = int(items["split"].isin(HELD_OUT_SPLITS).sum())
    if held_out and not redraw:
        raise SynthloopError(
            f"the project already has {held_out} real dev/test items: set {{redraw}} to draw the whole split again",
            fields=("redraw",)
        )
    assignment = stratified_split(items.set_index("id")["reference_label"], test=test, dev=dev, seed=seed)
    with transaction(db):
        items_db.set_splits(db, assignment.to_dict())
    counts = assignment.value_counts()
    return SplitReport({split: int(counts.get(split, 0)) for split in SPLITS if split != "pool"})


NO_LABEL = "(no label)"


def split_label_counts(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    """The project's real items per reference label (rows, sorted; ``(no label)`` for unlabelled items, then a
    total row ``all``) and split (columns in ``SPLITS`` order): what a stratified split keeps in proportion."""
    items = items_db.items_frame(db, project_id, source="real")
    labels = items["reference_label"].astype(object).where(items["reference_label"].notna(), NO_LABEL)
    table = pd.crosstab(labels, items["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table.loc["all"] = table.sum()
    return table.rename_axis(index="label", columns="split").astype(int)
