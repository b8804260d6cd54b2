"""Generation config validation and prompt building (pure functions, exact expected texts)."""

from __future__ import annotations

import random

import pytest

from core.errors import SynthloopError
from core.generation import prompts
from core.generation.config import GenerationConfig, PromptTemplates
from core.generation.seeds import SeedExample

SYSTEM = {"role": "system", "content": "You are a movie reviewer."}
GEN_POS = ('Write one movie review whose label is "pos" (a favourable review). Use at most 40 words. '
           "Reply with the movie review only: no title, no label, no explanation.")
DIVERSITY = "Can you provide something more diverse compared to the previously generated data?"
SEEDS = [SeedExample(1, "A warm and funny film.", "pos"), SeedExample(2, "Loved the cast.", "pos"),
         SeedExample(3, "Dull and slow.", "neg"), SeedExample(4, "A waste of time.", "neg")]


def config(**changes) -> GenerationConfig:
    base = {"labels": ("pos", "neg"), "backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1",
            "label_descriptions": {"pos": "a favourable review"}, "context_prompt": "You are a movie reviewer.",
            "task": "movie reviews", "style": "movie review", "word_limit": 40}
    return GenerationConfig(**{**base, **changes})


def test_zero_shot_is_one_conversation_with_the_diversity_prompt_every_n_outputs() -> None:
    calls = prompts.preview(config(mode="zero-shot", diversity_period=2), [], label="pos", calls=4)
    assert calls[0].messages == [SYSTEM, {"role": "user", "content": GEN_POS}]
    assert calls[1].messages == [SYSTEM, {"role": "user", "content": GEN_POS},
                                 {"role": "assistant", "content": "<model output 1>"},
                                 {"role": "user", "content": GEN_POS}]
    assert calls[2].messages[-1] == {"role": "user", "content": f"{DIVERSITY}\n\n{GEN_POS}"}
    assert len(calls[2].messages) == 6
    assert calls[3].messages[-1] == {"role": "user", "content": GEN_POS}
    assert all(call.seed_item_ids == [] for call in calls)


def test_zero_shot_conversation_restarts_after_its_turns_and_never_with_period_zero() -> None:
    calls = prompts.preview(config(mode="zero-shot", conversation_turns=2, diversity_period=0), [], calls=3)
    assert [len(call.messages) for call in calls] == [2, 4, 2]
    assert all(DIVERSITY not in call.user_message for call in calls)


def test_context_falls_back_to_the_task_when_the_project_has_no_context_prompt() -> None:
    call = prompts.preview(config(context_prompt=""), [], calls=1)[0]
    assert call.messages[0] == {"role": "system", "content": "You write realistic, varied example texts for a text "
                                                             "classification dataset: movie reviews."}
    no_description = prompts.preview(config(), [], label="neg", calls=1)[0]
    assert no_description.user_message.startswith('Write one movie review whose label is "neg". Use at most 40')


def test_few_shot_shows_k_labelled_seeds_resampled_per_call_with_the_imitation_instruction() -> None:
    calls = prompts.preview(config(mode="few-shot", examples_per_prompt=2), SEEDS, label="pos", calls=2)
    first = calls[0]
    assert first.messages[0] == SYSTEM and len(first.messages) == 2  # no history: a fresh call each time
    shown = {seed.item_id: seed for seed in SEEDS if seed.item_id in first.seed_item_ids}
    examples = "\n\n".join(f"Text: {shown[i].text}\nLabel: {shown[i].label}" for i in first.seed_item_ids)
    assert first.user_message == (
        f"Here are some real examples with their labels:\n\n{examples}\n\nImitate these examples, but do not simply "
        f"modify or rewrite any of them: write a new, original movie review.\n\n{GEN_POS}")
    # Label-balanced: k = 2 with two labels shows one of each.
    for call in calls:
        assert sorted(shown_label for shown_label in (s.label for s in SEEDS if s.item_id in call.seed_item_ids)) \
            == ["neg", "pos"]
    many = prompts.preview(config(mode="few-shot", examples_per_prompt=2), SEEDS, label="pos", calls=12)
    assert len({tuple(sorted(c.seed_item_ids)) for c in many}) > 1  # re-sampled, not fixed


