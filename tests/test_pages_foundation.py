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
from pages._common import DATA_TAB, PROJECT_ID, USER_ID
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


def test_data_page_imports_a_file_and_browses_items(app_db, tmp_path, monkeypatch):
    db_path, _, researcher = app_db
    monkeypatch.setenv("SYNTHLOOP_DATA_DIR", str(tmp_path))
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
    assert shown(at.success[0].value).startswith("imported 3 items and 0 annotations from 3 rows of 'sms.csv'")
    with connection.open_db(db_path) as db:
        items = items_db.items_frame(db, project.id)
    assert items["external_id"].tolist() == ["1", "2", "3"] and set(items["split"]) == {"test"}

    # Browse (its tab open: only the open tab reads): filters and counts; item text only inside a dataframe.
    at.session_state[DATA_TAB] = "Browse items"
    at.selectbox(key="browse_label").set_value("spam").run()
    browse = at.dataframe[-1].value
    assert browse["item_id"].tolist() == ["1", "3"]
    assert "<b>bold</b> claim" in browse["text"].tolist()
    assert at.metric[0].value == "2 of 3"
    at.text_input(key="browse_search").input("prize").run()
    assert at.dataframe[-1].value["item_id"].tolist() == ["1"]


def test_data_page_shows_import_errors_and_writes_nothing(app_db, tmp_path, monkeypatch):
    db_path, _, researcher = app_db
    monkeypatch.setenv("SYNTHLOOP_DATA_DIR", str(tmp_path))
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
    assert shown(at.error[0].value) == (f"file {str(tmp_path / 'nothing.csv')!r} not found in the data folder "
                                        f"{str(tmp_path)!r}: check the path")


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


def test_users_page_lists_a_user_in_the_run_that_adds_them(app_db):
    _, admin, _ = app_db
    at = page("users", admin.id).run()
    at.text_input(key="users_new_name").input("bea")
    at.selectbox(key="users_new_role").set_value("researcher")
    at.radio(key="users_new_access").set_value("Password")
    at.text_input(key="users_new_password").input("a long enough password")
    at.button(key="users_add").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value == "Added researcher 'bea'."
    table = at.dataframe[0].value
    assert table["username"].tolist() == ["bea", "rita", "root"]
    assert table.set_index("username").loc["bea", "role"] == "researcher"
    assert at.selectbox(key="users_manage").options == ["bea", "rita", "root"]


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


def test_data_page_draws_a_stratified_split_and_shows_counts_per_split_and_label(app_db):
    db_path, _, researcher = app_db
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "sms", projects.parse_labels("ham,spam"))
        rows = "".join(f"{n},text {n},{'ham' if n < 6 else 'spam'}\n" for n in range(10))
        import_file(db, project.id, ("id,text,label\n" + rows).encode(), ImportSpec(id_col="id", label_col="label"),
                    filename="d.csv")
    at = page("data", researcher.id, project.id)
    at.session_state[DATA_TAB] = "Split"
    at.run()
    assert not at.exception

    def counts_table():
        [table] = [d.value for d in at.dataframe if "test" in d.value.columns]
        return table

    assert counts_table().loc["ham"].tolist() == [6, 0, 0, 0] and counts_table().loc["all"].tolist() == [10, 0, 0, 0]
    at.number_input(key="split_test").set_value(0.5)
    at.number_input(key="split_dev").set_value(0.0)
    at.number_input(key="split_seed").set_value(3)
    at.button(key="split_draw").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value == "split real items: train 5, dev 0, test 5"
    table = counts_table()
    assert list(table.columns) == ["train", "dev", "test", "pool"]
    assert table.loc["ham"].tolist() == [3, 0, 3, 0] and table.loc["spam"].tolist() == [2, 0, 2, 0]
    with connection.open_db(db_path) as db:
        items = items_db.items_frame(db, project.id)
    assert items.groupby("reference_label")["split"].apply(lambda s: int((s == "test").sum())).to_dict() == {
        "ham": 3, "spam": 2}
    first_test = set(items.loc[items["split"] == "test", "external_id"])

    # A second draw needs the redraw box; with it, a new seed gives a new split of the same shape.
    at.number_input(key="split_dev").set_value(0.25)
    at.button(key="split_draw").click().run()
    assert shown(at.error[0].value) == (
        "the project already has 5 real dev/test items: set “Redraw the whole split” to draw the whole split again")
    at.checkbox(key="split_redraw").check()
    at.number_input(key="split_test").set_value(0.25)
    at.number_input(key="split_seed").set_value(4)
    at.button(key="split_draw").click().run()
    assert not at.error
    assert at.success[0].value == "split real items: train 4, dev 3, test 3"
    table = counts_table()
    assert table.loc["ham"].tolist() == [2, 2, 2, 0] and table.loc["spam"].tolist() == [2, 1, 1, 0]
    assert table.loc["all"].tolist() == [4, 3, 3, 0]
    with connection.open_db(db_path) as db:
        items = items_db.items_frame(db, project.id)
    assert set(items.loc[items["split"] == "test", "external_id"]) != first_test


