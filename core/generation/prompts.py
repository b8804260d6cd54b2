"""Prompt building for the paper's two settings, as pure functions (no I/O, randomness from a passed ``rng``).

* zero-shot: one conversation per label — a context prompt (system), then a generation prompt per turn, and every
  ``diversity_period`` outputs the diversity prompt in the same conversation;
* few-shot: each call shows ``k`` real seed examples sampled label-balanced (re-sampled for every call) and asks
  for a new text imitating them without copying or rewriting;
* the *list* form (for small local models that cannot follow a bare instruction): the label's seed texts as the
  start of the model's reply, a numbered list ending in the next number, for the model to continue.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.generation.config import DEFAULT_CONTEXT_FALLBACK, GenerationConfig, PromptTemplates
from core.generation.seeds import SeedExample
from core.generation.steering import NO_STEERING, Steering

Message = dict[str, str]


@dataclass
class Conversation:
    """One chat with the model about one label: the messages so far and how many outputs it has produced."""

    label: str
    messages: list[Message] = field(default_factory=list)
    outputs: int = 0


@dataclass(frozen=True)
class CallPrompt:
    """What one call sends: the full message list, the user turn it adds, the seeds shown and what else steered it."""

    label: str
    messages: list[Message]
    user_message: str
    seed_item_ids: list[int]
    steering: Steering = NO_STEERING


def _clause(description: str) -> str:
    return f" ({description.strip()})" if description.strip() else ""


def context_message(templates: PromptTemplates, *, context_prompt: str, task: str, style: str) -> Message:
    """The system message that sets the scene (the project's context prompt, or a neutral one)."""
    task = task.strip() or "text classification"
    context_prompt = context_prompt.strip() or DEFAULT_CONTEXT_FALLBACK.format(task=task)
    return {"role": "system", "content": templates.context.format(context_prompt=context_prompt, task=task,
                                                                    style=style).strip()}


def generation_prompt(
    templates: PromptTemplates, *, label: str, label_description: str, style: str, word_limit: int, task: str = ""
) -> str:
    """Ask for one text of ``style`` with ``label`` under ``word_limit`` words."""
    return templates.generation.format(
        label=label, label_description=label_description.strip(), label_description_clause=_clause(label_description),
        style=style, word_limit=word_limit, task=task,
    ).strip()


def zero_shot_turn(
    templates: PromptTemplates, *, generation: str, outputs_so_far: int, diversity_period: int,
    label: str = "", style: str = "", word_limit: int = 0, task: str = "",
) -> str:
    """The user turn after ``outputs_so_far`` outputs: the diversity prompt comes first every ``diversity_period``."""
    if diversity_period and outputs_so_far > 0 and outputs_so_far % diversity_period == 0:
        diversity = templates.diversity.format(label=label, style=style, word_limit=word_limit, task=task).strip()
        return f"{diversity}\n\n{generation}"
    return generation


def sample_balanced(seeds: Sequence[SeedExample], *, label: str, k: int, rng: random.Random) -> list[SeedExample]:
    """``k`` seeds with labels as balanced as the pool allows, always including ``label`` when it has seeds.

    Labels are visited round-robin (the target label first, the others in random order), each contributing a
    random seed not yet chosen; the chosen seeds are then shuffled so the target label is not always first.
    """
    by_label: dict[str, list[SeedExample]] = {}
    for seed in seeds:
        by_label.setdefault(seed.label, []).append(seed)
    pools = {name: rng.sample(items, len(items)) for name, items in sorted(by_label.items())}
    others = sorted(name for name in pools if name != label)
    rng.shuffle(others)
    order = ([label] if label in pools else []) + others
    chosen: list[SeedExample] = []
    while len(chosen) < k and any(pools[name] for name in order):
        for name in order:
            if len(chosen) < k and pools[name]:
                chosen.append(pools[name].pop())
    rng.shuffle(chosen)
    return chosen


def sample_of_label(seeds: Sequence[SeedExample], *, label: str, k: int, rng: random.Random) -> list[SeedExample]:
    """Up to ``k`` random seeds of ``label`` (for the list form)."""
    pool = [seed for seed in seeds if seed.label == label]
    return rng.sample(pool, min(k, len(pool)))


def format_examples(templates: PromptTemplates, examples: Sequence[SeedExample]) -> str:
    return "\n\n".join(templates.example.format(text=e.text.strip(), label=e.label).strip() for e in examples)


def few_shot_turn(
    templates: PromptTemplates, *, examples: Sequence[SeedExample], generation: str, style: str, label: str = "",
    task: str = "",
) -> str:
    """Seed examples with their labels, the instruction to imitate without copying, then the generation prompt."""
    intro = templates.few_shot.format(examples=format_examples(templates, examples), k=len(examples), style=style,
                                      task=task, label=label).strip()
    return f"{intro}\n\n{generation}"


def list_prompt(
    templates: PromptTemplates, *, examples: Sequence[SeedExample], label: str, label_description: str, style: str,
    task: str = "",
) -> list[Message]:
    """An instruction, then the label's seed texts as the start of the model's own reply: a numbered list ending
    with the next number, which a small model continues far more reliably than it follows an instruction.

    The final assistant message is a prefill: the embedded and transformers backends continue it; an
    OpenAI-compatible server sees it as an earlier turn (use the chat form there).
    """
    numbered = "\n".join(f"{i}. {' '.join(e.text.split())}" for i, e in enumerate(examples, start=1))
    instruction = templates.list_form.format(
        label=label, label_description=label_description.strip(), label_description_clause=_clause(label_description),
        style=style, task=task, k=len(examples),
    ).strip()
    prefill = f"{numbered}\n{len(examples) + 1}." if numbered else "1."
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": prefill}]


def steering_lines(templates: PromptTemplates, steering: Steering, *, label: str, style: str,
                   task: str = "") -> tuple[str, str]:
    """The text a call's levers add: before the request (retrieved texts, counter-examples) and after it
    (attributes). Empty strings when no lever is on."""
    before = []
    if steering.retrieved:
        passages = "\n".join(templates.passage.format(text=" ".join(e.text.split())) for e in steering.retrieved)
        before.append(templates.grounding.format(passages=passages, k=len(steering.retrieved), style=style,
                                                 task=task, label=label).strip())
    if steering.counter_examples:
        examples = "\n".join(templates.counter_example.format(text=" ".join(e.text.split()), label=label, style=style)
                             for e in steering.counter_examples)
        before.append(templates.counter_examples.format(examples=examples, k=len(steering.counter_examples),
                                                        style=style, task=task, label=label).strip())
    after = ""
    if steering.attributes:
        listed = "; ".join(f"{name}: {value}" for name, value in steering.attributes.items())
        after = templates.attributes.format(attributes=listed, style=style, label=label).strip()
    return "\n\n".join(before), after


def _steered(user: str, before: str, after: str) -> str:
    return "\n\n".join(part for part in (before, user, after) if part)


def call_rng(config: GenerationConfig, label: str, call_number: int) -> random.Random:
    """A reproducible stream per (job seed, label, call), so seeds are re-sampled for every call."""
    return random.Random(f"{config.seed}:{label}:{call_number}")


def new_conversation(config: GenerationConfig, label: str) -> Conversation:
    system = context_message(config.templates, context_prompt=config.context_prompt, task=config.task,
                             style=config.style)
    return Conversation(label=label, messages=[system])


def next_call(
    config: GenerationConfig, conversation: Conversation, seeds: Sequence[SeedExample], *, call_number: int,
    steering: Steering = NO_STEERING,
) -> CallPrompt:
    """The messages for the next call of ``conversation`` (which is not changed; see :func:`record_reply`)."""
    label = conversation.label
    description = config.label_descriptions.get(label, "")
    templates = config.templates
    rng = call_rng(config, label, call_number)
    seed_ids: list[int] = []
    before, after = steering_lines(templates, steering, label=label, style=config.style, task=config.task)
    if config.prompt_form == "list":
        examples = sample_of_label(seeds, label=label, k=config.examples_per_prompt, rng=rng)
        seed_ids = [e.item_id for e in examples]
        messages = list_prompt(templates, examples=examples, label=label, label_description=description,
                               style=config.style, task=config.task)
        messages[0] = {"role": "user", "content": _steered(messages[0]["content"], before, after)}
        # No system scene-setting: a 135M model does best continuing the list with nothing else to follow.
        return CallPrompt(label, messages, messages[0]["content"], seed_ids, steering)
    generation = generation_prompt(templates, label=label, label_description=description, style=config.style,
                                   word_limit=config.word_limit, task=config.task)
    if config.mode == "few-shot":
        examples = sample_balanced(seeds, label=label, k=config.examples_per_prompt, rng=rng)
        seed_ids = [e.item_id for e in examples]
        user = few_shot_turn(templates, examples=examples, generation=generation, style=config.style, label=label,
                             task=config.task)
    else:
        user = zero_shot_turn(templates, generation=generation, outputs_so_far=conversation.outputs,
                              diversity_period=config.diversity_period, label=label, style=config.style,
                              word_limit=config.word_limit, task=config.task)
    user = _steered(user, before, after)
    messages = [*conversation.messages, {"role": "user", "content": user}]
    return CallPrompt(label, messages, user, seed_ids, steering)


def record_reply(config: GenerationConfig, conversation: Conversation, prompt: CallPrompt, reply: str) -> bool:
    """Append the turn to the conversation; returns False when the conversation is full and must restart."""
    conversation.outputs += 1
    if config.prompt_form == "list" or conversation.outputs >= config.conversation_turns:
        return False
    conversation.messages = [*prompt.messages, {"role": "assistant", "content": reply}]
    return True


def preview(
    config: GenerationConfig, seeds: Sequence[SeedExample], *, label: str | None = None, calls: int = 3,
    steer: Callable[[str, int], Steering] | None = None,
) -> list[CallPrompt]:
    """The first ``calls`` prompts of one label's conversation, with placeholder replies, as a job would send them
    (``steer(label, call_number)``: what steers each call, as the job would choose it)."""
    label = label or config.labels[0]
    conversation = new_conversation(config, label)
    prompts = []
    for number in range(calls):
        prompt = next_call(config, conversation, seeds, call_number=number,
                           steering=steer(label, number) if steer else NO_STEERING)
        prompts.append(prompt)
        if not record_reply(config, conversation, prompt, f"<model output {number + 1}>"):
            conversation = new_conversation(config, label)
    return prompts
