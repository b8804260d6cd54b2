"""The generation service the pages and CLI call: settings, templates, preview, cost estimate, connection test."""

from __future__ import annotations

import pytest

from core.errors import BackendError, SynthloopError
from core.generation import service
from core.generation.config import DEFAULT_DIVERSITY
from core.projects import get_project
from tests.fake_llm import FakeLLMServer
from tests.generation_helpers import make_project


def test_preview_shows_both_settings_before_any_call(fresh_db) -> None:
    project = make_project(fresh_db, with_seeds=False)
    bare = service.preview_prompts(fresh_db, project.id)
    assert list(bare.settings) == ["zero-shot"] and bare.warnings == [
        "no seeds pinned yet: the few-shot preview needs seeds (Seeds page or `seeds sample`)"]
    zero = bare.settings["zero-shot"]
    assert len(zero) == 6 and zero[-1].user_message.startswith(DEFAULT_DIVERSITY)  # n = 5: the 6th call
    assert all(not call.user_message.startswith(DEFAULT_DIVERSITY) for call in zero[:-1])
    project = make_project(fresh_db, name="seeded")
    seeded = service.preview_prompts(fresh_db, project.id, examples_per_prompt=4, label="neg")
    assert list(seeded.settings) == ["zero-shot", "few-shot", "list"]
    assert seeded.seed_counts == {"pos": 3, "neg": 3}
    assert seeded.warnings == [
        f"label {label!r} has 3 seeds, fewer than the 4 examples per prompt of the few-shot setting: pin more or "
        "lower the examples per prompt" for label in ("pos", "neg")]
    assert all(call.label == "neg" and len(call.seed_item_ids) == 4 for call in seeded.settings["few-shot"])
    assert all(len(call.seed_item_ids) == 3 for call in seeded.settings["list"])  # only the label's own seeds


def test_cost_estimate_is_an_upper_bound_from_the_first_prompt(fresh_db) -> None:
    project = make_project(fresh_db)
    config = service.build_config(get_project(fresh_db, project.id), per_label=10, max_tokens=100,
                                  price_prompt_per_1k=1.0, price_completion_per_1k=2.0)
    prompt = service.preview_prompts(fresh_db, project.id).settings["zero-shot"][0]
    words = sum(len(m["content"].split()) for m in prompt.messages)
    estimate = service.estimate_cost(config, prompt)
    assert estimate == {"calls": 20, "prompt_tokens": round(words * 1.3) * 20, "completion_tokens": 2000,
                        "cost": round((round(words * 1.3) * 20 * 1.0 + 2000 * 2.0) / 1000, 4)}


def test_options_and_templates_are_saved_per_project_and_validated(fresh_db) -> None:
    project = make_project(fresh_db)
    service.save_options(fresh_db, project.id, style="movie review", per_label=25)
    loaded = get_project(fresh_db, project.id)
    assert loaded.settings["generation"] == {"style": "movie review", "per_label": 25}
    assert service.form_values(loaded)["style"] == "movie review"
    with pytest.raises(SynthloopError, match="word_limit 0 is not valid"):
        service.save_options(fresh_db, project.id, word_limit=0)
    assert get_project(fresh_db, project.id).settings["generation"] == {"style": "movie review", "per_label": 25}
    with pytest.raises(SynthloopError, match="no labels to generate"):
        service.build_config(loaded, labels=[])
    with pytest.raises(SynthloopError, match="label 'meh' is not a label of project 'films'"):
        service.build_config(loaded, labels=["meh"])
    service.save_templates(fresh_db, project.id, {"diversity": "Vary it."})
    assert get_project(fresh_db, project.id).settings["prompt_templates"] == {"diversity": "Vary it."}
    assert service.build_config(get_project(fresh_db, project.id)).templates.diversity == "Vary it."
    service.reset_templates(fresh_db, project.id)
    assert service.get_templates(get_project(fresh_db, project.id)).diversity == DEFAULT_DIVERSITY


def test_connection_test_goes_through_the_service(fresh_db) -> None:
    project = make_project(fresh_db)
    with FakeLLMServer() as server:
        message = service.test_connection(fresh_db, project.id, backend="openai", model="fake-model",
                                          base_url=server.base_url)
        assert message.startswith(f"connected to {server.base_url}")
        with pytest.raises(BackendError, match="does not serve model 'gpt-x': it lists fake-model"):
            service.test_connection(fresh_db, project.id, backend="openai", model="gpt-x", base_url=server.base_url)


def test_few_shot_needs_seeds_and_list_form_needs_seeds_per_label(fresh_db) -> None:
    project = make_project(fresh_db, with_seeds=False)
    with pytest.raises(SynthloopError, match="few-shot generation needs seeds, and this project has none"):
        service.start_generation(fresh_db, project.id, launch=False, mode="few-shot")
    from core.generation import seeds

    seeds.pin(fresh_db, project.id, ["pos-0"])
    with pytest.raises(SynthloopError, match="label 'neg' has no seeds, and the list form continues"):
        service.start_generation(fresh_db, project.id, launch=False, mode="few-shot", prompt_form="list")
    job_id = service.start_generation(fresh_db, project.id, launch=False, mode="few-shot", backend="openai",
                                      model="m", base_url="http://127.0.0.1:9/v1")
    summary = service.job_summary(fresh_db, job_id)
    assert (summary.status, summary.target, summary.accepted, summary.mode) == ("queued", 20, 0, "few-shot")
    assert list(service.list_generation_jobs(fresh_db, project.id)["job_id"]) == [job_id]
