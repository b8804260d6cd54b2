"""Import: formats, column roles, raw labels in long and wide form, identity rules, bad input (exact message and
nothing written) and the three shared datasets with counts checked by an independent pandas computation."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import projects
from core.data import importer
from core.data.importer import ImportSpec, import_file
from core.data.items import item_table
from core.errors import ImportDataError, SynthloopError
from db import items as items_db

LONG = {"id_col": "id", "annotator_col": "annotator", "annotation_col": "label"}


def table_counts(db) -> dict[str, int]:
    return {name: db[name].count for name in db.table_names()}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def items_of(db, project_id: int) -> pd.DataFrame:
    return items_db.items_frame(db, project_id, include_rejected=True)


def values(series: pd.Series) -> list:
    """A column as a list with None for SQL NULL (read_sql gives NaN)."""
    return [None if pd.isna(v) else v for v in series]


# --------------------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "xlsx"}, "format 'xlsx' is not one of auto, csv, tsv, jsonl, parquet"),
        ({"split": "train", "split_col": "s"},
         "give either a fixed split ('split') or a split column ('split_col'), not both"),
        ({"split": "holdout"}, "split 'holdout' is not one of train, dev, test, pool"),
        ({"source": "fake"}, "source 'fake' is not one of real, synthetic"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon': set 'encoding' to e.g. utf-8, latin-1 or cp1252"),
        # Known to Python but not a text encoding: refused here, never a LookupError traceback while reading.
        ({"encoding": "rot13"}, "unknown encoding 'rot13': set 'encoding' to e.g. utf-8, latin-1 or cp1252"),
        ({"encoding": ""}, "unknown encoding '': set 'encoding' to e.g. utf-8, latin-1 or cp1252"),
        ({"repeated_ratings": "latest"},
         "repeated ratings policy 'latest' is not one of last, first, error: set 'repeated_ratings' to one of them"),
        ({"label_map": "0=neg,1"},
         "label map entry '1' has no '=': write 'label_map' as VALUE=LABEL,VALUE=LABEL (e.g. 0=neg,1=pos)"),
        ({"label_map": "=neg"},
         "label map entry '=neg' has an empty value or label: write 'label_map' as VALUE=LABEL,VALUE=LABEL"
         " (e.g. 0=neg,1=pos)"),
        ({"label_map": "0=neg,0=pos"}, "file value '0' is mapped twice in 'label_map': map each value once"),
        ({"sep": ";;"}, "separator ';;' is not usable: give one character, e.g. ',' ';' or '\\t'"),
        ({"no_header": True}, "a file without a header row needs its column names: set 'columns' to NAME,NAME,..."),
        ({"columns": ("a", "b")}, "'columns' names the columns of a headerless file: set 'no_header' too"),
        ({"no_header": True, "columns": ("a", "a")},
         "column name 'a' is given twice in 'columns': make the names unique"),
        ({"format": "jsonl", "no_header": True, "columns": ("a",)},
         "jsonl files name their columns themselves: leave out 'no_header' and 'columns'"),
        ({"annotator_col": "who", "id_col": "id"},
         "long-form raw labels need both 'annotator_col' (who) and 'annotation_col' (their label)"),
        ({"annotator_col": "who", "annotation_col": "lab"},
         "long-form raw labels repeat each item on several rows: set 'id_col' to say which rows are one item"),
        ({"id_col": "id", "annotator_col": "who", "annotation_col": "lab", "annotator_cols": ("a",)},
         "use either long form ('annotator_col' and 'annotation_col') or wide form ('annotator_cols'), not both"),
    ],
)
def test_spec_is_validated_at_construction(kwargs, message):
    with pytest.raises(SynthloopError, match=re.escape(message)):
        ImportSpec(**kwargs)


def test_spec_normalises_and_round_trips_through_dict():
    spec = ImportSpec(sep="\\t", columns="label,text", no_header=True, id_col="", annotator_cols="a1, a2,")
    assert spec.sep == "\t" and spec.id_col is None
    assert spec.columns == ("label", "text") and spec.annotator_cols == ("a1", "a2")
    assert ImportSpec.from_dict(spec.to_dict()) == spec
    assert spec.effective_split == "train"
    with pytest.raises(SynthloopError, match="unknown import option 'colour'"):
        ImportSpec.from_dict({"colour": "red"})


def test_imported_annotator_prefix_is_added_once():
    assert importer.imported_annotator("ann1") == "import:ann1"
    assert importer.imported_annotator("import:ann1") == "import:ann1"


# --------------------------------------------------------------------------------------------- good input


def test_csv_with_label_split_and_agreement_columns(fresh_db, project, tmp_path):
    path = write(
        tmp_path, "d.csv",
        "id,text,label,split,agreement\n007,Good film,pos,train,0.8\n8,Bad film,neg,validation,\n9,  Meh  ,,test,1\n",
    )
    report = import_file(fresh_db, project.id, path, ImportSpec(id_col="id", label_col="label", split_col="split",
                                                                agreement_col="agreement"))
    assert (report.rows_read, report.items_added, report.annotations_added) == (3, 3, 0)
    rows = items_of(fresh_db, project.id)
    assert rows["external_id"].tolist() == ["007", "8", "9"]
    assert rows["text"].tolist() == ["Good film", "Bad film", "Meh"]
    assert values(rows["reference_label"]) == ["pos", "neg", None]
    assert rows["split"].tolist() == ["train", "dev", "test"]
    assert rows["imported_agreement"].tolist()[0] == 0.8
    assert np.isnan(rows["imported_agreement"].tolist()[1])
    assert rows["imported_agreement"].tolist()[2] == 1.0
    assert rows["source"].tolist() == ["real"] * 3


def test_agreement_given_as_percentages_is_read_as_fractions(fresh_db, project, tmp_path):
    path = write(tmp_path, "p.csv", "text,agree\nq1,66\nq2,100\nq3,50%\nq4,0.5\n")
    import_file(fresh_db, project.id, path, ImportSpec(agreement_col="agree"))
    assert items_of(fresh_db, project.id)["imported_agreement"].tolist() == [0.66, 1.0, 0.5, 0.005]
    table = item_table(fresh_db, project.id)
    assert table["instance_agreement"].tolist() == [0.66, 1.0, 0.5, 0.005]
    assert table["agreement_source"].tolist() == ["imported"] * 4


def test_fixed_split_and_synthetic_source(fresh_db, project, tmp_path):
    path = write(tmp_path, "s.csv", "text\nsynthetic one\nsynthetic two\n")
    import_file(fresh_db, project.id, path, ImportSpec(split="pool", source="synthetic"))
    rows = items_of(fresh_db, project.id)
    assert rows["split"].tolist() == ["pool", "pool"] and rows["source"].tolist() == ["synthetic", "synthetic"]


def test_headerless_tsv_keeps_quotes_in_texts(fresh_db, project, tmp_path):
    path = write(tmp_path, "sms", 'pos\t"Quoted" start\nneg\tsemi;colon, comma\n')
    spec = ImportSpec(format="tsv", no_header=True, columns=("label", "text"), label_col="label")
    report = import_file(fresh_db, project.id, path, spec)
    assert report.items_added == 2
    assert items_of(fresh_db, project.id)["text"].tolist() == ['"Quoted" start', "semi;colon, comma"]


def test_custom_separator_and_latin1_encoding(fresh_db, project, tmp_path):
    path = write(tmp_path, "l.csv", "text;label\ncafé crème;pos\n".encode("latin-1"))
    import_file(fresh_db, project.id, path, ImportSpec(sep=";", encoding="latin-1", label_col="label"))
    assert items_of(fresh_db, project.id)["text"].tolist() == ["café crème"]


def test_jsonl_with_numeric_ids_and_a_json_array(fresh_db, project, tmp_path):
    lines = '{"id": 7, "text": "seven", "label": "pos"}\n\n{"id": 8.0, "text": "eight", "label": "neg"}\n'
    report = import_file(fresh_db, project.id, write(tmp_path, "a.jsonl", lines),
                         ImportSpec(id_col="id", label_col="label"))
    assert report.items_added == 2
    array = json.dumps([{"id": "9", "text": "nine"}])
    import_file(fresh_db, project.id, write(tmp_path, "b.json", array), ImportSpec(id_col="id"))
    assert items_of(fresh_db, project.id)["external_id"].tolist() == ["7", "8", "9"]


def test_parquet(fresh_db, project, tmp_path):
    frame = pd.DataFrame({"text": ["alpha", "beta"], "label": ["pos", "neu"], "id": [1, 2]})
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    report = import_file(fresh_db, project.id, path, ImportSpec(id_col="id", label_col="label"))
    assert report.items_added == 2
    rows = items_of(fresh_db, project.id)
    assert rows["external_id"].tolist() == ["1", "2"] and rows["reference_label"].tolist() == ["pos", "neu"]


def test_bytes_with_a_file_name_like_an_upload(fresh_db, project):
    report = import_file(fresh_db, project.id, b"text\nfrom bytes\n", ImportSpec(), filename="up.csv")
    assert report.file == "up.csv" and report.items_added == 1


def test_long_form_raw_labels_make_one_item_per_id(fresh_db, project, tmp_path):
    path = write(
        tmp_path, "long.csv",
        "id,text,annotator,label\n"
        "a,Text A,ann1,pos\na,Text A,ann2,pos\na,Text A,ann3,neg\n"
        "b,Text B,ann1,neu\nb,Text B,ann2,pos\n"
        "c,Text C,ann1,\n",  # an empty label: the item is imported without that annotation
    )
    report = import_file(fresh_db, project.id, path, ImportSpec(**LONG))
    assert (report.rows_read, report.items_added, report.annotations_added) == (6, 3, 5)
    assert report.annotators == ("import:ann1", "import:ann2", "import:ann3")
    table = item_table(fresh_db, project.id).set_index("external_id")
    assert table.loc["a", "instance_agreement"] == pytest.approx(2 / 3)
    assert table.loc["a", "majority_label"] == "pos"
    assert bool(table.loc["b", "tie"]) and table.loc["b", "majority_label"] is None
    assert table.loc["c", "n_labels"] == 0


def test_wide_form_gives_the_same_agreement_as_long_form(fresh_db, tmp_path):
    long_project = projects.create_project(fresh_db, "long", projects.parse_labels("pos,neg,neu"))
    wide_project = projects.create_project(fresh_db, "wide", projects.parse_labels("pos,neg,neu"))
    import_file(fresh_db, long_project.id, write(
        tmp_path, "long.csv",
        "id,text,annotator,label\na,Text A,ann1,pos\na,Text A,ann2,pos\na,Text A,ann3,neg\nb,Text B,ann1,neu\n"
        "b,Text B,ann3,pos\n",
    ), ImportSpec(**LONG))
    report = import_file(fresh_db, wide_project.id, write(
        tmp_path, "wide.csv", "id,text,ann1,ann2,ann3\na,Text A,pos,pos,neg\nb,Text B,neu,,pos\n",
    ), ImportSpec(id_col="id", annotator_cols=("ann1", "ann2", "ann3")))
    assert (report.items_added, report.annotations_added) == (2, 5)
    columns = ["external_id", "n_labels", "majority_label", "instance_agreement", "tie", "votes"]
    long_table = item_table(fresh_db, long_project.id)[columns]
    wide_table = item_table(fresh_db, wide_project.id)[columns]
    pd.testing.assert_frame_equal(long_table, wide_table)
    annotators = items_db.annotations_frame(fresh_db, wide_project.id)["annotator"]
    assert sorted(set(annotators)) == ["import:ann1", "import:ann2", "import:ann3"]


def test_without_id_duplicate_texts_are_skipped_and_reported(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "first.csv", "text\nHello there\n"), ImportSpec())
    path = write(tmp_path, "second.csv", "text,a1\nhello   THERE!,pos\nNew one,neg\nnew one,pos\nOther,neu\n")
    report = import_file(fresh_db, project.id, path, ImportSpec(annotator_cols=("a1",)))
    # Row 1 repeats an item of the project, row 3 repeats row 2 (normalised): both are skipped with their labels.
    assert (report.items_added, report.duplicate_texts_skipped, report.duplicate_rows) == (2, 2, (1, 3))
    assert report.annotations_added == 2
    assert items_of(fresh_db, project.id)["text"].tolist() == ["Hello there", "New one", "Other"]
    assert "2 rows skipped as duplicate texts (rows 1, 3, ...)" in report.message


def test_with_ids_duplicate_texts_are_kept_and_reported(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "a.csv", "id,text\n1,Same text\n"), ImportSpec(id_col="id"))
    path = write(tmp_path, "b.csv", "id,text\n2,same text\n3,Same text.\n4,Different\n")
    report = import_file(fresh_db, project.id, path, ImportSpec(id_col="id"))
    assert (report.items_added, report.duplicate_texts_skipped) == (3, 0)
    assert (report.duplicate_text_ids, report.duplicate_text_id_examples) == (2, ("2", "3"))
    assert len(items_of(fresh_db, project.id)) == 4


def test_rows_whose_id_is_in_the_project_add_labels_to_that_item(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "a.csv", "id,text,annotator,label\n1,One,x,pos\n"),
                ImportSpec(**LONG))
    report = import_file(fresh_db, project.id, write(tmp_path, "b.csv", "id,text,annotator,label\n1,One,y,pos\n"),
                         ImportSpec(**LONG))
    assert (report.items_added, report.items_matched, report.annotations_added) == (0, 1, 1)
    assert item_table(fresh_db, project.id)["n_labels"].tolist() == [2]


def test_an_id_already_in_the_project_with_another_text_is_refused(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "a.csv", "id,text\n1,One\n"), ImportSpec(id_col="id"))
    before = table_counts(fresh_db)
    with pytest.raises(ImportDataError, match=re.escape(
            "row 2: id '1' is already in project 'demo' with a different text: use a new id, or fix the text")):
        import_file(fresh_db, project.id, write(tmp_path, "b.csv", "id,text\n2,Two\n1,Uno\n"), ImportSpec(id_col="id"))
    assert table_counts(fresh_db) == before


def test_add_missing_labels_appends_them(fresh_db, project, tmp_path):
    path = write(tmp_path, "l.csv", "text,label,a1\none,pos,sarcastic\ntwo,mixed,\n")
    report = import_file(fresh_db, project.id, path, ImportSpec(label_col="label", annotator_cols=("a1",)),
                         add_missing_labels=True)
    assert report.labels_added == ("mixed", "sarcastic")
    assert projects.get_project(fresh_db, project.id).label_names == ["pos", "neg", "neu", "mixed", "sarcastic"]


def test_labels_neutralised_by_a_csv_export_are_recognised(fresh_db):
    project = projects.create_project(fresh_db, "signs", projects.parse_labels("+ve,-ve"))
    report = import_file(fresh_db, project.id, b"text,label\nup,'+ve\ndown,-ve\n", ImportSpec(label_col="label"),
                         filename="x.csv")
    assert report.items_added == 2
    assert items_of(fresh_db, project.id)["reference_label"].tolist() == ["+ve", "-ve"]


# --------------------------------------------------------------------------------------------- bad input


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


BAD_INPUT = [
    ("missing column", "txt,label\nhello,pos\n", "d.csv", {},
     "column 'text' ('text_col') not in the file; its columns are: 'txt', 'label'"),
    ("missing columns", "text,label\nhello,pos\n", "d.csv", {"label_col": "gold", "id_col": "key"},
     "columns 'key' ('id_col'), 'gold' ('label_col') not in the file; its columns are: 'text', 'label'"),
    ("wrong separator", "text;label\nhello;pos\n", "d.csv", {},
     "column 'text' ('text_col') not in the file; its columns are: 'text;label'; only one column was found:"
     " check the separator ('sep') or 'format'"),
    ("empty text", "text,label\nhello,pos\n  ,neg\n,neu\n", "d.csv", {"label_col": "label"},
     "row 2: the text in column 'text' is empty (2 rows in all): fill it in or remove those rows"),
    ("label not in project", "text,label\nhello,pos\nbye,spam\n", "d.csv", {"label_col": "label"},
     "row 2: label 'spam' in column 'label' is not a label of project 'demo' (pos, neg, neu): add it to the"
     " project, or import with 'add_labels'"),
    ("raw label not in project", "id,text,annotator,label\n1,a,x,pos\n1,a,y,meh\n", "d.csv", LONG,
     "row 2: label 'meh' in column 'label' is not a label of project 'demo' (pos, neg, neu): add it to the"
     " project, or import with 'add_labels'"),
    ("wide label not in project", "text,a1,a2\nx,pos,\ny,neg,meh\n", "d.csv", {"annotator_cols": ("a1", "a2")},
     "row 2: label 'meh' in column 'a2' is not a label of project 'demo' (pos, neg, neu): add it to the project,"
     " or import with 'add_labels'"),
    ("duplicate id, different text", "id,text\n1,first\n2,second\n1,third\n", "d.csv", {"id_col": "id"},
     "row 3: id '1' already appeared on row 1 with a different text; rows sharing an id are one item: give each"
     " distinct text its own id"),
    ("duplicate id, different label", "id,text,label\n1,a,pos\n1,a,neg\n", "d.csv",
     {"id_col": "id", "label_col": "label"},
     "row 2: id '1' has 'neg' in column 'label' but 'pos' on row 1; rows sharing an id are one item: make the"
     " values equal"),
    ("empty id", "id,text\n1,a\n,b\n", "d.csv", {"id_col": "id"},
     "row 2: the id in column 'id' is empty: give every row an id, or leave out 'id_col'"),
    ("same annotator twice, policy error", "id,text,annotator,label\n1,a,x,pos\n1,a,y,pos\n1,a,x,neg\n", "d.csv",
     {**LONG, "repeated_ratings": "error"},
     "row 3: annotator 'import:x' rates item '1' a second time (first on row 1): set 'repeated_ratings' to last or"
     " first to keep one rating and count the repeats, or keep one row per annotator and item"),
    ("short row", "text,label\nhello,pos\nbye\n", "d.csv", {"label_col": "label"},
     "'d.csv' line 3 (row 2): expected 2 fields, found 1; a short row would lose its last cells: add the missing"
     " fields (an empty cell still needs its ','), or check the separator ('sep' ',')"),
    ("short row in tsv", "text\tlabel\tgold\nhello\tpos\tpos\n\nbye\tneg\n", "d.tsv", {"label_col": "label"},
     "'d.tsv' line 4 (row 2): expected 3 fields, found 2; a short row would lose its last cells: add the missing"
     " fields (an empty cell still needs its '\\t'), or check the separator ('sep' '\\t')"),
    ("bare CR in an unquoted field", "id,text,label\n1,first half\rsecond half,pos\n2,b,neg\n", "d.csv",
     {"id_col": "id", "label_col": "label"},
     "'d.csv' line 2: a carriage return (CR) inside an unquoted field would split its row in two: quote that field,"
     " or remove the CR (CRLF line endings are fine)"),
    ("bare CR in tsv", "text\tlabel\r\nfine\tpos\r\nab\rc\tneg\r\n", "d.tsv", {"label_col": "label"},
     "'d.tsv' line 3: a carriage return (CR) inside an unquoted field would split its row in two: remove the CR"
     " (CRLF line endings are fine)"),
    ("duplicate header", "text,label,text\na,pos,b\n", "d.csv", {},
     "'d.csv' has two columns named 'text' (columns 1 and 3): rename one of them in the header"),
    ("duplicate parquet columns", _parquet(pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])],
                                                                names=["text", "text"])), "d.parquet", {},
     "'d.parquet' has two columns named 'text' (columns 1 and 2): rename one of them"),
    ("bytes column in parquet", _parquet(pa.table({"text": [b"hello"], "label": ["pos"]})), "d.parquet",
     {"label_col": "label"},
     "column 'text' ('text_col') holds bytes (binary data), not text: convert it to text (e.g. decode it as"
     " UTF-8) and save the file again"),
    ("undecodable by the chosen codec", b"text\nhello\n", "d.csv", {"encoding": "punycode"},
     "'d.csv' cannot be decoded as punycode ("),
    ("annotator missing", "id,text,annotator,label\n1,a,,pos\n", "d.csv", LONG,
     "row 1: label 'pos' has no annotator in column 'annotator': fill in who gave it, or remove the row"),
    ("undecodable bytes", "text\nfine\ncafé\n".encode("latin-1"), "d.csv", {},
     "'d.csv' is not valid utf-8: byte 0xe9 on line 3 cannot be decoded; set 'encoding' to latin-1 (or the"
     " file's real encoding, e.g. cp1252)"),
    ("binary as csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "d.csv", {},
     "'d.csv' is not a CSV text file: it holds binary data (a NUL byte on line 3); check that it is the right"
     " file and set the right 'format'"),
    ("parquet as csv", b"PAR1\x15\x04garbage", "d.csv", {},
     "'d.csv' is a Parquet file, not CSV: set 'format' to parquet"),
    ("invalid json line", '{"text": "a"}\n{"text": "b",}\n', "d.jsonl", {},
     "'d.jsonl' line 2 is not valid JSON (Expecting property name enclosed in double quotes): each line must be"
     " one JSON object"),
    ("json line not an object", '{"text": "a"}\n["b"]\n', "d.jsonl", {},
     "'d.jsonl' line 2 is a JSON list, not an object: each line must be one object like {\"text\": \"...\"}"),
    ("not parquet", "text\nhello\n", "d.parquet", {},
     "'d.parquet' is not a Parquet file (it lacks the Parquet signature): set the right 'format' (csv, tsv, jsonl)"),
    ("damaged parquet", b"PAR1 this is not really parquet PAR1", "d.parquet", {},
     "'d.parquet' is not a readable Parquet file ("),
    ("empty file", b"", "d.csv", {}, "'d.csv' is empty: there is nothing to import"),
    ("blank file", b"\n  \n", "d.csv", {}, "'d.csv' is empty: there is nothing to import"),
    ("header only", "text,label\n", "d.csv", {}, "'d.csv' has no data rows: there is nothing to import"),
    ("ragged rows", "text,label\nhello,pos\nbye,neg,extra\n", "d.csv", {},
     "'d.csv' line 3: expected 2 fields, found 3; check the separator ('sep' ',') and that cells holding ',' are"
     " quoted"),
    ("unknown split", "text,split\na,train\nb,holdout\n", "d.csv", {"split_col": "split"},
     "row 2: split 'holdout' in column 'split' is not one of train, dev, test, pool (validation/valid/val count"
     " as dev): fix the value, or use a fixed 'split'"),
    ("empty split", "text,split\na,train\nb,\n", "d.csv", {"split_col": "split"},
     "row 2: an empty split in column 'split' is not one of train, dev, test, pool"),
    ("agreement out of range", "text,agree\na,66\nb,150\n", "d.csv", {"agreement_col": "agree"},
     "row 2: agreement '150' in column 'agree' is out of range: give a fraction 0-1 (0.66) or a percentage 0-100"
     " (66)"),
    ("agreement not a number", "text,agree\na,0.5\nb,high\n", "d.csv", {"agreement_col": "agree"},
     "row 2: agreement 'high' in column 'agree' is not a number: give a fraction 0-1 (0.66) or a percentage"
     " 0-100 (66)"),
    ("headerless column count", "pos\thello\textra\n", "d.tsv", {"no_header": True, "columns": ("label", "text")},
     "'d.tsv' has 3 columns but 'columns' names 2 (label, text): name every column, in order"),
    ("unknown extension", "text\nhello\n", "d.xlsx", {},
     "cannot tell the format of 'd.xlsx' from its extension: set 'format' to csv, tsv, jsonl or parquet"),
]


@pytest.mark.parametrize(("case", "content", "name", "kwargs", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_changes(
    fresh_db, project, tmp_path, case, content, name, kwargs, message
):
    import_file(fresh_db, project.id, write(tmp_path, "seed.csv", "text\nalready here\n"), ImportSpec())
    before = table_counts(fresh_db)
    labels_before = projects.get_project(fresh_db, project.id).label_names
    with pytest.raises(ImportDataError, match="^" + re.escape(message)) as caught:
        import_file(fresh_db, project.id, write(tmp_path, name, content), ImportSpec(**kwargs))
    assert "\n" not in str(caught.value)
    assert table_counts(fresh_db) == before
    assert projects.get_project(fresh_db, project.id).label_names == labels_before


def test_missing_file_is_named(fresh_db, project, tmp_path):
    with pytest.raises(ImportDataError, match=re.escape(f"file {str(tmp_path / 'nope.csv')!r} not found")):
        import_file(fresh_db, project.id, tmp_path / "nope.csv", ImportSpec())


def test_a_failure_while_writing_rolls_everything_back(fresh_db, project, tmp_path, monkeypatch):
    before = table_counts(fresh_db)

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(items_db, "insert_annotation_columns", explode)
    path = write(tmp_path, "l.csv", "id,text,annotator,label\n1,a,x,brand-new\n")
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(fresh_db, project.id, path, ImportSpec(**LONG), add_missing_labels=True)
    # Items were inserted and a label added before the failure: all rolled back.
    assert table_counts(fresh_db) == before
    assert projects.get_project(fresh_db, project.id).label_names == ["pos", "neg", "neu"]


# --------------------------------------------------------------------------------------------- shared datasets


def _normalised(texts: pd.Series) -> pd.Series:
    """DESIGN's normalisation re-done in pandas: NFKC, casefold, whitespace collapsed, edge punctuation trimmed."""
    return (
        texts.str.normalize("NFKC").str.casefold().str.replace(r"\s+", " ", regex=True).str.strip()
        .str.replace(r"^[\W_]+|[\W_]+$", "", regex=True)
    )


