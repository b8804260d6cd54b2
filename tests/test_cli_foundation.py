"""The CLI contract for the foundation: ``init``, ``user add``, ``project create|list``, ``import``, ``export``.

The real entry point runs as a subprocess (exit codes, one-line stderr, ``--json``); option variations run
in-process through ``core.cli.main``, which is the same code without the interpreter start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import cli
from db import connection
from db import items as items_db

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, db: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNTHLOOP_DB": str(db)}
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
        timeout=120,
    )


def test_end_to_end_through_the_real_entry_point(tmp_path):
    db = tmp_path / "cli.db"
    data = tmp_path / "long.csv"
    data.write_text("id,text,annotator,label\n1,=cmd|calc,ann1,spam\n1,=cmd|calc,ann2,spam\n2,Hi mum,ann1,ham\n")

    done = run_cli("user", "add", "root", "--role", "admin", "--password-stdin", "--json", db=db,
                   stdin="correct horse\n")
    assert done.returncode == 0 and json.loads(done.stdout)["role"] == "admin"
    assert run_cli("project", "create", "sms", "--labels", "ham,spam", db=db).returncode == 0

    done = run_cli("import", "sms", str(data), "--id-col", "id", "--annotator-col", "annotator",
                   "--annotation-col", "label", "--split", "test", "--json", db=db)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["items_added"], report["annotations_added"], report["rows_read"]) == (2, 3, 3)
    assert report["annotators"] == ["import:ann1", "import:ann2"]

    out = tmp_path / "export.csv"
    done = run_cli("export", "sms", "--out", str(out), db=db)
    assert done.returncode == 0 and done.stdout.strip() == f"wrote 2 items of 'sms' to {out} (csv)"
    exported = pd.read_csv(out, dtype=str)
    assert exported["text"].tolist() == ["'=cmd|calc", "Hi mum"]
    assert exported["split"].tolist() == ["test", "test"]

    done = run_cli("import", "sms", str(tmp_path / "missing.csv"), db=db)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: file {str(tmp_path / 'missing.csv')!r} not found: check the path\n"


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    db = tmp_path / "c.db"
    monkeypatch.setenv("SYNTHLOOP_DB", str(db))
    assert cli.main(["project", "create", "demo", "--labels", "pos,neg,neu"]) == 0
    return db


def _main(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_options_headerless_tsv_fixed_split_and_agreement(cli_db, tmp_path, capsys):
    path = tmp_path / "data.txt"
    path.write_text("pos\tgreat\t100\nneg\tawful\t66\n")
    code, out, err = _main(capsys, "import", "demo", str(path), "--format", "tsv", "--no-header", "--columns",
                           "label,text,agree", "--label-col", "label", "--agreement-col", "agree", "--split", "dev",
                           "--source", "synthetic", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["items_added"] == 2
    with connection.open_db(cli_db) as db:
        items = items_db.items_frame(db, 1)
    assert items["imported_agreement"].tolist() == [1.0, 0.66]
    assert set(items["split"]) == {"dev"} and set(items["source"]) == {"synthetic"}


def test_import_wide_form_with_split_column_separator_and_encoding(cli_db, tmp_path, capsys):
    path = tmp_path / "wide.csv"
    path.write_bytes("id;text;split;a1;a2\n1;crème;validation;pos;neg\n2;brûlée;train;;neu\n".encode("latin-1"))
    code, out, err = _main(capsys, "import", "demo", str(path), "--sep", ";", "--encoding", "latin-1", "--id-col",
                           "id", "--split-col", "split", "--annotator-cols", "a1,a2")
    assert (code, err) == (0, "")
    assert out.startswith("imported 2 items and 3 annotations from 2 rows of 'wide.csv' into 'demo'")


def test_import_refuses_unknown_labels_unless_asked_to_add_them(cli_db, tmp_path, capsys):
    path = tmp_path / "l.csv"
    path.write_text("text,label\nhello,pos\nbye,sarcasm\n")
    code, out, err = _main(capsys, "import", "demo", str(path), "--label-col", "label")
    assert code == 2 and out == ""
    assert err == ("error: row 2: label 'sarcasm' in column 'label' is not a label of project 'demo' (pos, neg, neu):"
                   " add it to the project, or import with --add-labels\n")
    code, out, err = _main(capsys, "import", "demo", str(path), "--label-col", "label", "--add-labels", "--json")
    assert code == 0 and json.loads(out)["labels_added"] == ["sarcasm"]


def test_usage_errors_are_one_line_with_exit_2(cli_db, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["import", "demo", "x.csv", "--split", "train", "--split-col", "s"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not allowed with argument" in err
    code, _, err = _main(capsys, "import", "nope", str(tmp_path / "x.csv"))
    assert code == 2 and err.startswith("error: no project 'nope'") and err.count("\n") == 1
    code, _, err = _main(capsys, "import", "demo", "x.csv", "--columns", "a,b")
    assert (code, err) == (2, "error: --columns names the columns of a headerless file: set --no-header too\n")


def test_export_formats_and_raw_view(cli_db, tmp_path, capsys):
    path = tmp_path / "l.csv"
    path.write_text("id,text,annotator,label\nx,One,a,pos\nx,One,b,neg\n")
    assert _main(capsys, "import", "demo", str(path), "--id-col", "id", "--annotator-col", "annotator",
                 "--annotation-col", "label")[0] == 0
    code, out, _ = _main(capsys, "export", "demo", "--out", str(tmp_path / "raw.data"), "--raw", "--format", "jsonl",
                         "--json")
    summary = json.loads(out)
    assert (code, summary["rows"], summary["format"], summary["view"]) == (0, 2, "jsonl", "raw")
    lines = [json.loads(line) for line in (tmp_path / "raw.data").read_text().splitlines()]
    assert [(r["item_id"], r["annotator"], r["label"]) for r in lines] == [("x", "import:a", "pos"),
                                                                          ("x", "import:b", "neg")]
    code, out, _ = _main(capsys, "export", "demo", "--out", str(tmp_path / "items.parquet"))
    frame = pd.read_parquet(tmp_path / "items.parquet")
    assert code == 0 and frame[["item_id", "n_labels", "tie"]].values.tolist() == [["x", 2, True]]
    code, _, err = _main(capsys, "export", "demo", "--out", str(tmp_path))
    assert code == 2 and "is a folder: give a file name" in err


def test_init_and_project_list_json(cli_db, capsys):
    code, out, _ = _main(capsys, "init")
    assert code == 0 and out.startswith("database ready (")
    code, out, _ = _main(capsys, "project", "list", "--json")
    assert code == 0
    assert json.loads(out)["projects"] == [{"id": 1, "name": "demo", "n_items": 0, "n_labels": 3, "overlap": 3}]
