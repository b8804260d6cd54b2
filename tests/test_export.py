"""Export: the aggregated and raw views, the three formats, CSV formula neutralisation, the round trip raw export →
import, and that no secret leaves the database."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import projects, users, vocab
from core.data import export as exporter
from core.data.importer import ImportSpec, import_file
from core.data.items import item_table
from core.data.text import text_hash
from core.errors import SynthloopError
from db import connection
from db import items as items_db
from db import seeds as seeds_db


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


# ------------------------------------------------------------------------------- one CSV writer for all CSVs


def test_the_csv_writer_neutralises_formulas_and_never_alters_plain_numbers(tmp_path):
    from core.data import tables

    cells = ["-7", "-1.5", "+3", "1e-5", "-2E+3", ".5", "-.5", "=x", "+x", "-x", "@x", "\tx", "\rx", "-7 ", "--7",
             "-", "+", "'=x", "plain", "", None]
    frame = pd.DataFrame({"cell": cells, "number": range(-10, len(cells) - 10)})
    text = tables.csv_bytes(frame).decode("utf-8")
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back["cell"].tolist() == ["-7", "-1.5", "+3", "1e-5", "-2E+3", ".5", "-.5", "'=x", "'+x", "'-x", "'@x",
                                     "'\tx", "'\rx", "'-7 ", "'--7", "'-", "'+", "'=x", "plain", "", ""]
    assert back["number"].tolist()[:2] == ["-10", "-9"]
    assert text.endswith("\r\n")  # CRLF rows: a cell holding a bare CR is quoted, never split
    path = tables.write_csv(frame, tmp_path / "t.csv")
    assert path.read_bytes() == text.encode("utf-8")
    # What a neutralised cell stood for is read back (ids given to commands, labels in an import).
    assert [tables.restore_cell(c) for c in ["'=x", "'-7", "'-x", "'plain", "-7", "=x"]] == [
        "=x", "-7", "-x", "'plain", "-7", "=x"]


def test_study_csv_tables_use_the_same_writer(tmp_path):
    from core.analysis.report import write_report

    scores = {"precision": 0.5, "recall": 1.0, "f1": 0.6, "support": 3}
    write_report(tmp_path, {"runs": {"real": {"per_class": {"-1": scores, "=HYPERLINK(1)": scores}}}})
    with (tmp_path / "per_class.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [row[1] for row in rows] == ["label", "-1", "'=HYPERLINK(1)"]


def test_no_module_writes_csv_or_neutralises_cells_outside_the_one_writer():
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in [*(root / "core").rglob("*.py"), *(root / "pages").rglob("*.py"), root / "streamlit_app.py"]:
        if path == root / "core" / "data" / "tables.py":
            continue
        source = path.read_text(encoding="utf-8")
        for needle in (".to_csv(", "csv.writer(", "csv.DictWriter(", "def neutralise", "FORMULA_PREFIXES"):
            if needle in source:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []


ODD_IDS = ["-7", "=x", "+3", "-x", "@home", "-1.5"]


def test_every_id_a_csv_prints_is_accepted_back_by_the_commands_that_take_ids(tmp_path, capsys):
    from core.cli import main

    root = Path(__file__).resolve().parent.parent
    db = tmp_path / "ids.db"
    data = tmp_path / "ids.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerows([(item_id, f"text number {n}", "pos") for n, item_id in enumerate(ODD_IDS)])

    def run(*args: str) -> None:
        code = main([*args, "--db", str(db)])
        assert code == 0, capsys.readouterr().err

    run("project", "create", "demo", "--labels", "pos,neg")
    run("import", "demo", str(data), "--id-col", "id", "--label-col", "label")
    items_out, export_out = tmp_path / "items.csv", tmp_path / "export.csv"
    result = subprocess.run([sys.executable, "-m", "core", "agreement", "demo", "--no-model", "--items-out",
                             str(items_out), "--db", str(db)], cwd=root, text=True, capture_output=True,
                            env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert result.returncode == 0, result.stderr
    run("export", "demo", "--out", str(export_out))
    printed = []
    for path in (items_out, export_out):
        with path.open(newline="", encoding="utf-8") as handle:
            printed.append([row[0] for row in list(csv.reader(handle))[1:]])
    # Plain numbers stay as they are; the other risky ids carry the apostrophe.
    assert printed[0] == printed[1] == ["-7", "'=x", "+3", "'-x", "'@home", "-1.5"]
    for item_id in [*printed[0], "'-7"]:  # "'-7": what earlier versions printed for -7
        run("adjudicate", "demo", item_id, "neg")
    run("seeds", "add", "demo", *printed[0])
    with connection.open_db(db) as handle:
        project = projects.get_project(handle, "demo")
        items = items_db.items_frame(handle, project.id)
        seeded = {row["external_id"] for row in seeds_db.list_seeds(handle, project.id)}
    assert items["adjudicated_label"].tolist() == ["neg"] * len(ODD_IDS)
    assert seeded == set(ODD_IDS)
