"""Stratified held-out splits of real items."""

from __future__ import annotations

import pandas as pd
import pytest

from core.data import splits
from core.data.text import text_hash
from core.errors import SynthloopError
from db import items as items_db
from db import transaction


def _add_items(db, project_id: int, labels: list[str]) -> None:
    rows = [{"text": f"text {i}", "text_hash": text_hash(f"text {i}"), "source": "real", "split": "train",
             "reference_label": label} for i, label in enumerate(labels)]
    with transaction(db):
        items_db.insert_items(db, project_id, rows)


def test_stratified_split_keeps_label_shares_and_is_seeded() -> None:
    labels = pd.Series(["a"] * 10 + ["b"] * 5)
    first = splits.stratified_split(labels, test=0.2, dev=0.2, seed=3)
    assert first.groupby(labels).value_counts().to_dict() == {
        ("a", "train"): 6, ("a", "dev"): 2, ("a", "test"): 2, ("b", "train"): 3, ("b", "dev"): 1, ("b", "test"): 1,
    }
    assert first.equals(splits.stratified_split(labels, test=0.2, dev=0.2, seed=3))
    assert not first.equals(splits.stratified_split(labels, test=0.2, dev=0.2, seed=4))


def test_split_real_items_refuses_to_move_a_held_out_set_without_redraw(fresh_db, project) -> None:
    _add_items(fresh_db, project.id, ["pos"] * 8 + ["neg"] * 4)
    report = splits.split_real_items(fresh_db, project.id, test=0.25, seed=0)
    assert report.counts == {"train": 9, "dev": 0, "test": 3}
    with pytest.raises(SynthloopError, match="already has 3 real dev/test items: set 'redraw' to draw"):
        splits.split_real_items(fresh_db, project.id, test=0.5)
    assert items_db.count_items(fresh_db, project.id) == {("real", "train"): 9, ("real", "test"): 3}
    redrawn = splits.split_real_items(fresh_db, project.id, test=0.5, seed=0, redraw=True)
    assert redrawn.counts == {"train": 6, "dev": 0, "test": 6}


@pytest.mark.parametrize(("test", "dev"), [(1.0, 0.0), (0.6, 0.5), (-0.1, 0.0)])
def test_bad_fractions_are_refused(test: float, dev: float) -> None:
    with pytest.raises(SynthloopError, match="must be fractions in \\[0, 1\\) that sum to less than 1"):
        splits.stratified_split(pd.Series(["a", "b"]), test=test, dev=dev, seed=0)