def test_sms_spam(fresh_db, shared_data):
    project = projects.create_project(fresh_db, "sms", projects.parse_labels("ham,spam"))
    path = shared_data / "sms_spam" / "SMSSpamCollection"
    report = import_file(fresh_db, project.id, path, ImportSpec(
        format="tsv", no_header=True, columns=("label", "text"), label_col="label"))
    independent = pd.read_csv(path, sep="\t", header=None, names=["label", "text"], quoting=3, dtype=str)
    assert len(independent) == 5574
    first = independent[~_normalised(independent["text"].str.strip()).duplicated()]
    assert (report.rows_read, report.items_added, report.duplicate_texts_skipped) == (5574, 5136, 438)
    assert report.items_added == len(first)
    assert report.duplicate_rows == (104, 155, 208, 224, 327)
    counts = items_of(fresh_db, project.id)["reference_label"].value_counts().to_dict()
    assert counts == first["label"].value_counts().to_dict() == {"ham": 4504, "spam": 632}


def _phrasebank(folder: Path) -> pd.DataFrame:
    """Every sentence of the 50 % file with its agreement tier: the highest file it appears in."""
    tiers = {}
    for name, tier in (("50Agree", 0.5), ("66Agree", 0.66), ("75Agree", 0.75), ("AllAgree", 1.0)):
        text = (folder / f"Sentences_{name}.txt").read_text(encoding="latin-1")
        lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
        tiers.update({line: tier for line in lines})
        if name == "50Agree":
            all_lines = lines
    sentence_label = [line.rsplit("@", 1) for line in all_lines]
    return pd.DataFrame({"text": [s for s, _ in sentence_label], "label": [lb for _, lb in sentence_label],
                         "agreement": [tiers[line] for line in all_lines]})


