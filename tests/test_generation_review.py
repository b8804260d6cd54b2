"""Review of synthetic items (provenance, accept/reject, edit, send to annotation) and the LLM annotator."""

from __future__ import annotations

import json

import pytest

from core import jobs as core_jobs
from core.data.text import text_hash
from core.errors import NotFoundError, SynthloopError
from core.generation import llm_annotator, review
from core.generation.jobs import run_generation
from core.generation.llm_annotator import LLMAnnotatorConfig, build_messages, parse_label
from core.projects import get_project
from db import items as items_db
from tests.fake_llm import FakeLLMServer, last_user_message, varied_text
from tests.generation_helpers import fake_options, make_project, queue_job


@pytest.fixture
def generated(fresh_db, db_path):
    project = make_project(fresh_db)
    with FakeLLMServer(reply=lambda request, n: varied_text(n)) as server:
        job_id = queue_job(fresh_db, project.id, server, mode="few-shot", per_label=2, concurrency=1,
                           temperature=0.5)
        run_generation(str(db_path), job_id)
    return project, job_id


def test_synthetic_items_carry_provenance(fresh_db, generated) -> None:
    project, job_id = generated
    table = review.synthetic_items(fresh_db, project.id, job_id=job_id)
    assert len(table) == 4 and list(table.columns) == review.REVIEW_COLUMNS
    assert set(table["model"]) == {"fake-model"} and set(table["mode"]) == {"few-shot"}
    assert set(table["temperature"]) == {0.5} and set(table["generation_job_id"]) == {job_id}
    assert list(review.synthetic_items(fresh_db, project.id, label="neg")["reference_label"]) == ["neg", "neg"]
    info = review.provenance(fresh_db, project.id, int(table["id"][0]))
    assert info.text == table["text"][0] and info.job_id == job_id and info.mode == "few-shot"
    assert info.raw_output == info.text
    assert [m["role"] for m in info.messages] == ["system", "user"]
    assert len(info.seeds) == 3 and all(s.text in info.messages[1]["content"] for s in info.seeds)
    assert info.config["temperature"] == 0.5 and "api_key" not in json.dumps(info.config).replace(
        "api_key_env", "")
    with pytest.raises(NotFoundError, match="no synthetic item"):
        review.provenance(fresh_db, project.id, 1)  # a real item


def test_accept_reject_and_send_to_annotation(fresh_db, generated) -> None:
    project, _ = generated
    ids = [int(i) for i in review.synthetic_items(fresh_db, project.id)["id"]]
    real_id = 1
    assert review.set_review_status(fresh_db, project.id, [*ids[:2], real_id], "rejected") == 2  # real items untouched
    assert review.send_to_annotation(fresh_db, project.id, ids[2:]) == 2
    with pytest.raises(SynthloopError, match=f"item {ids[0]} is rejected: accept it before sending it to annotation"):
        review.send_to_annotation(fresh_db, project.id, ids[:1])
    table = review.synthetic_items(fresh_db, project.id)
    assert dict(zip(table["id"], table["review_status"], strict=True)) == {
        ids[0]: "rejected", ids[1]: "rejected", ids[2]: "accepted", ids[3]: "accepted"}
    assert list(review.synthetic_items(fresh_db, project.id, in_pool=True)["id"]) == ids[2:]
    review.send_to_annotation(fresh_db, project.id, ids[2:3], in_pool=False)
    review.set_review_status(fresh_db, project.id, ids[3:], "rejected")  # rejecting also leaves the pool
    assert review.synthetic_items(fresh_db, project.id, in_pool=True).empty
    with pytest.raises(SynthloopError, match="review status 'maybe' is not valid"):
        review.set_review_status(fresh_db, project.id, ids, "maybe")


def test_edit_rehashes_keeps_the_original_and_refuses_duplicates(fresh_db, generated) -> None:
    project, _ = generated
    ids = [int(i) for i in review.synthetic_items(fresh_db, project.id)["id"]]
    original = items_db.get_item(fresh_db, ids[0])["text"]
    review.edit_text(fresh_db, project.id, ids[0], "  An edited,\n better text.  ")
    item = items_db.get_item(fresh_db, ids[0])
    assert item["text"] == "An edited, better text." and item["text_hash"] == text_hash("An edited, better text.")
    review.edit_text(fresh_db, project.id, ids[0], "Edited twice.")
    assert json.loads(items_db.get_item(fresh_db, ids[0])["meta"])["original_text"] == original
    assert review.synthetic_items(fresh_db, project.id)["edited"].tolist() == [True, False, False, False]
    with pytest.raises(SynthloopError, match="the new text duplicates item 1: change it or reject this item"):
        review.edit_text(fresh_db, project.id, ids[1], "A warm and funny film about two sisters running a bakery!")
    with pytest.raises(SynthloopError, match="the new text is empty"):
        review.edit_text(fresh_db, project.id, ids[1], "  ")


@pytest.mark.parametrize(("reply", "label"), [
    ("pos", "pos"), (" NEG.", "neg"), ("Label: pos", "pos"), ("The answer is **neg**", "neg"),
    ("I think it is neg, not pos", "neg"), ("positive", None), ("", None), (None, None), ("neg-ative", None),
])
def test_parse_label(reply, label) -> None:
    assert parse_label(reply, ("pos", "neg")) == label


def test_annotator_prompt_names_the_labels_with_descriptions() -> None:
    config = LLMAnnotatorConfig(labels=("pos", "neg"), label_descriptions={"pos": "a favourable review"},
                                task="movie reviews")
    assert build_messages(config, " Great film ") == [
        {"role": "system", "content": "You are a careful annotator for a text classification task: movie reviews."},
        {"role": "user", "content": "Classify the text into exactly one of these labels:\n- pos: a favourable review\n"
                                    "- neg\n\nAnswer with the label name only.\n\nText: Great film\nLabel:"},
    ]
    assert config.annotator == "llm:SmolLM2-135M-Instruct"


def test_llm_annotator_labels_the_pool_as_its_own_annotator(fresh_db, db_path, generated) -> None:
    project, _ = generated
    ids = [int(i) for i in review.synthetic_items(fresh_db, project.id)["id"]]
    review.send_to_annotation(fresh_db, project.id, ids)

    def answer(request, n):
        text = last_user_message(request)
        return "I cannot tell" if n == 0 else ("pos" if "ember" in text else "Label: neg")

    with FakeLLMServer(reply=answer) as server:
        options = {k: v for k, v in fake_options(server).items() if k in ("backend", "model", "base_url",
                                                                          "max_retries")}
        llm_annotator.save_settings(fresh_db, project.id, **options)
        assert llm_annotator.settings(get_project(fresh_db, project.id)) == {
            "backend": "openai", "model": "fake-model", "base_url": server.base_url, "api_key_env": "OPENAI_API_KEY",
            "temperature": 0.0, "concurrency": 4, "selection": "pool", "instruction_variant": "", "instruction": ""}
        job_id = llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, selection="pool")
        job = core_jobs.run(str(db_path), job_id)
    assert job["status"] == "done"
    assert job["result"]["labelled"] == 3 and job["result"]["unparsed"] == 1
    annotations = items_db.annotations_frame(fresh_db, project.id)
    assert set(annotations["annotator"]) == {"llm:fake-model"} and len(annotations) == 3
    assert set(annotations["item_id"]) <= set(ids) and set(annotations["label"]) <= {"pos", "neg"}
    with pytest.raises(SynthloopError, match="the openai backend needs a model name"):
        llm_annotator.start_llm_annotation(fresh_db, project.id, launch=False, backend="openai", model="")