def test_data_page_maps_label_codes_proposes_long_form_and_reports_conflicts(app_db, tmp_path, monkeypatch):
    db_path, _, researcher = app_db
    monkeypatch.setenv("SYNTHLOOP_DATA_DIR", str(tmp_path))
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "films", projects.parse_labels("pos,neg"))
    data = tmp_path / "long.csv"
    data.write_text("id,text,annotator,label\n1,good film,ann1,1\n1,good film,ann2,1\n2,bad film,ann1,0\n"
                    "2,bad film,ann2,1\n2,bad film,ann2,0\n")
    at = page("data", researcher.id, project.id).run()
    at.radio(key="data_origin").set_value("Path on the server").run()
    at.text_input(key="data_path").input(str(data)).run()
    assert not at.exception and not at.error
    # Ids repeat and 'annotator' changes within an id: long form is proposed, and 'label' is the annotators'
    # label column rather than a reference label.
    assert at.radio(key="data_raw_form").value == "Long form"
    assert at.selectbox(key="data_annotator_col").value == "annotator"
    assert at.selectbox(key="data_annotation_col").value == "label"
    assert at.selectbox(key="data_label_col").value == "(none)"
    assert any("looks like long form" in shown(info.value) for info in at.info)
    # The mapping editor: one select per distinct file value of the label columns.
    assert at.selectbox(key="data_map_0").options == ["(as in the file)", "pos", "neg"]
    at.selectbox(key="data_map_0").set_value("neg")
    at.selectbox(key="data_map_1").set_value("pos")
    assert at.selectbox(key="data_repeated_ratings").value == "last"
    at.button(key="data_import").click().run()
    assert not at.exception and not at.error
    assert "1 repeated rating" in shown(at.success[0].value)
    with connection.open_db(db_path) as db:
        annotations = items_db.annotations_frame(db, project.id)
    assert sorted(annotations["label"]) == ["neg", "neg", "pos", "pos"]  # ann2 on 2: the last rating (0 → neg)

    data.write_text("id,text,annotator,label\n1,good film,ann1,0\n")
    at.text_input(key="data_path").input(str(data)).run()
    at.radio(key="data_raw_form").set_value("Long form").run()
    at.selectbox(key="data_label_col").set_value("(none)")
    at.selectbox(key="data_map_0").set_value("neg")
    at.button(key="data_import").click().run()
    assert not at.error
    assert shown(at.warning[0].value).startswith("1 known id has another label in the file (conflicts, ids 1)")


@pytest.mark.parametrize("name", ["data", "export", "generate", "review", "seeds", "train"])
def test_a_project_name_with_markdown_is_shown_as_its_characters(app_db, name):
    """An image link in a project name must not become an <img> the reader's browser fetches."""
    db_path, _, researcher = app_db
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "![x](http://example.invalid/a.png)", projects.parse_labels("a,b"))
    at = page(name, researcher.id, project.id).run()
    assert not at.exception
    [title] = [t.value for t in at.title]
    assert "\\!\\[x\\]\\(http\\:" in title and shown(title).endswith("![x](http://example.invalid/a.png)")
