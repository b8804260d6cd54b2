"""Export: the aggregated and raw views, the three formats, CSV formula neutralisation, the round trip raw export →
import, and that no secret leaves the database."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest

from core import projects, users, vocab
from core.data import export as exporter
from core.data.importer import ImportSpec, import_file
from core.data.items import item_table
from core.data.text import text_hash
from core.errors import SynthloopError
from db import items as items_db


@pytest.fixture
def labelled(fresh_db, project):
    """Items: a (ext id 'a', 3 labels: pos pos neg), b (ext id 'b', tie), a synthetic item without external id."""
    import_file(fresh_db, project.id, b"id,text,annotator,label\na,Alpha,x,pos\na,Alpha,y,pos\na,Alpha,z,neg\n"
                b"b,=SUM(A1),x,neu\nb,=SUM(A1),y,pos\n", ImportSpec(id_col="id", annotator_col="annotator",
                                                               annotation_col="label"), filename="l.csv")
    [synthetic_id] = items_db.insert_items(fresh_db, project.id, [{
        "text": "-generated text", "text_hash": text_hash("-generated text"), "source": "synthetic",
        "split": "train", "reference_label": "neg", "generation_call_id": 42,
        "generation_job_id": 7, "generation_mode": "few-shot", "meta": json.dumps({"model": "SmolLM2"}),
    }])
    items_db.insert_annotations(fresh_db, [{"item_id": synthetic_id, "annotator": "alice", "label": "neg",
                                            "seconds": 2.5, "unsure": True, "comment": "@check"}])
    return project, synthetic_id


def test_aggregated_view_has_a_row_per_item_with_agreement_and_provenance(fresh_db, labelled):
    project, synthetic_id = labelled
    view = exporter.item_view(fresh_db, project.id)
    assert list(view.columns) == list(exporter.AGGREGATED_COLUMNS)
    assert view["item_id"].tolist() == ["a", "b", str(synthetic_id)]
    assert view["n_labels"].tolist() == [3, 2, 1]
    assert view["instance_agreement"].tolist()[:2] == [pytest.approx(2 / 3), 0.5]
    assert pd.isna(view["instance_agreement"].tolist()[2])
    assert view["tie"].tolist() == [False, True, False]
    assert view["majority_label"].tolist() == ["pos", None, "neg"]
    assert json.loads(view.loc[0, "votes"]) == {"pos": 2, "neg": 1}
    synthetic = view.iloc[2]
    assert (synthetic["source"], synthetic["reference_label"]) == ("synthetic", "neg")
    assert (synthetic["generation_job_id"], synthetic["generation_mode"], synthetic["generation_model"]) == (
        7, "few-shot", "SmolLM2")
    assert synthetic["generation_call_id"] == 42
    assert pd.isna(view.loc[0, "generation_call_id"]) and view.loc[0, "generation_mode"] is None


def test_browse_filters_and_counts(fresh_db, labelled):
    project, _ = labelled
    assert exporter.browse_items(fresh_db, project.id, source="synthetic").frame["text"].tolist() == [
        "-generated text"]
    # b is a tie (no majority) without a reference label: it has no label to filter on.
    assert exporter.browse_items(fresh_db, project.id, label="pos").frame["item_id"].tolist() == ["a"]
    assert exporter.browse_items(fresh_db, project.id, label="neg").frame["source"].tolist() == ["synthetic"]
    assert exporter.browse_items(fresh_db, project.id, search="alp").frame["item_id"].tolist() == ["a"]
    assert exporter.browse_items(fresh_db, project.id, search="(a1").frame["item_id"].tolist() == ["b"]
    browse = exporter.browse_items(fresh_db, project.id, split="test")
    assert (browse.shown, browse.total, browse.by_source_split) == (0, 3, {"real/train": 2, "synthetic/train": 1})


def test_raw_view_has_a_row_per_annotation(fresh_db, labelled):
    project, synthetic_id = labelled
    raw = exporter.raw_view(fresh_db, project.id)
    assert list(raw.columns) == list(exporter.RAW_COLUMNS)
    assert raw["item_id"].tolist() == ["a", "a", "a", "b", "b", str(synthetic_id)]
    assert raw["annotator"].tolist() == ["import:x", "import:y", "import:z", "import:x", "import:y", "alice"]
    last = raw.iloc[-1]
    assert (last["label"], last["seconds"], bool(last["unsure"]), last["comment"]) == ("neg", 2.5, True, "@check")
    assert raw["created_at"].notna().all() and raw["updated_at"].notna().all()


def test_csv_neutralises_formula_cells_and_keeps_plain_numbers(fresh_db):
    frame = pd.DataFrame({"text": ["=SUM(A1)", "+cmd", "-x", "@x", "\tx", "\rx", "-1", "+2.5", "ok", None],
                          "n": [-1, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
    text = exporter.to_bytes(frame, "csv").decode("utf-8")
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back["text"].tolist() == ["'=SUM(A1)", "'+cmd", "'-x", "'@x", "'\tx", "'\rx", "-1", "+2.5", "ok", ""]
    assert back["n"].tolist()[0] == "-1"


def test_csv_export_of_the_project_is_neutralised_but_jsonl_and_parquet_are_exact(fresh_db, labelled):
    project, _ = labelled
    csv_export = exporter.export_data(fresh_db, project.id, view="raw", fmt="csv")
    back = pd.read_csv(io.BytesIO(csv_export.data), dtype=str, keep_default_na=False)
    assert "'=SUM(A1)" in back["text"].tolist() and "'@check" in back["comment"].tolist()
    assert (csv_export.filename, csv_export.mime) == ("demo-raw.csv", "text/csv")

    jsonl = exporter.export_data(fresh_db, project.id, view="raw", fmt="jsonl")
    records = [json.loads(line) for line in jsonl.data.decode("utf-8").splitlines()]
    assert len(records) == 6 and records[3]["text"] == "=SUM(A1)" and records[5]["unsure"] is True

    parquet = exporter.export_data(fresh_db, project.id, view="aggregated", fmt="parquet")
    frame = pd.read_parquet(io.BytesIO(parquet.data))
    assert frame["text"].tolist() == ["Alpha", "=SUM(A1)", "-generated text"]
    assert frame["item_id"].tolist()[:2] == ["a", "b"]


def test_export_file_writes_the_format_of_the_extension(fresh_db, labelled, tmp_path):
    project, _ = labelled
    summary = exporter.export_file(fresh_db, project.id, tmp_path / "out" / "items.jsonl")
    assert (summary["rows"], summary["format"], summary["view"]) == (3, "jsonl", "aggregated")
    assert len((tmp_path / "out" / "items.jsonl").read_text().splitlines()) == 3
    assert exporter.format_for_path("x.parquet") == "parquet" and exporter.format_for_path("x.txt") == "csv"
    with pytest.raises(SynthloopError, match=re.escape("export format 'xlsx' is not one of csv, jsonl, parquet")):
        exporter.format_for_path("x.csv", "xlsx")
    with pytest.raises(SynthloopError, match="is a folder: give a file name"):
        exporter.export_file(fresh_db, project.id, tmp_path)


def test_round_trip_raw_csv_export_to_a_new_project_keeps_agreement(fresh_db, labelled, tmp_path):
    project, _ = labelled
    path = tmp_path / "raw.csv"
    exporter.export_file(fresh_db, project.id, path, view="raw")
    copy = projects.create_project(fresh_db, "copy", projects.parse_labels("pos,neg,neu"))
    report = import_file(fresh_db, copy.id, path, ImportSpec(id_col="item_id", text_col="text",
                                                             annotator_col="annotator", annotation_col="label"))
    assert (report.items_added, report.annotations_added) == (3, 6)
    # Imported annotators keep their ids (no import:import:x); app users become import:<name>.
    assert report.annotators == ("import:alice", "import:x", "import:y", "import:z")
    columns = ["n_labels", "majority_label", "instance_agreement", "tie", "votes"]
    original = exporter.item_view(fresh_db, project.id).set_index("item_id")[columns]
    copied = exporter.item_view(fresh_db, copy.id).set_index("item_id")[columns]
    pd.testing.assert_frame_equal(original, copied)


def test_round_trip_through_jsonl_keeps_texts_exactly(fresh_db, labelled, tmp_path):
    project, _ = labelled
    path = tmp_path / "raw.jsonl"
    exporter.export_file(fresh_db, project.id, path, view="raw")
    copy = projects.create_project(fresh_db, "copy", projects.parse_labels("pos,neg,neu"))
    import_file(fresh_db, copy.id, path, ImportSpec(id_col="item_id", annotator_col="annotator",
                                                    annotation_col="label"))
    assert sorted(item_table(fresh_db, copy.id)["text"]) == sorted(item_table(fresh_db, project.id)["text"])


def test_no_secret_is_exported(fresh_db, labelled):
    project, _ = labelled
    users.add_user(fresh_db, "alice", role="annotator", password="correct horse battery")
    token = users.create_invite(fresh_db, "alice")
    for view in vocab.EXPORT_VIEWS:
        for fmt in ("csv", "jsonl"):
            data = exporter.export_data(fresh_db, project.id, view=view, fmt=fmt).data.decode("utf-8")
            assert "$2b$" not in data and token not in data and "correct horse" not in data


def test_empty_project_exports_headers_only(fresh_db, project):
    export = exporter.export_data(fresh_db, project.id, view="aggregated", fmt="csv")
    assert export.data.decode("utf-8").strip() == ",".join(exporter.AGGREGATED_COLUMNS)
    assert exporter.export_data(fresh_db, project.id, view="raw", fmt="jsonl").data == b""
    with pytest.raises(SynthloopError, match="export view 'flat' is not one of aggregated, raw"):
        exporter.export_data(fresh_db, project.id, view="flat")


def test_rejected_synthetic_items_are_left_out_of_both_views(fresh_db, labelled):
    project, _ = labelled
    [rejected] = items_db.insert_items(fresh_db, project.id, [{
        "text": "bad output", "text_hash": text_hash("bad output"), "source": "synthetic", "split": "train",
        "review_status": "rejected"}])
    items_db.insert_annotations(fresh_db, [{"item_id": rejected, "annotator": "alice", "label": "pos"}])
    assert str(rejected) not in exporter.item_view(fresh_db, project.id)["item_id"].tolist()
    raw = exporter.raw_view(fresh_db, project.id)
    assert len(raw) == 6 and str(rejected) not in raw["item_id"].tolist()