def test_financial_phrasebank_with_agreement_tiers(fresh_db, shared_data, tmp_path):
    frame = _phrasebank(shared_data / "financial_phrasebank")
    assert len(frame) == 4846
    path = tmp_path / "fpb.parquet"
    frame.to_parquet(path)
    project = projects.create_project(fresh_db, "fpb", projects.parse_labels("positive,neutral,negative"))
    report = import_file(fresh_db, project.id, path, ImportSpec(label_col="label", agreement_col="agreement"))
    kept = frame[~_normalised(frame["text"]).duplicated()]
    assert (report.items_added, report.duplicate_texts_skipped) == (len(kept), 8) == (4838, 8)
    table = item_table(fresh_db, project.id)
    tiers = table["instance_agreement"].value_counts().to_dict()
    assert tiers == kept["agreement"].value_counts().to_dict() == {1.0: 2259, 0.75: 1189, 0.66: 762, 0.5: 628}
    assert set(table["agreement_source"]) == {"imported"}


CONVABUSE_SEVERITIES = ["1", "0", "-1", "-2", "-3"]
CONVABUSE_CONTEXT = ["conv_id", "prev_agent", "prev_user", "agent", "user", "bot"]


def _convabuse_long(folder: Path) -> pd.DataFrame:
    """1_full in long form with one label column. Its ``example_no`` numbers rows, not items, so an item is a
    distinct conversational context; an annotator's repeat rating of an item (357 rows) keeps the first."""
    full = pd.read_csv(folder / "1_full" / "ConvAbuseEMNLPfull.csv", dtype=str, keep_default_na=False)
    one_hot = full[[f"is_abuse.{s}" for s in CONVABUSE_SEVERITIES]].astype(int).to_numpy()
    full["label"] = np.array(CONVABUSE_SEVERITIES)[one_hot.argmax(axis=1)]
    full["item"] = "c" + full.groupby(CONVABUSE_CONTEXT, sort=False).ngroup().astype(str)
    return full.drop_duplicates(["item", "annotator_id"])[["item", "annotator_id", "label", *CONVABUSE_CONTEXT]]


