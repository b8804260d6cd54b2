"""Import: formats, column roles, raw labels in long and wide form, identity rules, bad input (exact message and
nothing written) and the three shared datasets with counts checked by an independent pandas computation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
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
        ({"encoding": "klingon"}, "unknown encoding 'klingon': use e.g. utf-8, latin-1 or cp1252"),
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
    ("same annotator twice", "id,text,annotator,label\n1,a,x,pos\n1,a,y,pos\n1,a,x,neg\n", "d.csv", LONG,
     "row 3: annotator 'import:x' labels item '1' a second time (first on row 1): keep one label per annotator"
     " and item"),
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
