"""The Seeds, Generate and Review pages, each run on its own with AppTest on a temporary database against the
fake LLM server (job launches are recorded and then run in this process)."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import jobs
from core.generation import review, seeds, service
from core.generation.config import GenerationConfig
from core.projects import get_project
from db import items as items_db
from db import jobs as jobs_db
from pages._common import PROJECT_ID, USER_ID
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


# --- the Generate page shows current state (issue 11, item 12) -----------------------------------------------

START = "FormSubmitter:generate_settings-Start generation"
SAVE = "FormSubmitter:generate_settings-Save as project defaults"


def _polled_fragments(monkeypatch) -> None:
    """Draw each ``st.fragment`` inside a tab named after its timer, so a test can see what a timed redraw of
    the fragment alone redraws (AppTest itself always reruns the whole page)."""
    real_fragment = st.fragment

    def fragment(func=None, *, run_every=None):
        def decorate(body):
            @functools.wraps(body)
            def framed(*args, **kwargs):
                (tab,) = st.tabs([f"fragment redrawn every {run_every} s"])
                with tab:
                    body(*args, **kwargs)
            return real_fragment(framed, run_every=run_every)
        return decorate(func) if func is not None else decorate

    monkeypatch.setattr(st, "fragment", fragment)


def test_generate_page_watches_the_job_it_just_started(db_path, fresh_db, monkeypatch, launched, server) -> None:
    project = make_project(fresh_db)
    earlier = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=1)
    jobs.run(str(db_path), earlier)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert at.selectbox(key="generate_job_pick").value == earlier
    _by_label(at.selectbox, "Backend").set_value("openai").run()
    _by_label(at.text_input, "Model").set_value("fake-model")
    _by_label(at.text_input, "Base URL").set_value(server.base_url)
    at.button(key=START).click().run()
    assert not at.exception and len(launched) == 1
    started = launched[0][1]
    assert at.selectbox(key="generate_job_pick").value == started
    assert "**Status:** queued · zero-shot · openai · fake-model" in [shown(m.value) for m in at.markdown]


def test_generate_jobs_table_and_eta_are_redrawn_by_the_polling_fragment(db_path, fresh_db, monkeypatch,
                                                                         server) -> None:
    _polled_fragments(monkeypatch)
    project = make_project(fresh_db)
    job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=2)
    assert jobs_db.claim_job(fresh_db, job_id, pid=os.getpid())  # running, in a live process (this one)
    jobs_db.update_progress(fresh_db, job_id, done=1, total=4, message="pos 1/2, neg 0/2", result={"eta_s": 42.0})
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    assert not at.exception
    (polled,) = [tab for tab in at.tabs if tab.label.startswith("fragment redrawn every")]
    assert polled.label == "fragment redrawn every 2 s"
    table = polled.dataframe[0].value
    assert table[["job_id", "status", "message"]].values.tolist() == [[job_id, "running", "pos 1/2, neg 0/2"]]
    assert _by_label(polled.metric, "ETA").value == "42 s"


def test_switching_backend_starts_model_and_base_url_afresh(db_path, fresh_db, monkeypatch) -> None:
    project = make_project(fresh_db)
    service.save_options(fresh_db, project.id, backend="openai", model="gpt-4o-mini", base_url="http://gpu:8000/v1")
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()

    def backend_fields() -> tuple[str, str, str]:
        return (_by_label(at.selectbox, "Backend").value, _by_label(at.text_input, "Model").value,
                _by_label(at.text_input, "Base URL").value)

    assert backend_fields() == ("openai", "gpt-4o-mini", "http://gpu:8000/v1")
    _by_label(at.selectbox, "Backend").set_value("transformers").run()
    assert backend_fields() == ("transformers", "", "")
    _by_label(at.text_input, "Model").set_value("/models/my-llm")
    _by_label(at.selectbox, "Backend").set_value("embedded").run()
    assert backend_fields() == ("embedded", "", "")
    _by_label(at.selectbox, "Backend").set_value("openai").run()
    assert backend_fields() == ("openai", "gpt-4o-mini", "http://gpu:8000/v1")  # the saved backend's own values
    assert not at.exception


def _cli_defaults() -> dict:
    return {f.name: f.default for f in dataclasses.fields(GenerationConfig) if f.default is not dataclasses.MISSING}


def test_generate_page_defaults_are_the_cli_defaults(db_path, fresh_db, monkeypatch, launched) -> None:
    project = make_project(fresh_db)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    cli = _cli_defaults()
    fields = {"Backend": "backend", "Model": "model", "Base URL": "base_url", "API key variable": "api_key_env",
              "Timeout per request (s)": "timeout_s", "Retries (429 / 5xx / network)": "max_retries",
              "Setting": "mode", "Texts per label (target)": "per_label", "Style (what to write)": "style",
              "Word limit": "word_limit", "Temperature": "temperature",
              "Few-shot: seeds per prompt (k)": "examples_per_prompt",
              "Zero-shot: diversity prompt every n outputs (0 = never)": "diversity_period",
              "Concurrent requests": "concurrency", "Max tokens per reply": "max_tokens",
              "Reject texts under (words)": "min_words", "Reject texts over (words)": "max_words",
              "Near-duplicate threshold (4-gram Jaccard)": "near_duplicate_threshold",
              "Seed-copy threshold": "seed_copy_threshold", "Price per 1k prompt tokens": "price_prompt_per_1k",
              "Price per 1k completion tokens": "price_completion_per_1k", "Random seed": "seed"}
    widgets = [*at.selectbox, *at.text_input, *at.number_input, *at.slider, *at.radio]
    shown_values = {label: _by_label(widgets, label).value for label in fields}
    assert shown_values == {label: cli[field] for label, field in fields.items()}
    # The fields whose default is "decided by the config" show as such.
    assert cli["prompt_form"] is None and _by_label(at.selectbox, "Few-shot prompt form").value == "auto"
    assert cli["conversation_turns"] is None and _by_label(at.number_input, "Turns per conversation (0 = auto)").value == 0
    assert cli["requests_per_minute"] is None
    assert _by_label(at.number_input, "Requests per minute (0 = no limit)").value == 0.0

    # Saved project defaults keep "auto" as auto; an "auto" picked over a saved form means auto for the job.
    at.button(key=SAVE).click().run()
    assert service.saved_options(get_project(fresh_db, project.id))["prompt_form"] is None
    _by_label(at.selectbox, "Few-shot prompt form").set_value("chat")
    at.button(key=SAVE).click().run()
    assert service.saved_options(get_project(fresh_db, project.id))["prompt_form"] == "chat"
    again = _app_again(at, db_path, project.id)
    assert _by_label(again.selectbox, "Few-shot prompt form").value == "chat"
    _by_label(again.selectbox, "Few-shot prompt form").set_value("auto")
    _by_label(again.radio, "Setting").set_value("few-shot")
    _by_label(again.number_input, "Texts per label (target)").set_value(1)
    again.button(key=START).click().run()
    assert not again.exception and len(launched) == 1
    assert service.job_summary(fresh_db, launched[0][1]).config["prompt_form"] == "list"  # embedded: list


def _app_again(at, db_path, project_id):
    """The same page opened afresh in a new session of the same user."""
    again = AppTest.from_file(str(ROOT / "pages" / "generate.py"), default_timeout=60)
    again.session_state[USER_ID] = at.session_state[USER_ID]
    again.session_state[PROJECT_ID] = project_id
    return again.run()


def test_resume_is_offered_only_for_a_job_below_its_target(db_path, fresh_db, monkeypatch, server) -> None:
    config = GenerationConfig(labels=("pos", "neg"), per_label=2)
    assert service.is_resumable("failed", config, {"pos": 2, "neg": 1})
    assert service.is_resumable("done", config, {"pos": 0})  # stopped when its call budget ran out
    assert not service.is_resumable("failed", config, {"pos": 2, "neg": 2})  # nothing left to generate
    assert not service.is_resumable("running", config, {"pos": 0, "neg": 0})
    assert not service.is_resumable("queued", config, {})

    project = make_project(fresh_db)
    job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=1)
    jobs.run(str(db_path), job_id)
    jobs_db.mark_failed(fresh_db, job_id, "the process was killed after its last text")  # failed, yet complete
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    summary = service.job_summary(fresh_db, job_id)
    assert (summary.status, summary.accepted, summary.active, summary.resumable) == ("failed", 2, False,
                                                                                               False)
    assert _by_label(at.button, "Resume job").disabled and _by_label(at.button, "Cancel job").disabled


def test_generate_page_starts_a_round_with_the_loops_levers(db_path, fresh_db, monkeypatch, launched,
                                                              server) -> None:
    project = make_project(fresh_db)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    _by_label(at.selectbox, "Backend").set_value("openai").run()
    _by_label(at.text_input, "Model").set_value("fake-model")
    _by_label(at.text_input, "Base URL").set_value(server.base_url)
    _by_label(at.checkbox, "Learn from people's verdicts on earlier rounds").check()
    _by_label(at.selectbox, "Grounding in real texts").set_value("retrieval")
    attributes = _by_label(at.text_area, "Attributes (JSON: lists of values, one of each sampled per call)")
    attributes.set_value('{"tone": ["calm"')
    at.button(key="FormSubmitter:generate_settings-Start generation").click().run()
    assert "the attributes text is not valid JSON" in shown(at.error[0].value) and launched == []

    attributes = _by_label(at.text_area, "Attributes (JSON: lists of values, one of each sampled per call)")
    attributes.set_value('{"tone": ["calm", "angry"]}')
    at.button(key="FormSubmitter:generate_settings-Start generation").click().run()
    assert not at.exception and len(launched) == 1
    config = service.job_summary(fresh_db, launched[0][1]).config
    assert (config["feedback"], config["grounding"], config["attributes"]) == (True, "retrieval",
                                                                               {"tone": ["calm", "angry"]})
    assert config["grounding_up_to_item"] == max(items_db.items_frame(fresh_db, project.id)["id"])
    # No earlier round was judged yet: the feedback preview says so, per label.
    frames = [f.value for f in at.dataframe]
    preview = next(f for f in frames if "examples (confirmed)" in f.columns)
    assert preview.to_dict("records") == [
        {"label": "pos", "label fidelity": None, "examples (confirmed)": 0, "counter-examples (contradicted)": 0,
         "target": 10},
        {"label": "neg", "label fidelity": None, "examples (confirmed)": 0, "counter-examples (contradicted)": 0,
         "target": 10}]


def test_llm_annotator_tab_adds_a_panel_member_with_its_own_instruction(db_path, fresh_db, monkeypatch, launched,
                                                                         server) -> None:
    project = make_project(fresh_db)
    job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=1)
    jobs.run(str(db_path), job_id)
    at = _app("generate.py", db_path, fresh_db, project.id, monkeypatch)
    at.run()
    _by_label(at.selectbox, "Backend ").set_value("openai")
    _by_label(at.text_input, "Model ").set_value("fake-model")
    _by_label(at.text_input, "Base URL ").set_value(server.base_url)
    _by_label(at.selectbox, "Items").set_value("synthetic")
    _by_label(at.text_area, "Instruction (blank: the built-in one)").set_value("Label: {text}\n{label_lines}")
    at.button(key="FormSubmitter:generate_llm_annotator-Label now").click().run()
    assert "an instruction of your own needs an “Instruction variant” name" in shown(at.error[0].value)
    assert launched == []
    _by_label(at.text_input, "Instruction variant (for a panel member with a prompt of its own)").set_value("terse")
    at.button(key="FormSubmitter:generate_llm_annotator-Label now").click().run()
    assert not at.exception and len(launched) == 1
    config = jobs_db.get_job(fresh_db, launched[0][1])["config"]
    assert (config["instruction_variant"], config["instruction"], config["selection"]) == (
        "terse", "Label: {text}\n{label_lines}", "synthetic")
