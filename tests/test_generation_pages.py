"""The Seeds, Generate and Review pages, each run on its own with AppTest on a temporary database against the
fake LLM server (job launches are recorded and then run in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import jobs
from core.generation import review, seeds, service
from core.projects import get_project
from db import items as items_db
from tests.fake_llm import FakeLLMServer, varied_text
from tests.generation_helpers import make_project, queue_job
from tests.page_helpers import researcher_app as _app
from tests.page_helpers import shown

ROOT = Path(__file__).resolve().parent.parent
GEN_POS = ('Write one text whose label is "pos" (a favourable review). Use at most 50 words. Reply with the text '
           "only: no title, no label, no explanation.")


@pytest.fixture
def server():
    with FakeLLMServer(reply=lambda request, n: varied_text(n)) as fake:
        yield fake




def _by_label(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def test_seeds_page_pins_by_id_and_samples(db_path, fresh_db, monkeypatch) -> None:
    project = make_project(fresh_db, with_seeds=False)
    at = _app("seeds.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert [(m.label, m.value) for m in at.metric] == [("Seeds · pos", "0"), ("Seeds · neg", "0")]
    assert len(at.warning) == 2 and "label 'pos' has 0 seeds" in at.warning[0].value
    _by_label(at.text_input, "…or item ids to pin (imported ids or internal ids, comma-separated)").set_value(
        "pos-1, neg-2")
    at.button(key="FormSubmitter:seeds_pin_ids-Pin these ids").click().run()
    assert not at.exception
    assert seeds.seed_counts(fresh_db, project.id) == {"pos": 1, "neg": 1}
    assert [m.value for m in at.metric] == ["1", "1"]
    _by_label(at.text_input, "…or item ids to pin (imported ids or internal ids, comma-separated)").set_value("zzz")
    at.button(key="FormSubmitter:seeds_pin_ids-Pin these ids").click().run()
    assert "no item 'zzz' in this project" in shown(at.error[0].value)
    _by_label(at.number_input, "Seeds per label").set_value(3)
    at.button(key="FormSubmitter:seeds_sample-Sample seeds").click().run()
    assert not at.exception
    assert seeds.seed_counts(fresh_db, project.id) == {"pos": 3, "neg": 3}
    assert at.success[0].value == "Added 4 seed(s): pos 3, neg 3"
    assert not at.warning  # three seeds per label meet the default three examples per prompt


def test_generate_page_previews_tests_the_connection_and_starts_a_job(db_path, fresh_db, monkeypatch, launched,
                                                                      server) -> None:
    project = make_project(fresh_db)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    code = [c.value for c in at.code]
    assert "You are a movie reviewer." in code and GEN_POS in code  # zero-shot preview, before any call
    assert 'Write texts whose label is "pos" (a favourable review), as a numbered list.' in code  # list form
    assert any(c.startswith("1. ") and c.endswith("\n4.") for c in code)  # its seeds, for the model to continue
    assert any(c.startswith("Here are some real examples with their labels:") for c in code)
    assert server.completions == 0

    _by_label(at.selectbox, "Backend").set_value("openai").run()  # outside the form: the form redraws for it
    _by_label(at.text_input, "Model").set_value("fake-model")
    _by_label(at.text_input, "Base URL").set_value(server.base_url)
    _by_label(at.number_input, "Texts per label (target)").set_value(2)
    at.button(key="FormSubmitter:generate_settings-Test connection").click().run()
    assert not at.exception
    assert at.success[0].value.startswith(f"connected to {server.base_url}: model 'fake-model' answered in")

    _by_label(at.text_input, "Model").set_value("")
    at.button(key="FormSubmitter:generate_settings-Start generation").click().run()
    assert at.error[0].value.startswith("the openai backend needs a model name")
    assert launched == []

    _by_label(at.text_input, "Model").set_value("fake-model")
    at.button(key="FormSubmitter:generate_settings-Start generation").click().run()
    assert not at.exception and len(launched) == 1
    db_file, job_id = launched[0]
    assert at.success[0].value == f"Generation job {job_id} started: follow it in the Jobs tab."
    jobs.run(str(db_path), job_id)
    assert len(items_db.items_frame(fresh_db, project.id, source="synthetic")) == 4
    assert db_file == str(db_path)

    at.run()
    assert not at.exception
    assert [p.value for p in at.get("progress")] and _by_label(at.metric, "Accepted").value == "4"
    at.button(key="FormSubmitter:generate_settings-Save as project defaults").click().run()
    assert service.saved_options(get_project(fresh_db, project.id))["model"] == "fake-model"


def test_generate_page_saves_and_validates_templates(db_path, fresh_db, monkeypatch) -> None:
    project = make_project(fresh_db)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    _by_label(at.text_area, "Diversity").set_value("Be {creative}")
    at.button(key="FormSubmitter:generate_templates-Save templates").click().run()
    assert "prompt template 'diversity' uses unknown placeholder {creative}" in shown(at.error[0].value)
    _by_label(at.text_area, "Diversity").set_value("Something else, please.")
    at.button(key="FormSubmitter:generate_templates-Save templates").click().run()
    assert not at.exception
    assert get_project(fresh_db, project.id).settings["prompt_templates"] == {"diversity": "Something else, please."}


def test_review_page_sends_to_annotation_and_edits(db_path, fresh_db, monkeypatch, server) -> None:
    project = make_project(fresh_db)
    job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
    jobs.run(str(db_path), job_id)
    at = _app("review.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 4
    at.radio(key="review_scope").set_value("all shown").run()
    _by_label(at.button, "Send to annotation (4)").click().run()
    assert not at.exception
    assert review.synthetic_items(fresh_db, project.id, in_pool=True)["id"].tolist() == [7, 8, 9, 10]
    first_text = items_db.get_item(fresh_db, 7)["text"]
    assert first_text in [c.value for c in at.code]
    at.text_area(key="review_edit_7").set_value("A rewritten review about a harbour at dawn.")
    at.button(key="FormSubmitter:review_edit-Save text").click().run()
    assert not at.exception
    assert items_db.get_item(fresh_db, 7)["text"] == "A rewritten review about a harbour at dawn."
    at.selectbox(key="review_status").set_value("rejected").run()
    assert "No synthetic items match" in at.info[0].value


def test_review_page_opens_the_row_that_is_selected(db_path, fresh_db, monkeypatch, server) -> None:
    project = make_project(fresh_db)
    jobs.run(str(db_path), queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2))
    at = _app("review.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    ids = at.dataframe[0].value["id"].tolist()
    assert len(ids) == 4 and at.selectbox(key="review_item_pick").value == ids[0]

    def opened() -> tuple[int, str]:
        return at.selectbox(key="review_item_pick").value, at.code[0].value

    at.session_state["review_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert opened() == (ids[2], items_db.get_item(fresh_db, ids[2])["text"])
    at.session_state["review_table"] = {"selection": {"rows": [2, 3], "columns": [], "cells": []}}
    at.run()
    assert opened() == (ids[3], items_db.get_item(fresh_db, ids[3])["text"])  # the row just selected
    at.selectbox(key="review_item_pick").set_value(ids[0]).run()  # the picker still opens any row shown
    assert opened() == (ids[0], items_db.get_item(fresh_db, ids[0])["text"])
    at.session_state["review_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()  # row 3 unselected: the open row stays open
    assert opened() == (ids[0], items_db.get_item(fresh_db, ids[0])["text"])
