"""The bad-input corpus: every case is something a user can get wrong (a file, a project setting, a label, a
prompt template, a CLI argument). Each must end in one clear error that names the problem and the fix, and
must leave the database exactly as it was (compared as a full SQL dump of every table, before and after).
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from core import cli, projects, users
from core.data import importer
from core.errors import SynthloopError
from core.generation import service as generation
from db import connection


@dataclass
class Ctx:
    """What a case may use: the database file, an open connection, the project and a scratch folder."""

    db_path: Path
    db: object
    project_id: int
    tmp: Path

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def import_(self, name: str, content: str | bytes, **spec) -> None:
        importer.import_file(self.db, self.project_id, self.file(name, content), importer.ImportSpec(**spec))

    def cli(self, *argv: str) -> None:
        """Run the real CLI in-process; a user error must exit 2 with one line on stderr: raised here as
        SynthloopError(stderr) so every case is checked the same way."""
        err = io.StringIO()
        import contextlib

        with contextlib.redirect_stderr(err):
            try:
                code = cli.main([*argv, "--db", str(self.db_path)])
            except SystemExit as exc:  # argparse usage errors
                code = exc.code
        message = err.getvalue().strip()
        assert code == 2, f"exit status {code}, stderr {message!r}"
        assert message.count("\n") == 0, f"not one line: {message!r}"
        raise SynthloopError(message)


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"text": ["a parquet row"]}).to_parquet(buffer, index=False)
    return buffer.getvalue()


GOOD_CSV = "id,text,label\n1,first good text here,pos\n2,second good text here,neg\n"
Case = tuple[str, Callable[[Ctx], object], str]

CASES: list[Case] = [
    # --- imports -------------------------------------------------------------------------------------------
    ("import-missing-text-column", lambda c: c.import_("a.csv", "body,label\nhello there,pos\n"),
     r"column 'text' \('text_col'\) not in the file; its columns are: 'body', 'label'"),
    ("import-empty-text", lambda c: c.import_("a.csv", "text,label\nfine text,pos\n   ,neg\n", label_col="label"),
     r"row 2: the text in column 'text' is empty"),
    ("import-unknown-label", lambda c: c.import_("a.csv", "text,label\nsome text,spam\n", label_col="label"),
     r"row 1: label 'spam' in column 'label' is not a label of project 'demo' \(pos, neg, neu\).*'add_labels'"),
    ("import-same-id-two-texts", lambda c: c.import_("a.csv", "id,text\n7,one text\n7,another text\n", id_col="id"),
     r"row 2: id '7' already appeared on row 1 with a different text"),
    ("import-undecodable-bytes", lambda c: c.import_("a.csv", b"text\ncaf\xe9 au lait\n"),
     r"'a.csv' is not valid utf-8: byte 0xe9 on line 2 cannot be decoded; set 'encoding' to latin-1"),
    ("import-parquet-named-csv", lambda c: c.import_("a.csv", _parquet_bytes()),
     r"'a.csv' is a Parquet file, not CSV: set 'format' to parquet"),
    ("import-not-parquet", lambda c: c.import_("a.parquet", "text\nnot parquet at all\n"),
     r"'a.parquet' is not a Parquet file"),
    ("import-binary-as-csv", lambda c: c.import_("a.csv", b"text\nabc\x00def\n"),
     r"'a.csv' is not a CSV text file: it holds binary data \(a NUL byte on line 2\)"),
    ("import-empty-file", lambda c: c.import_("a.csv", ""), r"'a.csv' is empty: there is nothing to import"),
    ("import-header-only", lambda c: c.import_("a.csv", "text,label\n"), r"'a.csv' has no data rows"),
    ("import-bad-jsonl-line", lambda c: c.import_("a.jsonl", '{"text": "ok"}\n{"text": "broken"\n'),
     r"'a.jsonl' line 2 is not valid JSON"),
    ("import-jsonl-not-objects", lambda c: c.import_("a.jsonl", '{"text": "ok"}\n["a", "list"]\n'),
     r"'a.jsonl' line 2 is a JSON list, not an object"),
    ("import-unknown-extension", lambda c: c.import_("a.xlsx", "text\nhello\n"),
     r"cannot tell the format of 'a.xlsx' from its extension: set 'format' to csv, tsv, jsonl or parquet"),
    ("import-ragged-rows", lambda c: c.import_("a.csv", "text,label\nfine,pos\nnot,fine,at all\n"),
     r"'a.csv' line 3: expected 2 fields, found 3; check the separator"),
    ("import-bad-split-value", lambda c: c.import_("a.csv", "text,split\nsome text,holdout\n", split_col="split"),
     r"row 1: split 'holdout' in column 'split' is not one of train, dev, test, pool"),
    ("import-agreement-out-of-range",
     lambda c: c.import_("a.csv", "text,agr\nsome text,0.5\nmore text,150\n", agreement_col="agr"),
     r"row 2: agreement '150' in column 'agr' is out of range"),
    ("import-agreement-not-number", lambda c: c.import_("a.csv", "text,agr\nsome text,high\n", agreement_col="agr"),
     r"row 1: agreement 'high' in column 'agr' is not a number"),
    ("import-long-form-without-id",
     lambda c: c.import_("a.csv", "text,who,lab\nx y z,ann1,pos\n", annotator_col="who", annotation_col="lab"),
     r"long-form raw labels repeat each item on several rows: set 'id_col'"),
    ("import-annotator-labels-twice-policy-error",
     lambda c: c.import_("a.csv", "id,text,who,lab\n1,x y z,ann1,pos\n1,x y z,ann1,neg\n", id_col="id",
                         annotator_col="who", annotation_col="lab", repeated_ratings="error"),
     r"row 2: annotator 'import:ann1' rates item '1' a second time \(first on row 1\): set 'repeated_ratings'"),
    ("import-known-id-new-text", lambda c: c.import_("a.csv", "id,text\nA1,a changed text\n", id_col="id"),
     r"row 1: id 'A1' is already in project 'demo' with a different text"),
    ("import-file-not-found",
     lambda c: importer.import_file(c.db, c.project_id, c.tmp / "missing.csv", importer.ImportSpec()),
     r"file '.*missing.csv' not found: check the path"),
    ("import-headerless-column-count",
     lambda c: c.import_("a.csv", "pos,hello\nneg,bye\n", no_header=True, columns="label,text,extra"),
     r"'a.csv' has 2 columns but 'columns' names 3 \(label, text, extra\)"),
    ("import-unknown-encoding", lambda c: c.import_("a.csv", GOOD_CSV, encoding="klingon-8"),
     r"unknown encoding 'klingon-8': set 'encoding' to e.g. utf-8, latin-1 or cp1252"),
    ("import-not-a-text-encoding", lambda c: c.import_("a.csv", GOOD_CSV, encoding="rot13"),
     r"unknown encoding 'rot13': set 'encoding' to e.g. utf-8, latin-1 or cp1252"),
    ("import-short-row", lambda c: c.import_("a.csv", "text,label\nfine,pos\nshort\n", label_col="label"),
     r"'a.csv' line 3 \(row 2\): expected 2 fields, found 1"),
    ("import-bare-cr", lambda c: c.import_("a.csv", "text,label\nhalf\rhalf,pos\n", label_col="label"),
     r"'a.csv' line 2: a carriage return \(CR\) inside an unquoted field"),
    ("import-duplicate-header", lambda c: c.import_("a.csv", "text,label,label\nx,pos,neg\n", label_col="label"),
     r"'a.csv' has two columns named 'label' \(columns 2 and 3\)"),
    ("import-bad-separator", lambda c: c.import_("a.csv", GOOD_CSV, sep=";;"),
     r"separator ';;' is not usable: give one character"),
    # --- project settings ----------------------------------------------------------------------------------
    ("project-duplicate-name", lambda c: projects.create_project(c.db, "demo", projects.parse_labels("a,b")),
     r"project 'demo' already exists: choose another name"),
    ("project-overlap-zero", lambda c: projects.create_project(c.db, "p2", projects.parse_labels("a,b"), overlap=0),
     r"overlap 0 is not valid: use a whole number of labels per item from 1 to 50"),
    ("project-blank-name", lambda c: projects.create_project(c.db, "   ", projects.parse_labels("a,b")),
     r"project name must be 1-100 characters"),
    ("project-remove-used-label",
     lambda c: projects.update_project(c.db, c.project_id, labels=projects.parse_labels("pos,neu")),
     r"label 'neg' is used by 2 labels or annotations and cannot be removed"),
    ("project-rename-to-existing", lambda c: projects.update_project(c.db, c.project_id, name="other"),
     r"project 'other' already exists: choose another name"),
    # --- labels --------------------------------------------------------------------------------------------
    ("labels-duplicate", lambda c: projects.parse_labels("pos,neg,pos"),
     r"label 'pos' is given twice: each label name must be unique"),
    ("labels-none", lambda c: projects.parse_labels(" , ,"), r"a project needs at least one label"),
    ("labels-reserved-key",
     lambda c: projects.update_project(c.db, c.project_id, labels=projects.parse_label_lines(
         "pos | good | 1\nneg | bad | r\nneu | neither | 3")),
     r"keyboard key 'r' is not usable"),
    ("labels-same-key",
     lambda c: projects.update_project(c.db, c.project_id, labels=projects.parse_label_lines(
         "pos | | 1\nneg | | 1\nneu | | 3")),
     r"keyboard key '1' is used by two labels"),
    ("labels-descriptions-not-json", lambda c: projects.parse_labels("a,b", "{a: nice}"),
     r"label descriptions are not valid JSON"),
    ("labels-description-unknown-label", lambda c: projects.parse_labels("a,b", '{"c": "sea"}'),
     r"label descriptions name 'c', which is not one of the labels"),
    ("labels-line-too-many-parts", lambda c: projects.parse_label_lines("pos | good | 1 | extra"),
     r"label line 'pos \| good \| 1 \| extra' has more than 3 parts"),
    # --- prompts and generation settings -------------------------------------------------------------------
    ("prompt-unknown-placeholder",
     lambda c: generation.save_templates(c.db, c.project_id, {"generation": "Write a {lable} text"}),
     r"prompt template 'generation' uses unknown placeholder \{lable\}"),
    ("prompt-few-shot-without-examples",
     lambda c: generation.save_templates(c.db, c.project_id, {"few_shot": "Write like the examples"}),
     r"the few-shot template must contain \{examples\}"),
    ("prompt-unbalanced-brace",
     lambda c: generation.save_templates(c.db, c.project_id, {"diversity": "Be more {diverse"}),
     r"is not valid .*write literal braces as \{\{ and \}\}"),
    ("prompt-unknown-template-name",
     lambda c: generation.save_templates(c.db, c.project_id, {"preamble": "Hello"}),
     r"unknown prompt template 'preamble'"),
    ("generation-temperature-out-of-range",
     lambda c: generation.save_options(c.db, c.project_id, backend="openai", model="m", temperature=5.0),
     r"temperature 5.0 is not valid: use a number from 0.0 to 2.0"),
    ("generation-key-instead-of-env-name",
     lambda c: generation.save_options(c.db, c.project_id, backend="openai", model="m",
                                       api_key_env="sk-live-1234567890"),
     r"API key variable 'sk-live-1234567890' is not an environment variable name"),
    ("generation-few-shot-without-seeds",
     lambda c: generation.start_generation(c.db, c.project_id, launch=False, backend="openai", model="m",
                                           base_url="http://127.0.0.1:9/v1", mode="few-shot", per_label=2),
     r"few-shot generation needs seeds, and this project has none"),
    ("generation-list-form-zero-shot",
     lambda c: generation.save_options(c.db, c.project_id, mode="zero-shot", prompt_form="list"),
     r"the list prompt form continues a list of seed texts: use it with 'mode' few-shot"),
    ("generation-bad-base-url",
     lambda c: generation.save_options(c.db, c.project_id, backend="openai", model="m", base_url="ftp://llm"),
     r"base URL 'ftp://llm' is not an http\(s\) URL"),
    ("generation-unknown-label",
     lambda c: generation.save_options(c.db, c.project_id, labels=["pos", "spam"]),
     r"label 'spam' is not a label of project 'demo'"),
    # --- users ---------------------------------------------------------------------------------------------
    ("user-short-password", lambda c: users.add_user(c.db, "carol", role="annotator", password="short"),
     r"password is too short: use at least 8 characters"),
    ("user-duplicate-name", lambda c: users.add_user(c.db, "Ann", role="annotator"),
     r"user 'Ann' already exists: choose another name"),
    # --- CLI arguments -------------------------------------------------------------------------------------
    ("cli-project-without-labels", lambda c: c.cli("project", "create", "p3"),
     r"the following arguments are required: --labels"),
    ("cli-overlap-not-a-number", lambda c: c.cli("project", "create", "p3", "--labels", "a,b", "--overlap", "many"),
     r"argument --overlap: invalid int value: 'many'"),
    ("cli-split-and-split-col",
     lambda c: c.cli("import", "demo", str(c.file("a.csv", GOOD_CSV)), "--split", "test", "--split-col", "s"),
     r"argument --split-col: not allowed with argument --split"),
    ("cli-import-unknown-project", lambda c: c.cli("import", "nosuch", str(c.file("a.csv", GOOD_CSV))),
     r"^error: no project 'nosuch': create it first"),
    ("cli-import-bad-format", lambda c: c.cli("import", "demo", str(c.file("a.csv", GOOD_CSV)), "--format", "xls"),
     r"argument --format: invalid choice: 'xls'"),
    ("cli-user-without-credentials", lambda c: c.cli("user", "add", "dave", "--role", "annotator"),
     r"give the new user a password \(--password-stdin\) or an invite link \(--invite\)"),
    ("cli-user-unknown-role", lambda c: c.cli("user", "add", "dave", "--role", "boss", "--invite"),
     r"argument --role: invalid choice: 'boss'"),
    ("cli-user-bad-name", lambda c: c.cli("user", "add", "da ve!", "--role", "annotator", "--invite"),
     r"username 'da ve!' is not valid"),
    ("cli-generate-without-mode", lambda c: c.cli("generate", "demo"),
     r"a new generation needs --mode zero-shot\|few-shot and --per-label N"),
    ("cli-generate-per-label-zero",
     lambda c: c.cli("generate", "demo", "--mode", "zero-shot", "--per-label", "0", "--backend", "openai",
                     "--model", "m", "--base-url", "http://127.0.0.1:9/v1"),
     r"per_label 0 is not valid: use a whole number from 1 to 1000000"),
    ("cli-train-zero-epochs", lambda c: c.cli("train", "demo", "--epochs", "0"),
     r"training setting epochs=0 is not valid: use a whole number from 1 to 1000"),
    ("cli-train-agreement-above-one", lambda c: c.cli("train", "demo", "--min-agreement", "1.5"),
     r"training setting min_agreement=1.5 is not valid: use a number from 0 to 1"),
    ("cli-train-unknown-source", lambda c: c.cli("train", "demo", "--sources", "real,web"),
     r"training setting sources='web' is not valid"),
    ("cli-export-into-folder", lambda c: c.cli("export", "demo", "--out", str(c.tmp)),
     r"is a folder: give a file name"),
    ("cli-seeds-unknown-item", lambda c: c.cli("seeds", "add", "demo", "NOPE-404"),
     r"no item 'NOPE-404' in this project"),
]


def _dump(db_path: Path) -> list[str]:
    """Every table's schema and rows, as SQL (read through a separate connection: what is committed)."""
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def seeded(tmp_path: Path):
    """A project 'demo' (pos, neg, neu) with three imported items (ids A1-A3, one raw label), a second project
    'other', and an annotator 'ann' (invite only: no bcrypt cost)."""
    db_path = tmp_path / "bad.db"
    db = connection.connect(db_path)
    project = projects.create_project(db, "demo", projects.parse_labels("pos,neg,neu"), overlap=2)
    projects.create_project(db, "other", projects.parse_labels("x,y"))
    importer.import_file(
        db, project.id,
        b"id,text,label,who,lab\nA1,the first real text,pos,kim,neg\nA2,the second real text,neg,,\n"
        b"A3,the third real text,neu,,\n",
        importer.ImportSpec(id_col="id", label_col="label", annotator_col="who", annotation_col="lab"),
        filename="seed.csv",
    )
    users.add_user(db, "ann", role="annotator")
    scratch = tmp_path / "files"
    scratch.mkdir()
    yield Ctx(db_path, db, project.id, scratch)
    db.conn.close()


def test_the_corpus_is_large_and_covers_every_area() -> None:
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)
    areas = {name.split("-")[0] for name, _, _ in CASES}
    assert {"import", "project", "labels", "prompt", "generation", "cli"} <= areas


@pytest.mark.parametrize(("action", "message"), [(a, m) for _, a, m in CASES], ids=[n for n, _, _ in CASES])
def test_bad_input_gives_a_clear_error_and_changes_nothing(seeded: Ctx, action, message: str) -> None:
    before = _dump(seeded.db_path)
    with pytest.raises(SynthloopError, match=message) as caught:
        action(seeded)
    text = str(caught.value)
    assert text.strip() and "\n" not in text.strip(), f"not one clear line: {text!r}"
    assert "Traceback" not in text
    after = _dump(seeded.db_path)
    assert after == before, "the database changed: " + "; ".join(sorted(set(after) ^ set(before)))[:500]
    # The connection the action used is not left inside an open transaction (nothing half-written).
    assert not seeded.db.conn.in_transaction