def _convabuse_wide(folder: Path) -> pd.DataFrame:
    """2_splits in wide form with a label column per annotator; a cell listing an annotator's repeat ratings
    (``"0, 1"``) keeps the first, as the long form does."""
    parts = []
    for name, split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        part = pd.read_csv(folder / "2_splits" / f"ConvAbuseEMNLP{name}.csv", dtype=str, keep_default_na=False)
        parts.append(part.assign(split=split))
    wide = pd.concat(parts, ignore_index=True)
    for k in range(1, 9):
        first = wide[[f"Annotator{k}_is_abuse.{s}" for s in CONVABUSE_SEVERITIES]].apply(
            lambda column: column.str.split(",").str[0].str.strip().replace("", "0").astype(int)
        ).to_numpy()
        wide[f"Annotator{k}"] = np.where(first.sum(axis=1) > 0, np.array(CONVABUSE_SEVERITIES)[first.argmax(axis=1)], "")
    return wide[["example_id", "split", *[f"Annotator{k}" for k in range(1, 9)], *CONVABUSE_CONTEXT]]


def test_convabuse_long_and_wide_give_the_same_agreement(fresh_db, shared_data, tmp_path):
    folder = shared_data / "convabuse"
    long, wide = _convabuse_long(folder), _convabuse_wide(folder)
    long.to_csv(tmp_path / "long.csv", index=False)
    wide.to_csv(tmp_path / "wide.csv", index=False)
    labels = projects.parse_labels(CONVABUSE_SEVERITIES)
    long_project = projects.create_project(fresh_db, "convabuse-long", labels)
    wide_project = projects.create_project(fresh_db, "convabuse-wide", labels)
    long_report = import_file(fresh_db, long_project.id, tmp_path / "long.csv", ImportSpec(
        text_col="user", id_col="item", annotator_col="annotator_id", annotation_col="label"))
    wide_report = import_file(fresh_db, wide_project.id, tmp_path / "wide.csv", ImportSpec(
        text_col="user", id_col="example_id", split_col="split",
        annotator_cols=tuple(f"Annotator{k}" for k in range(1, 9))))
    assert (long_report.rows_read, long_report.items_added, long_report.annotations_added) == (12411, 4185, 12411)
    assert (wide_report.rows_read, wide_report.items_added, wide_report.annotations_added) == (4185, 4185, 12411)
    assert long_report.annotators == wide_report.annotators == tuple(f"import:Annotator{k}" for k in range(1, 9))
    # Distinct ids are never merged: texts such as "yes" are shared by many items and only reported.
    assert long_report.duplicate_text_ids > 0 and long_report.duplicate_texts_skipped == 0

    long_table = item_table(fresh_db, long_project.id).set_index("external_id")
    wide_table = item_table(fresh_db, wide_project.id).set_index("external_id")
    # Independent check: a_i = top count / n from the reshaped frame.
    counts = pd.crosstab(long["item"], long["label"])
    expected = (counts.max(axis=1) / counts.sum(axis=1)).sort_index()
    pd.testing.assert_series_equal(long_table["instance_agreement"].sort_index(), expected, check_names=False)
    assert long_table["instance_agreement"].mean() == pytest.approx(wide_table["instance_agreement"].mean(), abs=1e-12)
    assert sorted(long_table["instance_agreement"]) == pytest.approx(sorted(wide_table["instance_agreement"]))
    # Item by item, where a context identifies one item in both releases.
    unique_context = wide.drop_duplicates(CONVABUSE_CONTEXT, keep=False)
    pairs = long.drop_duplicates("item").merge(unique_context, on=CONVABUSE_CONTEXT)[["item", "example_id"]]
    assert len(pairs) == 4177
    assert long_table.loc[pairs["item"], "instance_agreement"].to_numpy() == pytest.approx(
        wide_table.loc[pairs["example_id"], "instance_agreement"].to_numpy())
    assert wide_table["split"].value_counts().to_dict() == {"train": 2501, "test": 853, "dev": 831}