def test_list_form_puts_the_label_seeds_in_the_reply_for_the_model_to_continue() -> None:
    cfg = config(mode="few-shot", prompt_form="list", examples_per_prompt=2)
    call = prompts.preview(cfg, SEEDS, label="pos", calls=1)[0]
    texts = {1: "A warm and funny film.", 2: "Loved the cast."}
    assert call.messages == [
        {"role": "user", "content": 'Write movie reviews whose label is "pos" (a favourable review), as a numbered '
                                    "list."},
        {"role": "assistant", "content": f"1. {texts[call.seed_item_ids[0]]}\n2. {texts[call.seed_item_ids[1]]}\n3."},
    ]
    assert sorted(call.seed_item_ids) == [1, 2]
    neg = prompts.preview(config(mode="few-shot", prompt_form="list", examples_per_prompt=5), SEEDS, label="neg",
                          calls=1)[0]
    assert sorted(neg.seed_item_ids) == [3, 4] and neg.messages[1]["content"].endswith("\n3.")


def test_embedded_few_shot_defaults_to_the_list_form_and_zero_shot_to_chat() -> None:
    assert GenerationConfig(labels=("a",), mode="few-shot").prompt_form == "list"
    assert GenerationConfig(labels=("a",), mode="zero-shot").prompt_form == "chat"
    assert GenerationConfig(labels=("a",), mode="few-shot", backend="openai", model="m").prompt_form == "chat"


def test_sample_balanced_round_robins_labels_starting_with_the_target() -> None:
    seeds = [SeedExample(i, f"t{i}", label) for i, label in enumerate("aaabcc")]
    chosen = prompts.sample_balanced(seeds, label="a", k=4, rng=random.Random(0))
    assert sorted(s.label for s in chosen) == ["a", "a", "b", "c"]
    assert len({s.item_id for s in chosen}) == 4
    assert len(prompts.sample_balanced(seeds, label="a", k=10, rng=random.Random(0))) == 6
    assert sorted(s.label for s in prompts.sample_balanced(seeds, label="z", k=2, rng=random.Random(0))) \
        in (["a", "b"], ["a", "c"], ["b", "c"])
    assert prompts.sample_balanced([], label="a", k=3, rng=random.Random(0)) == []


def test_templates_are_editable_and_checked() -> None:
    templates = PromptTemplates(generation="Give me a {style} labelled {label}.")
    call = prompts.preview(config(templates=templates), [], calls=1)[0]
    assert call.user_message == "Give me a movie review labelled pos."
    with pytest.raises(SynthloopError, match=r"prompt template 'generation' uses unknown placeholder \{lable\}"):
        PromptTemplates(generation="{lable}")
    with pytest.raises(SynthloopError, match=r"few-shot template must contain \{examples\}"):
        PromptTemplates(few_shot="no examples here")
    with pytest.raises(SynthloopError, match="write literal braces as"):
        PromptTemplates(generation="{unclosed")


def test_config_round_trips_and_rejects_bad_values_with_the_fix() -> None:
    cfg = config(mode="few-shot", requests_per_minute=120.0, templates=PromptTemplates(diversity="More variety."))
    data = cfg.to_dict()
    assert GenerationConfig.from_dict(data) == cfg
    assert data["templates"]["diversity"] == "More variety." and data["labels"] == ["pos", "neg"]
    with pytest.raises(SynthloopError, match="needs a model name: set 'model'"):
        GenerationConfig(labels=("a",), backend="openai")
    with pytest.raises(SynthloopError, match=r"temperature 3 is not valid: use a number from 0.0 to 2.0"):
        config(temperature=3)
    with pytest.raises(SynthloopError, match="per_label 0 is not valid"):
        config(per_label=0)
    with pytest.raises(SynthloopError, match="use it with 'mode' few-shot"):
        config(mode="zero-shot", prompt_form="list")
    with pytest.raises(SynthloopError, match="not an environment variable name"):
        config(api_key_env="sk-abc123 secret")
    with pytest.raises(SynthloopError, match="unknown generation setting 'colour'"):
        GenerationConfig.from_dict({**data, "colour": "red"})
    with pytest.raises(SynthloopError, match="base URL 'localhost:8000' is not an http"):
        config(base_url="localhost:8000")
    assert GenerationConfig(labels=("a",), backend="openai", model="m").base_url == "https://api.openai.com/v1"
    assert GenerationConfig(labels=("a",)).model == "SmolLM2-135M-Instruct"


def test_cost_and_call_budget() -> None:
    cfg = config(price_prompt_per_1k=0.5, price_completion_per_1k=1.5, max_calls_per_text=3.0)
    assert cfg.cost(2000, 1000) == pytest.approx(2.5)
    assert cfg.max_calls(4) == 14
