"""Annotate, Agreement and Annotation pool pages, each run on its own with AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import projects, users
from core.agreement.project import final_labels, project_agreement
from core.annotation.assignment import submit_label
from core.annotation.pool import set_pool
from core.data.text import text_hash
from core.errors import SynthloopError
from db import connection, transaction
from db import items as items_db
from db import projects as projects_db
from pages._common import PROJECT_ID, USER_ID, escape_markdown
from tests.page_helpers import shown

ROOT = Path(__file__).resolve().parent.parent
PAGE = {name: str(ROOT / "pages" / f"{name}.py") for name in ("annotate", "agreement", "pool")}


@pytest.fixture
def app_db(db_path, monkeypatch):
    """A project with 2 real test items and 2 synthetic items (intended label 'neg'), all in the pool; 'bob' has
    labelled the first synthetic item; users ann (annotator) and res (researcher)."""
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "demo", projects.parse_labels("pos,neg,neu"), overlap=2,
                                          guidelines="Label the **sentiment**.")
        texts = [("great <b>film</b>", "real", "test", None), ("dull film", "real", "test", None),
                 ("SYNTH one", "synthetic", "train", "neg"), ("SYNTH two", "synthetic", "train", "neg")]
        with transaction(db):
            ids = items_db.insert_items(db, project.id, [
                {"text": t, "text_hash": text_hash(t), "source": s, "split": sp, "reference_label": ref,
                 **({"generation_job_id": 1, "generation_mode": "few-shot"} if s == "synthetic" else {})}
                for t, s, sp, ref in texts
            ])
            items_db.insert_annotations(db, [{"item_id": ids[2], "annotator": "bob", "label": "pos"}])
        set_pool(db, project.id)
        annotator = users.add_user(db, "ann", role="annotator", password="annotator-pw")
        researcher = users.add_user(db, "res", role="researcher", password="researcher-pw")
        projects.add_member(db, project.id, annotator.id)
    return {"path": db_path, "project": project, "ids": ids, "annotator": annotator, "researcher": researcher}


def _page(name: str, user_id: int, project_id: int) -> AppTest:
    at = AppTest.from_file(PAGE[name], default_timeout=60)
    at.session_state[USER_ID] = user_id
    at.session_state[PROJECT_ID] = project_id
    return at.run()


def _visible_text(at: AppTest) -> str:
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "success", "warning",
                 "error", "code"):
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [str(b.label) for b in at.button] + [f"{m.label} {m.value}" for m in at.metric]
    parts += [element.proto.text for element in at.get("progress")]
    return "\n".join(parts)


def test_annotate_page_is_blind_and_a_click_stores_the_label(app_db) -> None:
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    assert not at.exception
    shown = _visible_text(at)
    # closest to completion first: the synthetic item bob labelled (1 of 2 labels)
    assert [t.value for t in at.text] == ["SYNTH one"]
    for hidden in ("synthetic", "real", "train", "test", "bob", "intended", "reference", "few-shot"):
        assert hidden not in shown.lower().replace("synth one", ""), hidden
    assert "0 of 4 labelled by you" in shown
    labels = {b.label: b.proto.shortcut for b in at.button if b.key and b.key.startswith("label_")}
    assert labels == {"pos": "1", "neg": "2", "neu": "3"}  # Streamlit shows the key on each button
    at.button(key="unsure_1").click().run()
    at.text_input[0].input("hard one")
    at.button(key="label_neg").click().run()
    assert not at.exception
    with connection.open_db(app_db["path"]) as db:
        rows = db.execute("SELECT item_id, annotator, label, unsure, comment FROM annotation WHERE annotator = 'ann'"
                          ).fetchall()
    assert rows == [(app_db["ids"][2], "ann", "neg", 1, "hard one")]
    assert "1 of 4 labelled by you" in _visible_text(at)
    assert [t.value for t in at.text] != ["SYNTH one"]  # moved on to the next item


def test_annotate_page_shows_item_text_escaped_and_goes_back_to_edit(app_db) -> None:
    with connection.open_db(app_db["path"]) as db:
        submit_label(db, projects.get_project(db, "demo"), "ann", app_db["ids"][0], "pos")
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    at.button(key=next(b.key for b in at.button if b.label.startswith("Back"))).click().run()
    assert [t.value for t in at.text] == ["great <b>film</b>"]  # plain text, tags shown as typed
    assert "your label: **pos**" in _visible_text(at)
    at.button(key="label_neu").click().run()
    with connection.open_db(app_db["path"]) as db:
        assert db.execute("SELECT label FROM annotation WHERE annotator = 'ann'").fetchall() == [("neu",)]


def test_agreement_page_shows_alpha_and_adjudicates(app_db) -> None:
    with connection.open_db(app_db["path"]) as db:
        project = projects.get_project(db, "demo")
        for item_id, label in ((app_db["ids"][2], "neg"), (app_db["ids"][3], "neg")):
            submit_label(db, project, "ann", item_id, label)
        submit_label(db, project, "res", app_db["ids"][3], "neg")
        submit_label(db, project, "res", app_db["ids"][0], "pos")
        submit_label(db, project, "ann", app_db["ids"][0], "neu")
    at = _page("agreement", app_db["researcher"].id, app_db["project"].id)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    # pairable items: SYNTH one (pos, neg), SYNTH two (neg, neg), great film (pos, neu)
    with connection.open_db(app_db["path"]) as db:
        report = project_agreement(db, projects.get_project(db, "demo"))
    assert metrics["Krippendorff's alpha"] == f"{report.krippendorff_alpha:.3f}"
    assert metrics["Items with ≥ 2 labels"] == "3"
    assert "Label fidelity (synthetic)" in metrics
    assert metrics["Label fidelity (synthetic)"] == "50.0%"  # SYNTH two matches; SYNTH one is a tie
    assert len(at.get("vega_lite_chart")) == 1  # the histogram
    at.selectbox[0].set_value(app_db["ids"][0])
    at.radio[0].set_value("neu")
    at.button(key=next(b.key for b in at.button if b.label == "Set final label")).click().run()
    with connection.open_db(app_db["path"]) as db:
        final = final_labels(db, app_db["project"].id)
    assert final.loc[app_db["ids"][0], "final_label"] == "neu"


def test_an_annotator_is_refused_the_agreement_and_pool_pages(app_db) -> None:
    for name in ("agreement", "pool"):
        at = _page(name, app_db["annotator"].id, app_db["project"].id)
        assert [e.value for e in at.error] == [f"{'Agreement' if name == 'agreement' else 'Annotation pool'}"
                                               " is not available to the annotator role."]
        assert not at.metric


def test_pool_page_removes_and_adds_items(app_db) -> None:
    at = _page("pool", app_db["researcher"].id, app_db["project"].id)
    assert {m.label: m.value for m in at.metric}["Items in the pool"] == "4"
    at.radio[0].set_value("synthetic")
    at.button(key=next(b.key for b in at.button if b.label == "Remove from pool")).click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Items in the pool"] == "2"


def test_agreement_page_shows_intra_annotator_consistency_of_repeated_ratings(app_db) -> None:
    from core.data.importer import ImportSpec, import_file

    at = _page("agreement", app_db["researcher"].id, app_db["project"].id)
    assert "No repeated ratings" in _visible_text(at)
    with connection.open_db(app_db["path"]) as db:
        # x rates a twice (pos, neg) and b twice (neu, neu); y rates b twice (pos, pos): alpha 6/11.
        import_file(db, app_db["project"].id, b"id,text,annotator,label\na,A,x,pos\na,A,y,pos\na,A,x,neg\n"
                    b"b,B,x,neu\nb,B,y,pos\nb,B,x,neu\nb,B,y,pos\n",
                    ImportSpec(id_col="id", annotator_col="annotator", annotation_col="label"), filename="r.csv")
    at = _page("agreement", app_db["researcher"].id, app_db["project"].id)
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert [metrics[k] for k in ("Repeat pairs", "Annotators with repeats", "Same label", "Intra-annotator alpha")
            ] == ["3", "2", "66.7%", "0.545"]


# ------------------------------------------------------------------------------ issue 12, item 5: the page helps

EVIL_NAME = "![p](http://evil.example/p.png) **demo**"
EVIL_LABEL = "![l](http://evil.example/l.png)"
EVIL_DESCRIPTION = "*really* [bad](http://evil.example/d) <img src=x>"


def _keys(at: AppTest) -> set[str]:
    return {w.key for kind in ("button", "text_input", "checkbox") for w in getattr(at, kind) if w.key}


def test_names_and_label_descriptions_are_shown_as_the_characters_they_are(app_db) -> None:
    """Markdown in a project or label name or description is never rendered for an annotator: an image link in a
    label name made every annotator's browser fetch it. Descriptions show beside the buttons, not in a tooltip."""
    with connection.open_db(app_db["path"]) as db:
        projects.update_project(db, app_db["project"].id, name=EVIL_NAME, labels=[
            projects.LabelSpec(EVIL_LABEL, EVIL_DESCRIPTION, "1"), projects.LabelSpec("pos", "", "4"),
            projects.LabelSpec("neg", "", "2"), projects.LabelSpec("neu", "neither", "3")])
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    assert not at.exception
    assert at.title[0].value == escape_markdown(EVIL_NAME)
    buttons = [b for b in at.button if b.key and b.key.startswith("label_")]
    assert [b.label for b in buttons] == [escape_markdown(EVIL_LABEL), "pos", "neg", "neu"]
    assert [b.help for b in buttons] == ["", "", "", ""]  # beside the button, not only in a tooltip
    captions = [c.value for c in at.caption]
    assert captions[0].startswith("A skipped item leaves your queue")  # the guidelines' skip rule
    assert captions[1:] == [escape_markdown(EVIL_DESCRIPTION), "neither"]  # under the buttons, in their order
    guideline_lines = [m.value for m in at.markdown if "(key " in m.value]
    assert [shown(line) for line in guideline_lines] == [f"**{EVIL_LABEL}** (key 1): {EVIL_DESCRIPTION}",
                                                         "**pos** (key 4): —", "**neg** (key 2): —",
                                                         "**neu** (key 3): neither"]
    assert guideline_lines[0] == f"**{escape_markdown(EVIL_LABEL)}** (key 1): {escape_markdown(EVIL_DESCRIPTION)}"


