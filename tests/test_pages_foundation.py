"""One AppTest per foundation page (Projects, Data, Export, Users), each checking real behaviour in the database,
plus the role gate: a page opened by a role that may not see it refuses to render."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import projects, users
from core.data.importer import ImportSpec, import_file
from db import connection
from db import items as items_db
from pages._common import PROJECT_ID, USER_ID
from tests.page_helpers import shown

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


@pytest.fixture
def app_db(db_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    db = connection.connect(db_path)
    # No passwords: bcrypt is slow on purpose and pages only need the logged-in user id.
    admin = users.add_user(db, "root", role="admin")
    researcher = users.add_user(db, "rita", role="researcher")
    db.conn.close()
    return db_path, admin, researcher


def page(name: str, user_id: int, project_id: int | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state[USER_ID] = user_id
    if project_id is not None:
        at.session_state[PROJECT_ID] = project_id
    return at


def test_projects_create_edit_and_delete(app_db):
    db_path, admin, _ = app_db
    at = page("projects", admin.id).run()
    assert not at.exception
    at.text_input(key="projects_new_name").input("Movie reviews")
    at.text_input(key="projects_new_labels").input("pos,neg")
    at.text_area(key="projects_new_context").input("You are a film critic.")
    at.number_input(key="projects_new_overlap").set_value(2)
    at.button(key="projects_create").click().run()
    assert not at.exception and not at.error
    with connection.open_db(db_path) as db:
        created = projects.get_project(db, "Movie reviews")
    assert (created.label_names, created.context_prompt, created.overlap) == (["pos", "neg"], "You are a film critic.", 2)
    assert at.session_state[PROJECT_ID] == created.id

    # Edit through the plain-text label editor (the table editor cannot be driven from AppTest).
    at.radio(key="projects_label_mode").set_value("Text").run()
    at.text_area(key=f"projects_label_lines_{created.id}").input(
        "pos | a positive review | 1\nneg | a negative review | 2\nmixed | both | m")
    at.text_area(key=f"projects_guidelines_{created.id}").input("# Rules\nLabel the **overall** tone.")
    at.button(key="projects_save").click().run()
    assert not at.exception and not at.error
    with connection.open_db(db_path) as db:
        edited = projects.get_project(db, created.id)
    assert [(lb.name, lb.description, lb.key) for lb in edited.labels] == [
        ("pos", "a positive review", "1"), ("neg", "a negative review", "2"), ("mixed", "both", "m")]
    assert edited.guidelines == "# Rules\nLabel the **overall** tone."
    assert any("overall" in md.value for md in at.markdown)  # the guidelines preview

    # A bad label line is refused with the core's message, and nothing changes.
    at.text_area(key=f"projects_label_lines_{created.id}").input("pos | x | c")
    at.button(key="projects_save").click().run()
    assert "keyboard key 'c' is not usable" in at.error[0].value
    with connection.open_db(db_path) as db:
        assert projects.get_project(db, created.id).label_names == ["pos", "neg", "mixed"]

    at.text_input(key="projects_delete_confirm").input("Movie reviews").run()
    at.button(key="projects_delete").click().run()
    with connection.open_db(db_path) as db:
        assert projects.list_projects(db) == []


def test_projects_duplicate_name_shows_the_error(app_db):
    db_path, admin, _ = app_db
    with connection.open_db(db_path) as db:
        projects.create_project(db, "taken", projects.parse_labels("a,b"))
    at = page("projects", admin.id).run()
    at.text_input(key="projects_new_name").input("taken")
    at.text_input(key="projects_new_labels").input("x,y")
    at.button(key="projects_create").click().run()
    assert shown(at.error[0].value) == "project 'taken' already exists: choose another name"


def test_data_page_imports_a_file_and_browses_items(app_db, tmp_path):
    db_path, _, researcher = app_db
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "sms", projects.parse_labels("ham,spam"))
    data = tmp_path / "sms.csv"
    data.write_text("id,text,label\n1,Win a prize now,spam\n2,See you at 5,ham\n3,<b>bold</b> claim,spam\n")
    at = page("data", researcher.id, project.id).run()
    assert not at.exception
    at.radio(key="data_origin").set_value("Path on the server").run()
    at.text_input(key="data_path").input(str(data)).run()
    assert not at.error
    assert at.dataframe[0].value.shape == (3, 3)  # the preview
    # The likely columns are preselected; the split is fixed to test.
    assert at.selectbox(key="data_text_col").value == "text" and at.selectbox(key="data_id_col").value == "id"
    assert at.selectbox(key="data_label_col").value == "label"
    at.selectbox(key="data_split").set_value("test")
    at.button(key="data_import").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("imported 3 items and 0 annotations from 3 rows of 'sms.csv'")
    with connection.open_db(db_path) as db:
        items = items_db.items_frame(db, project.id)
    assert items["external_id"].tolist() == ["1", "2", "3"] and set(items["split"]) == {"test"}

    # Browse: filters and counts; item text only inside a dataframe.
    at.selectbox(key="browse_label").set_value("spam").run()
    browse = at.dataframe[-1].value
    assert browse["item_id"].tolist() == ["1", "3"]
    assert "<b>bold</b> claim" in browse["text"].tolist()
    assert at.metric[0].value == "2 of 3"
    at.text_input(key="browse_search").input("prize").run()
    assert at.dataframe[-1].value["item_id"].tolist() == ["1"]


def test_data_page_shows_import_errors_and_writes_nothing(app_db, tmp_path):
    db_path, _, researcher = app_db
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "sms", projects.parse_labels("ham,spam"))
    data = tmp_path / "bad.csv"
    data.write_text("text,label\nhello,ham\nbye,eggs\n")
    at = page("data", researcher.id, project.id).run()
    at.radio(key="data_origin").set_value("Path on the server").run()
    at.text_input(key="data_path").input(str(data)).run()
    at.button(key="data_import").click().run()
    assert shown(at.error[0].value).startswith("row 2: label 'eggs' in column 'label' is not a label of project 'sms'")
    with connection.open_db(db_path) as db:
        assert items_db.count_items(db, project.id) == {}
    at.text_input(key="data_path").input(str(tmp_path / "nothing.csv")).run()
    assert "not found: check the path" in shown(at.error[0].value)


def test_export_page_previews_and_offers_the_download(app_db):
    db_path, _, researcher = app_db
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "demo", projects.parse_labels("pos,neg"))
        import_file(db, project.id, b"id,text,annotator,label\na,=1+1,x,pos\na,=1+1,y,neg\n",
                    ImportSpec(id_col="id", annotator_col="annotator", annotation_col="label"), filename="d.csv")
    at = page("export", researcher.id, project.id).run()
    assert not at.exception
    preview = at.dataframe[0].value
    assert preview[["item_id", "n_labels", "tie"]].values.tolist() == [["a", 2, True]]
    assert len(at.get("download_button")) == 1
    at.radio(key="export_view").set_value("raw").run()
    assert at.dataframe[0].value["annotator"].tolist() == ["import:x", "import:y"]
    assert "2 rows" in at.caption[0].value


def test_users_page_adds_an_invited_user_and_changes_roles(app_db):
    db_path, admin, _ = app_db
    at = page("users", admin.id).run()
    assert not at.exception
    assert at.dataframe[0].value["username"].tolist() == ["rita", "root"]
    at.text_input(key="users_new_name").input("ann")
    at.button(key="users_add").click().run()
    assert not at.exception and not at.error
    url = at.code[0].value
    assert "?invite=" in url
    with connection.open_db(db_path) as db:
        assert users.redeem_invite(db, url.split("?invite=")[1]).username == "ann"

    at.selectbox(key="users_manage").set_value("rita").run()
    at.selectbox(key="users_role").set_value("admin")
    at.button(key="users_change_role").click().run()
    with connection.open_db(db_path) as db:
        assert users.get_user(db, "rita").role == "admin"

    at.selectbox(key="users_manage").set_value("ann").run()
    at.button(key="users_revoke_invite").click().run()
    with connection.open_db(db_path) as db, pytest.raises(Exception, match="not valid"):
        users.redeem_invite(db, url.split("?invite=")[1])

    at.selectbox(key="users_manage").set_value("ann").run()
    at.checkbox(key="users_confirm").check().run()
    at.button(key="users_delete").click().run()
    with connection.open_db(db_path) as db:
        assert [u["username"] for u in users.list_users(db)] == ["rita", "root"]


@pytest.mark.parametrize("name", ["users"])
def test_a_researcher_opening_an_admin_page_is_refused(app_db, name):
    _, _, researcher = app_db
    at = page(name, researcher.id).run()
    assert at.error[0].value == "Users is not available to the researcher role."
    assert len(at.dataframe) == 0 and len(at.text_input) == 0


@pytest.mark.parametrize("name", ["projects", "data", "export", "users"])
def test_every_foundation_page_asks_an_anonymous_visitor_to_log_in(db_path, monkeypatch, name):
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT).run()
    assert at.warning[0].value == "Please log in first."
    assert len(at.dataframe) == 0


def test_an_annotator_cannot_open_the_data_page(app_db):
    db_path, _, _ = app_db
    with connection.open_db(db_path) as db:
        annotator = users.add_user(db, "ann", role="annotator")
    at = page("data", annotator.id).run()
    assert at.error[0].value == "Data is not available to the annotator role."