# ------------------------------------------------------------------ malformed rows that must still import


def test_crlf_line_endings_and_a_quoted_carriage_return_import(fresh_db, project, tmp_path):
    path = write(tmp_path, "crlf.csv", 'id,text,label\r\n1,plain,pos\r\n2,"two\rlines",neg\r\n3,"x, y",\r\n')
    report = import_file(fresh_db, project.id, path, ImportSpec(id_col="id", label_col="label"))
    assert (report.rows_read, report.items_added) == (3, 3)
    rows = items_of(fresh_db, project.id)
    assert rows["text"].tolist() == ["plain", "two\rlines", "x, y"]
    assert values(rows["reference_label"]) == ["pos", "neg", None]


def test_rows_whose_last_cells_are_empty_are_not_short(fresh_db, project, tmp_path):
    path = write(tmp_path, "w.csv", 'text,a1,a2\none,pos,\n"two, quoted",,\nthree,,neg\n')
    report = import_file(fresh_db, project.id, path, ImportSpec(annotator_cols=("a1", "a2")))
    assert (report.items_added, report.annotations_added) == (3, 2)


# ---------------------------------------------------------- repeated ratings and intra-annotator consistency

# x rates a twice (pos, then neg) and b twice (neu, neu); y rates b twice (pos, pos): three repeat pairs.
REPEATS = (
    "id,text,annotator,label\n"
    "a,Text A,x,pos\n"   # row 1
    "a,Text A,y,pos\n"   # row 2
    "a,Text A,x,neg\n"   # row 3: x again on a
    "b,Text B,x,neu\n"   # row 4
    "b,Text B,y,pos\n"   # row 5
    "b,Text B,x,neu\n"   # row 6: x again on b
    "b,Text B,y,pos\n"   # row 7: y again on b
)