def test_unsure_back_and_forward_have_shortcuts_that_no_label_key_can_take(app_db) -> None:
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    shortcuts = {b.key: b.proto.shortcut for b in at.button}
    assert shortcuts == {"label_pos": "1", "label_neg": "2", "label_neu": "3", "unsure_1": "u",
                         "nav_back": "left", "nav_skip": "s"}
    at.button(key="label_pos").click().run()
    at.button(key="nav_back").click().run()  # reviewing my last label: Forward appears
    assert {b.key: b.proto.shortcut for b in at.button if b.key.startswith("nav_")} == {
        "nav_back": "left", "nav_forward": "right", "nav_newest": ""}
    # No label can take a key of the page's own (nor an arrow, nor Streamlit's c and r) ...
    with connection.open_db(app_db["path"]) as db:
        for key in ("u", "S", "left", "r", "?"):
            with pytest.raises(SynthloopError, match=rf"^keyboard key {re.escape(repr(key))} is not usable: use one"
                                                     r" letter or digit other than c, r, s, u \(the app and the"
                                                     r" Annotate page use those\)$"):
                projects.create_project(db, "x", projects.parse_label_lines(f"pos | | {key}"))
    # ... and a project saved before they were reserved keeps its label key: the page leaves Unsure without one.
    with connection.open_db(app_db["path"]) as db, transaction(db):
        projects_db.replace_labels(db, app_db["project"].id, [{"name": "pos", "key": "u"}, {"name": "neg", "key": "2"},
                                                              {"name": "neu", "key": "3"}])
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    shortcuts = {b.key: b.proto.shortcut for b in at.button}
    assert (shortcuts["label_pos"], shortcuts["unsure_1"], shortcuts["nav_back"]) == ("u", "", "left")


