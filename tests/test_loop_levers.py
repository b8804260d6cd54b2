"""The loop's levers: MMR retrieval, attributes, counter-examples and per-label targets from people's verdicts, and a
feedback round end to end against the fake server (every call records what steered it)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import jobs as core_jobs
from core.agreement.metrics import human_verdicts
from core.errors import SynthloopError
from core.generation import prompts, review, rounds, service, steering
from core.generation.config import GenerationConfig, PromptTemplates, read_attributes
from core.generation.seeds import SeedExample
from core.vocab import HELD_OUT_SPLITS
from db import generation as gen_db
from db import items as items_db
from db import transaction
from tests.fake_llm import FakeLLMServer, varied_text
from tests.generation_helpers import make_project, queue_job
from tests.test_analysis import FakeEmbedder
from tests.training_helpers import add_items


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# --- retrieval ------------------------------------------------------------------------------------------


def test_mmr_trades_relevance_for_variety_as_lambda_says() -> None:
    query = unit(1, 0, 0)
    # a is the query itself; b is near a (cos 0.99); c is farther from both (cos 0.6).
    candidates = np.stack([unit(1, 0, 0), unit(0.99, np.sqrt(1 - 0.99**2), 0), unit(0.6, 0, 0.8)])
    # λ = 0.7: b scores 0.7·0.99 − 0.3·0.99 = 0.396 > c's 0.7·0.6 − 0.3·0.6 = 0.24.
    assert steering.mmr(query, candidates, k=2, trade_off=0.7) == [0, 1]
    # λ = 0.3: b scores −0.396 < c's −0.24: the varied text wins.
    assert steering.mmr(query, candidates, k=2, trade_off=0.3) == [0, 2]
    assert steering.mmr(query, candidates, k=1, trade_off=1.0) == [0]
    assert steering.mmr(query, candidates, k=5, trade_off=1.0) == [0, 1, 2]


def test_grounder_retrieves_the_sampled_query_first_then_its_mmr_neighbours() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0.99, 0.14, 0), unit(0.6, 0, 0.8), unit(0, 1, 0)])
    grounder = steering.Grounder([10, 11, 12, 13], ["a", "b", "c", "d"], vectors, k=2, candidates=3, trade_off=0.3)
    rng = random.Random(0)
    query_position = random.Random(0).randrange(4)
    picked = grounder.retrieve(rng)
    assert picked[0].item_id == 10 + query_position and len(picked) == 2
    if query_position == 0:  # nearest three of a: a, b, c; MMR at λ 0.3 takes c after a
        assert [p.item_id for p in picked] == [10, 12]


def test_the_query_is_a_real_text_of_the_calls_label_when_it_has_any() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1), unit(1, 1, 0)])
    grounder = steering.Grounder([1, 2, 3, 4], ["spam a", "ham b", "unlabelled c", "spam d"], vectors, k=1,
                                 candidates=1, trade_off=1.0, labels=["spam", "ham", None, "spam"])
    # With k = 1 and one candidate, the passage is the query itself.
    for seed in range(20):
        assert grounder.retrieve(random.Random(seed), "spam")[0].item_id in {1, 4}
        assert grounder.retrieve(random.Random(seed), "ham")[0].item_id == 2
    any_text = {grounder.retrieve(random.Random(seed), "other")[0].item_id for seed in range(40)}
    assert any_text == {1, 2, 3, 4}  # a label without real texts: any real text, labelled or not


def test_attributes_are_sampled_one_value_each_in_order() -> None:
    chosen = steering.sample_attributes({"topic": ["sports", "politics"], "length": ["short"]}, random.Random(1))
    assert list(chosen) == ["topic", "length"] and chosen["length"] == "short"
    assert chosen["topic"] in {"sports", "politics"}


@pytest.mark.parametrize(("content", "message"), [
    ('["a"]', "must be an object of lists"),
    ('{"topic": "sports"}', "attribute 'topic' must be a non-empty list"),
    ('{"topic": []}', "attribute 'topic' must be a non-empty list"),
    ('{"topic": ["x", "x"]}', "attribute 'topic' lists a value twice"),
    ('{"topic": ["x", 3]}', "attribute 'topic' has an empty or non-text value 3"),
    ('{"topic": ', "is not valid JSON"),
])
def test_bad_attribute_files_are_refused_with_the_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "attributes.json"
    path.write_text(content)
    with pytest.raises(SynthloopError, match=message):
        read_attributes(path)


def test_attribute_values_are_tidied() -> None:
    config = GenerationConfig(labels=("a",), attributes={" tone ": ["  very\ncalm "]})
    assert config.attributes == {"tone": ("very calm",)}


# --- prompts --------------------------------------------------------------------------------------------


def test_steering_text_goes_around_the_request_in_the_chat_form() -> None:
    config = GenerationConfig(labels=("spam", "ham"), mode="zero-shot", style="SMS", word_limit=20)
    lever = steering.Steering(
        retrieved=(SeedExample(1, "Call me  later", ""), SeedExample(2, "Free prize\nnow", "")),
        counter_examples=(SeedExample(9, "Are we still on for lunch?", "spam"),),
        attributes={"topic": "money", "tone": "urgent"})
    conversation = prompts.new_conversation(config, "spam")
    prompt = prompts.next_call(config, conversation, [], call_number=0, steering=lever)
    assert prompt.user_message == (
        "Here are real texts from the same setting:\n\n- Call me later\n- Free prize now\n\n"
        "Write in their domain (topic, tone, vocabulary), but do not copy or rewrite any of them.\n\n"
        'People judged these texts, written as "spam", to be something else. Do not write like them:\n\n'
        'Not a "spam" SMS: Are we still on for lunch?\n\n'
        'Write one SMS whose label is "spam". Use at most 20 words. '
        "Reply with the SMS only: no title, no label, no explanation.\n\n"
        "Give it these attributes: topic: money; tone: urgent.")
    assert prompt.steering is lever


def test_without_levers_the_prompts_are_the_papers() -> None:
    config = GenerationConfig(labels=("spam",), mode="few-shot", prompt_form="list")
    seeds = [SeedExample(1, "WIN a prize", "spam"), SeedExample(2, "Claim now", "spam")]
    plain = prompts.next_call(config, prompts.new_conversation(config, "spam"), seeds, call_number=3)
    assert plain.messages[0]["content"] == 'Write texts whose label is "spam", as a numbered list.'
    assert plain.steering == steering.NO_STEERING


def test_the_list_form_carries_the_levers_in_its_instruction() -> None:
    config = GenerationConfig(labels=("spam",), mode="few-shot", prompt_form="list")
    seeds = [SeedExample(1, "WIN a prize", "spam")]
    lever = steering.Steering(attributes={"length": "short"})
    prompt = prompts.next_call(config, prompts.new_conversation(config, "spam"), seeds, call_number=0, steering=lever)
    assert prompt.messages[0]["content"] == ('Write texts whose label is "spam", as a numbered list.\n\n'
                                             "Give it these attributes: length: short.")
    assert prompt.messages[1] == {"role": "assistant", "content": "1. WIN a prize\n2."}


def test_a_template_without_its_placeholder_is_refused() -> None:
    with pytest.raises(SynthloopError, match=r"the counter example template must contain \{text\}"):
        PromptTemplates(counter_example="Not this one")


# --- verdicts → feedback --------------------------------------------------------------------------------


def verdict_annotations() -> tuple[pd.DataFrame, pd.Series]:
    """Items 1–6: 1, 2, 3 intended pos; 4, 5, 6 intended neg. Humans h1–h3, and an LLM whose labels never count."""
    labels = {
        1: ["pos", "pos", "pos"],   # confirmed, a = 1
        2: ["pos", "pos", "neg"],   # confirmed, a = 2/3
        3: ["neg", "neg", "pos"],   # contradicted
        4: ["neg", "pos"],          # tie: neither
        5: ["pos", "pos", "pos"],   # contradicted, a = 1
        6: ["neg"],                 # one label: not judged (min_labels 2)
    }
    rows = [{"item_id": item, "annotator": f"h{i + 1}", "label": label}
            for item, values in labels.items() for i, label in enumerate(values)]
    rows += [{"item_id": item, "annotator": "llm:judge", "label": "neg"} for item in (1, 2)]
    intended = pd.Series({1: "pos", 2: "pos", 3: "pos", 4: "neg", 5: "neg", 6: "neg"})
    return pd.DataFrame(rows), intended


def test_verdicts_count_human_majorities_only() -> None:
    annotations, intended = verdict_annotations()
    verdicts = human_verdicts(annotations, intended, min_labels=2)
    assert list(verdicts.index) == [1, 2, 3, 4, 5]
    assert list(verdicts["confirmed"]) == [True, True, False, False, False]
    assert list(verdicts["contradicted"]) == [False, False, True, False, True]
    assert verdicts.loc[2, "instance_agreement"] == pytest.approx(2 / 3)


def test_feedback_picks_examples_by_agreement_counters_and_targets_by_fidelity() -> None:
    annotations, intended = verdict_annotations()
    verdicts = human_verdicts(annotations, intended, min_labels=2)
    config = GenerationConfig(labels=("pos", "neg"), mode="few-shot", prompt_form="chat", per_label=10, feedback=True,
                              feedback_min_agreement=0.6)
    # fidelity: pos 2 of 3 confirmed; neg 0 of 2 judged (the tie counts as not confirmed).
    feedback = rounds.select_feedback(verdicts, {"pos": 2 / 3, "neg": 0.0}, config)
    assert feedback.example_ids == {"pos": (1, 2)}
    assert feedback.counter_example_ids == {"pos": (3,), "neg": (5,)}
    assert feedback.label_targets == {"pos": 15, "neg": 40}  # ceil(10 / (2/3)); 4 × 10 at most
    stricter = config.replace(feedback_min_agreement=0.9, counter_examples_per_prompt=0)
    strict = rounds.select_feedback(verdicts, {"pos": 2 / 3}, stricter)
    assert strict.example_ids == {"pos": (1,)} and strict.counter_example_ids == {}
    assert strict.label_targets == {"pos": 15}
    zero_shot = rounds.select_feedback(verdicts, {}, config.replace(mode="zero-shot", prompt_form="chat"))
    assert zero_shot.example_ids == {} and zero_shot.label_targets == {}


@pytest.mark.parametrize(("fidelity", "target"), [(None, 10), (1.0, 10), (0.8, 13), (0.5, 20), (0.1, 40), (0.0, 40)])
def test_label_target(fidelity, target) -> None:
    assert rounds.label_target(10, fidelity) == target


# --- a feedback round end to end ------------------------------------------------------------------------


def label_of(request) -> str:
    content = request["messages"][-1]["content"]
    return "pos" if 'label is "pos"' in content else "neg"


def add_real(db, project_id: int, texts: list[str], split: str) -> list[int]:
    from core.data.text import text_hash

    with transaction(db):
        return items_db.insert_items(db, project_id, [
            {"text": t, "text_hash": text_hash(t), "source": "real", "split": split} for t in texts])


def test_a_feedback_round_is_steered_by_the_verdicts_and_records_it(fresh_db, db_path, monkeypatch) -> None:
    monkeypatch.setattr("core.analysis.embeddings.load_embedder", lambda *a, **k: FakeEmbedder())
    project = make_project(fresh_db)
    unlabelled = add_real(fresh_db, project.id, ["An unlabelled real review of a cartoon.",
                                                 "Another unlabelled one, about a thriller."], "pool")
    test_ids = add_real(fresh_db, project.id, ["A test review nobody may show the generator."], "test")
    dev_ids = add_real(fresh_db, project.id, ["A dev review, held out as well."], "dev")
    with FakeLLMServer(reply=lambda request, n: f"{label_of(request)} {varied_text(n)}") as server:
        first = queue_job(fresh_db, project.id, server, mode="few-shot", prompt_form="chat", per_label=2,
                          examples_per_prompt=2, concurrency=1)
        assert core_jobs.run(str(db_path), first)["status"] == "done"
        made = items_db.items_frame(fresh_db, project.id, source="synthetic").sort_values("id")
        pos_ids = list(made[made["reference_label"] == "pos"]["id"])
        neg_ids = list(made[made["reference_label"] == "neg"]["id"])
        verdicts = {pos_ids[0]: ["pos", "pos"], pos_ids[1]: ["pos", "pos"],   # pos: fidelity 1
                    neg_ids[0]: ["neg", "neg"], neg_ids[1]: ["pos", "pos"]}   # neg: fidelity 1/2
        with transaction(fresh_db):
            items_db.insert_annotations(fresh_db, [
                {"item_id": item, "annotator": f"person{i}", "label": label}
                for item, labels in verdicts.items() for i, label in enumerate(labels)])
        attributes = {"tone": ["calm", "angry"], "length": ["short"]}
        second = queue_job(fresh_db, project.id, server, mode="few-shot", prompt_form="chat", per_label=2,
                           examples_per_prompt=2, concurrency=1, feedback=True, grounding="retrieval",
                           grounding_k=2, grounding_candidates=4, attributes=attributes)
        result = core_jobs.run(str(db_path), second)
    assert result["status"] == "done"
    job = gen_db.get_generation_job(fresh_db, second)
    assert (gen_db.get_generation_job(fresh_db, first)["round"], job["round"]) == (1, 2)
    config = GenerationConfig.from_dict(job["config"])
    assert config.feedback_example_ids == {"pos": tuple(pos_ids), "neg": (neg_ids[0],)}
    assert config.counter_example_ids == {"neg": (neg_ids[1],)}
    assert config.label_targets == {"neg": 4}
    assert result["result"]["accepted_per_label"] == {"pos": 2, "neg": 4}
    groundable = {i for i, _, _ in gen_db.grounding_texts(fresh_db, project.id, held_out=HELD_OUT_SPLITS,
                                                        up_to_item=config.grounding_up_to_item)}
    assert set(unlabelled) <= groundable and not set(test_ids + dev_ids) & groundable
    assert config.grounding_up_to_item == max(made["id"])  # the last item when round 2 was created
    second_items = items_db.items_frame(fresh_db, project.id, source="synthetic")
    second_items = second_items[second_items["generation_job_id"] == second]
    counter_text = made.set_index("id").loc[neg_ids[1], "text"]
    for row in second_items.itertuples():
        call = gen_db.get_call(fresh_db, row.generation_call_id)
        assert len(call["retrieved_ids"]) == 2 and set(call["retrieved_ids"]) <= groundable
        assert call["attributes"]["length"] == "short" and call["attributes"]["tone"] in {"calm", "angry"}
        user = call["messages"][-1]["content"]
        assert f"Give it these attributes: tone: {call['attributes']['tone']}; length: short." in user
        if row.reference_label == "neg":
            assert call["counter_example_ids"] == [neg_ids[1]]
            assert f'Not a "neg" text: {counter_text}' in user
        else:
            assert call["counter_example_ids"] == []
        info = review.provenance(fresh_db, project.id, int(row.id))
        assert info.round == 2 and info.attributes == call["attributes"]
        assert [e.item_id for e in info.retrieved] == sorted(call["retrieved_ids"])
        assert [e.text for e in info.counter_examples] == ([counter_text] if row.reference_label == "neg" else [])
        # Examples are drawn from the seeds and the confirmed items of round 1.
        assert set(call["seed_item_ids"]) <= set(items_db.items_frame(fresh_db, project.id, source="real")["id"]) | {
            *pos_ids, neg_ids[0]}


def test_grounding_without_real_texts_fails_with_the_fix(fresh_db, db_path, monkeypatch) -> None:
    monkeypatch.setattr("core.analysis.embeddings.load_embedder", lambda *a, **k: FakeEmbedder())
    project = make_project(fresh_db)
    with transaction(fresh_db):
        fresh_db.execute("UPDATE item SET split = 'test' WHERE project_id = ?", [project.id])
    with FakeLLMServer() as server:
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=1, grounding="retrieval")
        result = core_jobs.run(str(db_path), job_id)
    assert result["status"] == "failed"
    assert "grounding by retrieval needs real texts outside the held-out splits (test, dev)" in result["error"]


def test_a_fixed_call_budget_stops_each_label_there(fresh_db, db_path) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer(reply=lambda request, n: "too short") as server:  # every reply rejected
        job_id = queue_job(fresh_db, project.id, server, mode="zero-shot", per_label=5, calls_per_label=3,
                           concurrency=2)
        core_jobs.run(str(db_path), job_id)
    assert gen_db.calls_per_label(fresh_db, job_id) == {"pos": 3, "neg": 3}
    assert json.loads(json.dumps(gen_db.accepted_per_label(fresh_db, job_id))) == {}


def test_attribute_counts_per_value_and_label() -> None:
    items = pd.DataFrame({"reference_label": ["spam", "spam", "ham", "ham"],
                          "attributes": ['{"tone": "calm", "length": "short"}', '{"tone": "calm", "length": "long"}',
                                         '{"tone": "angry", "length": "short"}', "{}"]})
    counts = review.attribute_counts(items)
    assert counts.to_dict("records") == [
        {"attribute": "length", "value": "long", "label": "spam", "items": 1},
        {"attribute": "length", "value": "short", "label": "ham", "items": 1},
        {"attribute": "length", "value": "short", "label": "spam", "items": 1},
        {"attribute": "tone", "value": "angry", "label": "ham", "items": 1},
        {"attribute": "tone", "value": "calm", "label": "spam", "items": 2},
    ]
    assert review.attribute_counts(items.iloc[3:]).empty


def test_the_prompt_preview_shows_the_levers_as_the_job_would_use_them(fresh_db) -> None:
    project = make_project(fresh_db)
    attributes = {"tone": ["calm", "angry", "wry"], "length": ["short", "long"]}
    preview = service.preview_prompts(fresh_db, project.id, label="pos", grounding="retrieval", grounding_k=2,
                                      attributes=attributes, seed=7)
    for name, calls in preview.settings.items():
        for number, call in enumerate(calls):
            chosen = steering.sample_attributes(attributes, steering.steering_rng(7, "pos", number, "attributes"))
            user = call.user_message
            assert "- <real text 1 retrieved for this call>\n- <real text 2 retrieved for this call>" in user, name
            assert user.endswith(f"Give it these attributes: tone: {chosen['tone']}; length: {chosen['length']}.")
    assert preview.feedback is None


def test_the_feedback_preview_shows_examples_only_for_a_few_shot_round(fresh_db) -> None:
    project = make_project(fresh_db)
    job_id = core_jobs.create(fresh_db, kind="generation", project_id=project.id, config={})
    gen_db.create_generation_job(fresh_db, project_id=project.id, job_id=job_id, config={})
    made = {"generation_mode": "few-shot", "generation_job_id": job_id}
    confirmed, contradicted = add_items(fresh_db, project.id, [
        {"text": "A lovely film, warm and funny.", "source": "synthetic", "label": "pos", "votes": ["pos", "pos"],
         "generation": made},
        {"text": "A dull film, far too long.", "source": "synthetic", "label": "pos", "votes": ["neg", "neg"],
         "generation": made}])
    few_shot = service.preview_prompts(fresh_db, project.id, feedback=True, mode="few-shot", prompt_form="chat",
                                       per_label=4).feedback
    assert few_shot.example_ids == {"pos": (confirmed,)} and few_shot.counter_example_ids == {"pos": (contradicted,)}
    assert few_shot.fidelity == {"pos": 0.5} and few_shot.label_targets == {"pos": 8}
    zero_shot = service.preview_prompts(fresh_db, project.id, feedback=True, mode="zero-shot", per_label=4).feedback
    assert zero_shot.example_ids == {} and zero_shot.counter_example_ids == {"pos": (contradicted,)}