def _labels_by_annotator(db, project_id: int) -> dict[tuple[str, str], str]:
    table = items_db.annotations_frame(db, project_id).merge(
        items_of(db, project_id)[["id", "external_id"]], left_on="item_id", right_on="id")
    return {(row.external_id, row.annotator.removeprefix("import:")): row.label for row in table.itertuples()}


def test_repeated_ratings_keep_the_last_by_default_and_every_pair_is_kept(fresh_db, project, tmp_path):
    from core.agreement.project import project_agreement

    report = import_file(fresh_db, project.id, write(tmp_path, "r.csv", REPEATS), ImportSpec(**LONG))
    assert ImportSpec().repeated_ratings == "last"
    assert (report.rows_read, report.items_added, report.annotations_added) == (7, 2, 4)
    assert (report.repeated_ratings, report.repeated_rating_rows) == (3, (3, 6, 7))
    assert ("3 repeated ratings (an annotator rating an item again, rows 3, 6, 7): the last of each was kept as"
            " the annotation, every repeat is kept as a pair for intra-annotator consistency") in report.message
    assert _labels_by_annotator(fresh_db, project.id) == {
        ("a", "x"): "neg", ("a", "y"): "pos", ("b", "x"): "neu", ("b", "y"): "pos"}
    pairs = items_db.repeat_pairs_frame(fresh_db, project.id)
    assert pairs[["annotator", "first_label", "second_label"]].values.tolist() == [
        ["import:x", "pos", "neg"], ["import:x", "neu", "neu"], ["import:y", "pos", "pos"]]
    # Hand computation: 2 of 3 pairs agree. Alpha over 3 units of 2 values (pos,neg | neu,neu | pos,pos):
    # n = 6, n_pos = 3, n_neg = 1, n_neu = 2, coincidences on the diagonal 4;
    # alpha = 1 - (n-1)(n - 4) / (n^2 - sum n_c^2) = 1 - 5*2 / (36 - 14) = 6/11.
    intra = project_agreement(fresh_db, project).to_dict()["intra_annotator"]
    assert intra == {"n_pairs": 3, "n_annotators": 2, "same_label_share": pytest.approx(2 / 3),
                     "alpha": pytest.approx(6 / 11)}

    # Importing the same file again adds nothing: no annotation, no second copy of the pairs.
    again = import_file(fresh_db, project.id, write(tmp_path, "r.csv", REPEATS), ImportSpec(**LONG))
    assert (again.items_added, again.items_matched, again.annotations_added, again.conflicts) == (0, 2, 0, 0)
    assert len(items_db.repeat_pairs_frame(fresh_db, project.id)) == 3