def test_widget_keys_carry_no_item_id(app_db) -> None:
    """Keys reach the browser (in element ids): they are numbered per session, never by item id."""
    at = _page("annotate", app_db["annotator"].id, app_db["project"].id)
    assert _keys(at) == {"label_pos", "label_neg", "label_neu", "unsure_1", "comment_1", "nav_back", "nav_skip"}
    at.button(key="unsure_1").click().run()
    assert at.button(key="unsure_1").icon == ":material/check_box:"
    at.button(key="label_neg").click().run()
    assert _keys(at) == {"label_pos", "label_neg", "label_neu", "unsure_2", "comment_2", "nav_back", "nav_skip"}
    assert at.button(key="unsure_2").icon == ":material/check_box_outline_blank:"  # a new item starts sure
    with connection.open_db(app_db["path"]) as db:
        assert db.execute("SELECT label, unsure FROM annotation WHERE annotator = 'ann'").fetchall() == [("neg", 1)]


def test_an_annotator_sees_only_the_projects_assigned_to_them(app_db) -> None:
    with connection.open_db(app_db["path"]) as db:
        other = projects.create_project(db, "other", projects.parse_labels("a,b"))
        annotator, researcher = app_db["annotator"], app_db["researcher"]
        assert [p["name"] for p in projects.visible_projects(db, annotator)] == ["demo"]
        assert [p["name"] for p in projects.visible_projects(db, researcher)] == ["demo", "other"]
        newcomer = users.add_user(db, "new", role="annotator", password="a long password")
        assert projects.visible_projects(db, newcomer) == []
    # Opening a project that is not theirs (a stale session, a crafted address) shows nothing of it.
    at = _page("annotate", annotator.id, other.id)
    assert [shown(e.value) for e in at.error] == [
        "you are not assigned to the project 'other': ask a researcher to add you to it"]
    assert not at.text and not at.button
    with connection.open_db(app_db["path"]) as db:
        assert db.execute("SELECT COUNT(*) FROM reservation").fetchone()[0] == 0  # nothing was handed out
    # With no project assigned at all, the page says so.
    at = AppTest.from_file(PAGE["annotate"], default_timeout=60)
    at.session_state[USER_ID] = newcomer.id
    at.run()
    assert [i.value for i in at.info] == [
        "No project is assigned to you yet: a researcher adds you to one, then it appears here."]
    # A lost assignment counts at the next click, even though a click re-runs only the item's fragment.
    at = _page("annotate", annotator.id, app_db["project"].id)
    with connection.open_db(app_db["path"]) as db:
        projects.remove_member(db, app_db["project"].id, annotator.id)
    at.button(key="label_pos").click().run()
    assert [shown(e.value) for e in at.error] == [
        "you are not assigned to the project 'demo': ask a researcher to add you to it"]
    with connection.open_db(app_db["path"]) as db:
        assert db.execute("SELECT COUNT(*) FROM annotation WHERE annotator = 'ann'").fetchone()[0] == 0


def test_a_researcher_assigns_annotators_on_the_projects_page(app_db) -> None:
    with connection.open_db(app_db["path"]) as db:
        users.add_user(db, "bea", role="annotator", password="a long password")
    at = AppTest.from_file(str(ROOT / "pages" / "projects.py"), default_timeout=60)
    at.session_state[USER_ID] = app_db["researcher"].id
    at.session_state[PROJECT_ID] = app_db["project"].id
    at.run()
    picker = at.multiselect(key=f"projects_members_{app_db['project'].id}")
    assert picker.options == ["ann", "bea"] and picker.value == ["ann"]
    picker.set_value(["bea"])
    at.button(key="projects_members_save").click().run()
    assert not at.exception
    with connection.open_db(app_db["path"]) as db:
        assert [m["username"] for m in projects.members(db, app_db["project"].id)] == ["bea"]
