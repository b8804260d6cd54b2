"""Checks on the real public datasets in ../shared/data (skipped with a reason when that folder is absent):
files as they are published, with their quirks, must import."""

from __future__ import annotations

from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest

from core import projects
from core.agreement.project import project_agreement
from core.data.importer import ImportSpec, import_file
from db import items as items_db

SEVERITIES = ["1", "0", "-1", "-2", "-3"]
CONTEXT = ["conv_id", "prev_agent", "prev_user", "agent", "user", "bot"]


def _convabuse_full_long(folder: Path) -> pd.DataFrame:
    """ConvAbuse's full release in long form with one label column, repeats left in. Its ``example_no`` numbers
    rows, not items, so an item is a distinct conversational context (as in test_import.py)."""
    full = pd.read_csv(folder / "1_full" / "ConvAbuseEMNLPfull.csv", dtype=str, keep_default_na=False)
    one_hot = full[[f"is_abuse.{s}" for s in SEVERITIES]].astype(int).to_numpy()
    full["label"] = np.array(SEVERITIES)[one_hot.argmax(axis=1)]
    full["item"] = "c" + full.groupby(CONTEXT, sort=False).ngroup().astype(str)
    return full[["item", "annotator_id", "label", *CONTEXT]]


def test_convabuse_full_release_imports_with_its_repeated_ratings(fresh_db, shared_data, tmp_path):
    long = _convabuse_full_long(shared_data / "convabuse")
    path = tmp_path / "convabuse_full.csv"
    long.to_csv(path, index=False)
    project = projects.create_project(fresh_db, "convabuse", projects.parse_labels(SEVERITIES))
    report = import_file(fresh_db, project.id, path, ImportSpec(
        text_col="user", id_col="item", annotator_col="annotator_id", annotation_col="label"))

    # Independent count: rows beyond the first of each (item, annotator).
    repeats = long.duplicated(["item", "annotator_id"])
    assert int(repeats.sum()) == 357
    assert (report.rows_read, report.items_added, report.annotations_added) == (12768, 4185, 12768 - 357)
    assert report.repeated_ratings == 357
    assert "357 repeated ratings" in report.message

    # The default policy keeps the last rating of each (item, annotator); every repeat is kept as a pair.
    last = long.drop_duplicates(["item", "annotator_id"], keep="last")
    stored = items_db.annotations_frame(fresh_db, project.id).merge(
        items_db.items_frame(fresh_db, project.id)[["id", "external_id"]], left_on="item_id", right_on="id")
    stored_labels = stored.assign(annotator=stored["annotator"].str.removeprefix("import:")).set_index(
        ["external_id", "annotator"])["label"].to_dict()
    assert stored_labels == last.set_index(["item", "annotator_id"])["label"].to_dict()

    # Intra-annotator consistency: consecutive ratings of the same item by the same annotator, in file order.
    previous = long.groupby(["item", "annotator_id"])["label"].shift()
    pairs = pd.DataFrame({"first": previous[previous.notna()], "second": long.loc[previous.notna(), "label"]})
    intra = project_agreement(fresh_db, project).to_dict()["intra_annotator"]
    assert intra["n_pairs"] == len(pairs) == 357
    assert intra["n_annotators"] == long.loc[repeats, "annotator_id"].nunique()
    assert intra["same_label_share"] == pytest.approx(float((pairs["first"] == pairs["second"]).mean()))
    # Alpha straight from the krippendorff package, the two ratings of a pair as two "coders" of one unit.
    codes = {label: float(code) for code, label in enumerate(SEVERITIES)}
    reliability = np.array([pairs["first"].map(codes).to_numpy(), pairs["second"].map(codes).to_numpy()])
    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    assert intra["alpha"] == pytest.approx(expected)