def test_repeated_ratings_policy_first_keeps_the_first_and_pairs_follow_the_file_order(fresh_db, project, tmp_path):
    content = REPEATS + "c,Text C,x,pos\nc,Text C,x,neg\nc,Text C,x,pos\n"  # three ratings: two pairs
    report = import_file(fresh_db, project.id, write(tmp_path, "r.csv", content),
                         ImportSpec(**LONG, repeated_ratings="first"))
    assert (report.annotations_added, report.repeated_ratings, report.repeated_rating_rows) == (5, 5, (3, 6, 7, 9, 10))
    labels = _labels_by_annotator(fresh_db, project.id)
    assert (labels[("a", "x")], labels[("c", "x")]) == ("pos", "pos")
    pairs = items_db.repeat_pairs_frame(fresh_db, project.id)
    assert pairs[["first_label", "second_label"]].values.tolist()[-2:] == [["pos", "neg"], ["neg", "pos"]]


def test_repeated_ratings_in_wide_form_rows_that_share_an_id(fresh_db, project, tmp_path):
    path = write(tmp_path, "w.csv", "id,text,x,y\na,Text A,pos,neg\na,Text A,neu,\n")
    report = import_file(fresh_db, project.id, path, ImportSpec(id_col="id", annotator_cols=("x", "y")))
    assert (report.annotations_added, report.repeated_ratings, report.repeated_rating_rows) == (2, 1, (2,))
    assert _labels_by_annotator(fresh_db, project.id) == {("a", "x"): "neu", ("a", "y"): "neg"}


def test_intra_annotator_consistency_from_pairs():
    from core.agreement.metrics import intra_annotator_consistency

    assert intra_annotator_consistency(pd.DataFrame(columns=["annotator", "first_label", "second_label"])) is None
    pairs = pd.DataFrame({"annotator": ["u1", "u1", "u2", "u3"], "first_label": ["a", "a", "b", "a"],
                          "second_label": ["a", "b", "b", "a"]})
    result = intra_annotator_consistency(pairs).to_dict()
    # n = 8 values: a 5, b 3; diagonal coincidences 6 (3 agreeing units); alpha = 1 - 7*2 / (64 - 34) = 8/15.
    assert result == {"n_pairs": 4, "n_annotators": 3, "same_label_share": 0.75, "alpha": pytest.approx(8 / 15)}
    same = pd.DataFrame({"annotator": ["u1"], "first_label": ["a"], "second_label": ["a"]})
    assert intra_annotator_consistency(same).to_dict() == {
        "n_pairs": 1, "n_annotators": 1, "same_label_share": 1.0, "alpha": None}  # one value in use: undefined


def test_agreement_json_has_intra_annotator_null_without_repeats(fresh_db, project, tmp_path):
    from core.agreement.project import project_agreement

    import_file(fresh_db, project.id, write(tmp_path, "l.csv", "id,text,annotator,label\na,A,x,pos\na,A,y,neg\n"),
                ImportSpec(**LONG))
    data = project_agreement(fresh_db, project).to_dict()
    assert "intra_annotator" in data and data["intra_annotator"] is None


# ------------------------------------------------------------------ conflicts with the project's labels


def test_reimporting_a_known_id_with_another_label_is_a_conflict(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "a.csv", "id,text,label\n1,One,pos\n2,Two,\n"),
                ImportSpec(id_col="id", label_col="label"))
    report = import_file(fresh_db, project.id, write(tmp_path, "b.csv", "id,text,label\n1,One,neg\n2,Two,pos\n3,Three,neu\n"),
                         ImportSpec(id_col="id", label_col="label"))
    assert (report.items_added, report.items_matched, report.reference_labels_set) == (1, 2, 1)
    assert (report.conflicts, report.conflict_ids) == (1, ("1",))
    assert ("1 known id has another label in the file (conflicts, ids 1): the project's labels were kept;"
            " fix the file, or relabel the item in the app") in report.message
    assert "labels were added" not in report.message
    rows = items_of(fresh_db, project.id)
    assert values(rows["reference_label"]) == ["pos", "pos", "neu"]  # 1 kept, 2 had none and got the file's


def test_reimporting_a_known_annotation_with_another_label_is_a_conflict(fresh_db, project, tmp_path):
    import_file(fresh_db, project.id, write(tmp_path, "a.csv", "id,text,annotator,label\n1,One,x,pos\n"),
                ImportSpec(**LONG))
    report = import_file(fresh_db, project.id, write(
        tmp_path, "b.csv", "id,text,annotator,label\n1,One,x,neg\n1,One,y,pos\n2,Two,x,pos\n2,Two,x,pos\n"),
        ImportSpec(**LONG))
    assert (report.items_added, report.items_matched, report.annotations_added) == (1, 1, 2)
    assert (report.conflicts, report.conflict_ids, report.repeated_ratings) == (1, ("1",), 1)
    assert _labels_by_annotator(fresh_db, project.id) == {("1", "x"): "pos", ("1", "y"): "pos", ("2", "x"): "pos"}


