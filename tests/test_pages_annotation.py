"""Annotate, Agreement and Annotation pool pages, each run on its own with AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import projects, users
from core.agreement.project import final_labels, project_agreement
from core.annotation.assignment import submit_label
from core.annotation.pool import set_pool
from core.data.text import text_hash
from db import connection, transaction
from db import items as items_db
from pages._common import PROJECT_ID, USER_ID

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
