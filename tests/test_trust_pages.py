"""Reading a file by server path (core/data/server_files.py and the Data page): only regular files inside the
configured data folder, within the upload limit, never the database or the secrets; off when no folder is set."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import projects, users
from core.data.server_files import configured_data_dir, read_server_file
from core.errors import SynthloopError
from db import connection
from db import items as items_db
from pages._common import PROJECT_ID, USER_ID
from tests.page_helpers import shown

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "sms.csv").write_text("text,label\nWin a prize now,spam\nSee you at 5,ham\n")
    return folder


def _read(path: str, data_dir: Path | str | None, **kwargs):
    kwargs.setdefault("max_upload_mb", 200)
    return read_server_file(path, data_dir=data_dir, **kwargs)


def _refusal(path: str, data_dir: Path | str | None, **kwargs) -> str:
    with pytest.raises(SynthloopError) as caught:
        _read(path, data_dir, **kwargs)
    return str(caught.value)


def test_a_file_inside_the_data_folder_is_read_by_relative_or_absolute_path(data_dir) -> None:
    relative = _read("sms.csv", data_dir)
    assert (relative.name, relative.path, relative.content) == (
        "sms.csv", data_dir / "sms.csv", b"text,label\nWin a prize now,spam\nSee you at 5,ham\n")
    assert _read(str(data_dir / "sms.csv"), data_dir).content == relative.content
    (data_dir / "sub").mkdir()
    assert _read("sub/../sms.csv", data_dir).path == data_dir / "sms.csv"  # .. that stays inside is fine


def test_without_a_data_folder_nothing_is_read(data_dir) -> None:
    assert configured_data_dir({}) is None and configured_data_dir({"SYNTHLOOP_DATA_DIR": "  "}) is None
    assert configured_data_dir({"SYNTHLOOP_DATA_DIR": str(data_dir)}) == str(data_dir)
    assert _refusal(str(data_dir / "sms.csv"), None) == (
        "reading a file by its server path is off: set SYNTHLOOP_DATA_DIR to the folder that holds the data "
        "files and restart the app, or upload the file")
    missing = data_dir / "nope"
    assert _refusal("sms.csv", missing) == (
        f"the data folder {str(missing)!r} (SYNTHLOOP_DATA_DIR) is not a folder on the server: create it, or set "
        "SYNTHLOOP_DATA_DIR to an existing folder")


def test_paths_outside_the_data_folder_are_refused_after_resolving_dots_and_symlinks(data_dir, tmp_path) -> None:
    secret = tmp_path / "outside.csv"
    secret.write_text("text\nprivate\n")
    (data_dir / "link.csv").symlink_to(secret)
    (data_dir / "escape").symlink_to(tmp_path)
    expected = ("{!r} is outside the data folder " + repr(str(data_dir)) + ": only files inside it can be read; "
                "copy the file there (SYNTHLOOP_DATA_DIR) or upload it")
    for path in ("../outside.csv", str(secret), "link.csv", "escape/outside.csv", "/etc/passwd",
                 f"{data_dir}/../outside.csv"):
        assert _refusal(path, data_dir) == expected.format(path)
    # A data folder given through a symlink is resolved too: its real files are inside it.
    (tmp_path / "alias").symlink_to(data_dir)
    assert _read("sms.csv", tmp_path / "alias").path == data_dir / "sms.csv"


def test_missing_files_folders_and_special_files_are_refused(data_dir) -> None:
    root = repr(str(data_dir))
    assert _refusal("nothing.csv", data_dir) == f"file 'nothing.csv' not found in the data folder {root}: check the path"
    (data_dir / "sub").mkdir()
    assert _refusal("sub", data_dir) == "'sub' is a folder, not a file: give the path of one file"
    special = "{!r} is not a regular file (a device, pipe or socket): give the path of a data file"
    (data_dir / "zero").symlink_to("/dev/zero")  # resolves outside: refused before any open
    assert _refusal("zero", data_dir).startswith("'zero' is outside the data folder")
    os.mkfifo(data_dir / "pipe")  # opening a FIFO never blocks, and it is never read
    assert _refusal("pipe", data_dir) == special.format("pipe")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(data_dir / "sock"))
        assert _refusal("sock", data_dir) == special.format("sock")
    if os.path.exists("/dev/zero"):  # a data folder that is /dev itself: the device is still never read
        assert _refusal("zero", "/dev", max_upload_mb=1) == special.format("zero")


def test_files_over_the_upload_limit_are_refused(data_dir) -> None:
    (data_dir / "big.csv").write_bytes(b"text\n" + b"x" * (2 * 1024 * 1024))
    assert _refusal("big.csv", data_dir, max_upload_mb=1) == (
        "'big.csv' is 2.0 MB, over the upload limit of 1 MB: raise server.maxUploadSize in .streamlit/config.toml, "
        "or import the file with `python -m core import`")
    assert len(_read("big.csv", data_dir, max_upload_mb=3).content) == 2 * 1024 * 1024 + 5


def test_the_database_and_the_secrets_are_never_read(data_dir) -> None:
    database = data_dir / "synthloop.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").write_bytes(b"SQLite format 3\x00")
    message = ("{!r} is the app's database, which is never read as data: name a data file (the Export page writes "
               "the project's data out)")
    for name in ("synthloop.db", "synthloop.db-wal", "synthloop.db-shm"):
        assert _refusal(name, data_dir, database=database) == message.format(name)
    os.link(database, data_dir / "copy.csv")  # a hard link is the same file
    assert _refusal("copy.csv", data_dir, database=database) == message.format("copy.csv")

    secrets_message = "{!r} is the app's secrets file, which is never read as data: name a data file"
    (data_dir / ".streamlit").mkdir()
    (data_dir / ".streamlit" / "secrets.toml").write_text('OPENAI_API_KEY = "sk-secret"\n')
    assert _refusal(".streamlit/secrets.toml", data_dir) == secrets_message.format(".streamlit/secrets.toml")
    elsewhere = data_dir / "keys.toml"
    elsewhere.write_text('OPENAI_API_KEY = "sk-secret"\n')
    assert _refusal("keys.toml", data_dir, secrets_files=[elsewhere]) == secrets_message.format("keys.toml")


# --- the Data page ------------------------------------------------------------------------------------------


@pytest.fixture
def data_page(db_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    db = connection.connect(db_path)
    researcher = users.add_user(db, "rita", role="researcher")
    project = projects.create_project(db, "sms", projects.parse_labels("ham,spam"))
    db.conn.close()

    def open_page() -> AppTest:
        at = AppTest.from_file(str(ROOT / "pages" / "data.py"), default_timeout=60)
        at.session_state[USER_ID] = researcher.id
        at.session_state[PROJECT_ID] = project.id
        return at.run()

    return open_page, project


def test_without_a_data_folder_the_data_page_offers_no_server_path(data_page, monkeypatch) -> None:
    monkeypatch.delenv("SYNTHLOOP_DATA_DIR", raising=False)
    open_page, _ = data_page
    at = open_page()
    assert not at.exception
    assert [r.key for r in at.radio if r.key == "data_origin"] == []
    assert [t.key for t in at.text_input if t.key == "data_path"] == []
    assert len(at.get("file_uploader")) == 1


def test_the_data_page_reads_only_inside_the_data_folder(data_page, db_path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SYNTHLOOP_DATA_DIR", str(tmp_path))  # the folder that also holds the database
    (tmp_path / "sms.csv").write_text("text,label\nWin a prize now,spam\nSee you at 5,ham\n")
    open_page, project = data_page
    at = open_page()
    at.radio(key="data_origin").set_value("Path on the server").run()
    assert shown(at.text_input(key="data_path").label) == f"Path of the file inside {tmp_path}"
    at.text_input(key="data_path").input("synthloop.db").run()
    assert shown(at.error[0].value) == ("'synthloop.db' is the app's database, which is never read as data: name a "
                                        "data file (the Export page writes the project's data out)")
    at.text_input(key="data_path").input("/etc/hostname").run()
    assert shown(at.error[0].value) == (f"'/etc/hostname' is outside the data folder {str(tmp_path)!r}: only files "
                                        "inside it can be read; copy the file there (SYNTHLOOP_DATA_DIR) or upload it")
    at.text_input(key="data_path").input("sms.csv").run()
    assert not at.error
    at.button(key="data_import").click().run()
    assert not at.exception and not at.error
    assert shown(at.success[0].value).startswith("imported 2 items and 0 annotations from 2 rows of 'sms.csv'")
    with connection.open_db(db_path) as db:
        assert sorted(items_db.items_frame(db, project.id)["text"]) == ["See you at 5", "Win a prize now"]