# ------------------------------------------------------------------------------------------ label map


def test_label_map_is_parsed_and_round_trips():
    spec = ImportSpec(label_map=" 0 = not_offensive, 1=offensive ")
    assert spec.label_map == {"0": "not_offensive", "1": "offensive"}
    assert ImportSpec.from_dict(spec.to_dict()) == spec
    assert ImportSpec(label_map={"pos": "positive"}).label_map == {"pos": "positive"}
    assert ImportSpec().label_map == {}


def test_label_map_maps_reference_and_raw_labels_to_project_labels(fresh_db, tmp_path):
    project = projects.create_project(fresh_db, "abuse", projects.parse_labels("not_offensive,offensive"))
    path = write(tmp_path, "m.csv", "text,label,a1,a2\nhello,0,0,1\nyou idiot,1,1,offensive\nmaybe,,,0\n")
    report = import_file(fresh_db, project.id, path, ImportSpec(
        label_col="label", annotator_cols=("a1", "a2"), label_map="0=not_offensive,1=offensive"))
    assert (report.items_added, report.annotations_added) == (3, 5)
    assert values(items_of(fresh_db, project.id)["reference_label"]) == ["not_offensive", "offensive", None]
    assert sorted(set(items_db.annotations_frame(fresh_db, project.id)["label"])) == ["not_offensive", "offensive"]


def test_label_map_applies_to_numbers_in_jsonl(fresh_db, tmp_path):
    project = projects.create_project(fresh_db, "abuse", projects.parse_labels("not_offensive,offensive"))
    path = write(tmp_path, "m.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    import_file(fresh_db, project.id, path, ImportSpec(label_col="label", label_map={"0": "not_offensive",
                                                                                    "1": "offensive"}))
    assert items_of(fresh_db, project.id)["reference_label"].tolist() == ["not_offensive", "offensive"]


def test_an_unmapped_value_follows_the_unknown_label_rule(fresh_db, tmp_path):
    project = projects.create_project(fresh_db, "abuse", projects.parse_labels("not_offensive,offensive"))
    path = write(tmp_path, "m.csv", "text,label\nhello,0\nbye,2\n")
    spec = ImportSpec(label_col="label", label_map="0=not_offensive,1=offensive")
    with pytest.raises(ImportDataError, match=re.escape(
            "row 2: label '2' in column 'label' is not a label of project 'abuse' (not_offensive, offensive): add it"
            " to the project, or import with 'add_labels'")):
        import_file(fresh_db, project.id, path, spec)
    assert len(items_of(fresh_db, project.id)) == 0
    # A value mapped to a label the project lacks is refused the same way (or added on request).
    with pytest.raises(ImportDataError, match=re.escape("row 1: label 'harmless' in column 'label'")):
        import_file(fresh_db, project.id, path, ImportSpec(label_col="label", label_map="0=harmless,2=offensive"))
    report = import_file(fresh_db, project.id, path, ImportSpec(label_col="label", label_map="0=harmless,2=offensive"),
                         add_missing_labels=True)
    assert report.labels_added == ("harmless",)


def test_label_values_lists_the_distinct_file_values_of_the_label_columns():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "gold": ["1", "0", ""], "a1": ["0", "", "2"]})
    assert importer.label_values(frame, ["gold", "a1", None]) == ["0", "1", "2"]
    assert importer.label_values(frame, []) == []


def test_long_form_is_suggested_when_ids_repeat_and_a_column_names_annotators():
    frame = pd.DataFrame({"id": ["1", "1", "2"], "text": ["a", "a", "b"], "prev_user": ["p", "p", "q"],
                          "worker_id": ["w1", "w2", "w1"], "label": ["x", "y", "x"]})
    assert importer.suggest_long_form(frame, id_col="id", text_col="text") == "worker_id"
    # ids that do not repeat, no id column, or an annotator-like column constant within each item: no suggestion
    assert importer.suggest_long_form(frame.iloc[1:], id_col="id", text_col="text") is None
    assert importer.suggest_long_form(frame, id_col=None, text_col="text") is None
    assert importer.suggest_long_form(frame.drop(columns="worker_id"), id_col="id", text_col="text") is None


# --------------------------------------------------------------------------------------------- the CLI


def test_cli_import_with_repeats_and_a_label_map_then_agreement_json(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    db = tmp_path / "cli.db"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db)], cwd=root, text=True,
                              capture_output=True, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)

    data = write(tmp_path, "r.csv", REPEATS.replace(",pos", ",1").replace(",neg", ",0").replace(",neu", ",2"))
    assert cli("project", "create", "demo", "--labels", "pos,neg,neu").returncode == 0
    refused = cli("import", "demo", str(data), "--id-col", "id", "--annotator-col", "annotator", "--annotation-col",
                  "label", "--label-map", "1=pos,0=neg,2=neu", "--repeated-ratings", "error")
    assert refused.returncode == 2
    assert refused.stderr == ("error: row 3: annotator 'import:x' rates item 'a' a second time (first on row 1): set"
                              " --repeated-ratings to last or first to keep one rating and count the repeats, or keep"
                              " one row per annotator and item\n")
    done = cli("import", "demo", str(data), "--id-col", "id", "--annotator-col", "annotator", "--annotation-col",
               "label", "--label-map", "1=pos,0=neg,2=neu", "--repeated-ratings", "first", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["annotations_added"], result["repeated_ratings"], result["repeated_rating_rows"]) == (4, 3, [3, 6, 7])
    assert result["spec"]["label_map"] == {"1": "pos", "0": "neg", "2": "neu"}
    agreement = json.loads(cli("agreement", "demo", "--json", "--no-model", "--n-boot", "100").stdout)
    assert agreement["intra_annotator"] == {"n_pairs": 3, "n_annotators": 2, "same_label_share": pytest.approx(2 / 3),
                                            "alpha": pytest.approx(6 / 11)}
    assert "intra-annotator consistency: 3 repeat pairs by 2 annotators, same label 0.667, alpha 0.545" in cli(
        "agreement", "demo", "--no-model", "--n-boot", "100").stdout
