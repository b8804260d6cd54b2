"""The frozen settings of one generation job, validated at construction and stored whole with the job.

Everything a job needs to be re-run or resumed identically is here: backend, model, mode, prompt templates,
label descriptions and the project's context prompt as they were when the job started. Secrets are not:
the API key is read from the environment variable named in ``api_key_env`` at call time.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, check_choice, check_number, check_whole_number, setting
from core.errors import SynthloopError
from core.generation.api_keys import check_key_variable
from core.vocab import BACKENDS, GROUNDINGS, MODES, PROMPT_FORMS, BackendName, Grounding, Mode, PromptForm

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# The paper's prompts (Li et al. 2023, zero-shot and few-shot settings), as editable templates.
DEFAULT_CONTEXT = "{context_prompt}"
DEFAULT_CONTEXT_FALLBACK = "You write realistic, varied example texts for a text classification dataset: {task}."
DEFAULT_GENERATION = (
    'Write one {style} whose label is "{label}"{label_description_clause}. Use at most {word_limit} words. '
    "Reply with the {style} only: no title, no label, no explanation."
)
DEFAULT_DIVERSITY = "Can you provide something more diverse compared to the previously generated data?"
DEFAULT_FEW_SHOT = (
    "Here are some real examples with their labels:\n\n{examples}\n\n"
    "Imitate these examples, but do not simply modify or rewrite any of them: write a new, original {style}."
)
DEFAULT_EXAMPLE = "Text: {text}\nLabel: {label}"
DEFAULT_LIST = 'Write {style}s whose label is "{label}"{label_description_clause}, as a numbered list.'
# The loop's levers (issue 14): grounding in retrieved real texts, counter-examples from people's verdicts, attributes.
DEFAULT_GROUNDING = (
    "Here are real texts from the same setting:\n\n{passages}\n\n"
    "Write in their domain (topic, tone, vocabulary), but do not copy or rewrite any of them."
)
DEFAULT_PASSAGE = "- {text}"
DEFAULT_COUNTER_EXAMPLES = (
    'People judged these texts, written as "{label}", to be something else. Do not write like them:\n\n{examples}'
)
DEFAULT_COUNTER_EXAMPLE = 'Not a "{label}" {style}: {text}'
DEFAULT_ATTRIBUTES = "Give it these attributes: {attributes}."

# Which placeholders each template may use; anything else is a typo the user should hear about.
TEMPLATE_FIELDS: dict[str, frozenset[str]] = {
    "context": frozenset({"context_prompt", "task", "style"}),
    "generation": frozenset({"label", "label_description", "label_description_clause", "style", "word_limit",
                             "task"}),
    "diversity": frozenset({"label", "style", "word_limit", "task"}),
    "few_shot": frozenset({"examples", "k", "style", "task", "label"}),
    "example": frozenset({"text", "label"}),
    "list_form": frozenset({"label", "label_description", "label_description_clause", "style", "task", "k"}),
    "grounding": frozenset({"passages", "k", "style", "task", "label"}),
    "passage": frozenset({"text"}),
    "counter_examples": frozenset({"examples", "k", "style", "task", "label"}),
    "counter_example": frozenset({"text", "label", "style"}),
    "attributes": frozenset({"attributes", "style", "label"}),
}


MAX_ATTRIBUTES = 20
MAX_ATTRIBUTE_VALUES = 200


def check_attributes(attributes: object) -> dict[str, tuple[str, ...]]:
    """Attribute lists as ``{name: (value, ...)}``: names and values non-empty text, no value listed twice."""
    if not isinstance(attributes, dict):
        raise SynthloopError('attributes must be an object of lists, e.g. {"topic": ["sports", "politics"]}')
    if len(attributes) > MAX_ATTRIBUTES:
        raise SynthloopError(f"{len(attributes)} attributes is too many: use at most {MAX_ATTRIBUTES}")
    checked = {}
    for name, values in attributes.items():
        if not isinstance(name, str) or not name.strip():
            raise SynthloopError("an attribute has an empty name: name every attribute, e.g. \"topic\"")
        if isinstance(values, str) or not isinstance(values, list | tuple) or not values:
            raise SynthloopError(f"attribute {name!r} must be a non-empty list of values, e.g. [\"short\", \"long\"]")
        if len(values) > MAX_ATTRIBUTE_VALUES:
            raise SynthloopError(f"attribute {name!r} has {len(values)} values: use at most {MAX_ATTRIBUTE_VALUES}")
        cleaned = []
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise SynthloopError(f"attribute {name!r} has an empty or non-text value {value!r}: use text")
            cleaned.append(" ".join(value.split()))
        if len(set(cleaned)) != len(cleaned):
            raise SynthloopError(f"attribute {name!r} lists a value twice: list each once")
        checked[" ".join(name.split())] = tuple(cleaned)
    return checked


def parse_attributes(text: str, *, where: str = "the attributes text") -> dict[str, tuple[str, ...]]:
    """Attribute lists from JSON text (blank: none), checked."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynthloopError(f"{where} is not valid JSON ({exc}): write an object of lists, e.g. "
                             '{"topic": ["sports", "politics"]}') from None
    return check_attributes(data)


def read_attributes(path: Path) -> dict[str, tuple[str, ...]]:
    """Attribute lists from a JSON file (``--attributes FILE.json``), checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SynthloopError(f"cannot read the attributes file {str(path)!r}: {getattr(exc, 'strerror', None) or exc}"
                             ": give a UTF-8 JSON file") from None
    return parse_attributes(text, where=f"the attributes file {str(path)!r}")


def template_placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SynthloopError(f"prompt template {template[:40]!r}… is not valid ({exc}): "
                             "write literal braces as {{ and }}") from None


@dataclass(frozen=True)
class PromptTemplates(Config):
    """The editable prompt texts (``str.format`` templates with named placeholders)."""

    KIND = "prompt template"

    context: str = setting(DEFAULT_CONTEXT, "the system message: who the model is and what it writes")
    generation: str = setting(DEFAULT_GENERATION, "the request for one text of a label")
    diversity: str = setting(DEFAULT_DIVERSITY, "zero-shot: asks for something different, every few turns")
    few_shot: str = setting(DEFAULT_FEW_SHOT, "few-shot: introduces the seed examples")
    example: str = setting(DEFAULT_EXAMPLE, "few-shot: how one seed example is written")
    list_form: str = setting(DEFAULT_LIST, "few-shot list form: the instruction above a numbered list of seeds")
    grounding: str = setting(DEFAULT_GROUNDING, "grounding: introduces the real texts retrieved for the call")
    passage: str = setting(DEFAULT_PASSAGE, "grounding: how one retrieved text is written")
    counter_examples: str = setting(DEFAULT_COUNTER_EXAMPLES, "feedback: introduces the counter-examples")
    counter_example: str = setting(DEFAULT_COUNTER_EXAMPLE, "feedback: how one counter-example is written")
    attributes: str = setting(DEFAULT_ATTRIBUTES, "attributes: the values sampled for the call")

    def __post_init__(self) -> None:
        for name, allowed in TEMPLATE_FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, str):
                raise SynthloopError(f"prompt template {name!r} must be text, got {type(value).__name__}")
            unknown = sorted(template_placeholders(value) - allowed)
            if unknown:
                raise SynthloopError(
                    f"prompt template {name!r} uses unknown placeholder {{{unknown[0]}}}: "
                    f"use only {', '.join('{' + a + '}' for a in sorted(allowed))}"
                )
        if "{examples}" not in self.few_shot:
            raise SynthloopError("the few-shot template must contain {examples}, where the seed examples go")
        for name, placeholder in (("example", "text"), ("grounding", "passages"), ("passage", "text"),
                                  ("counter_examples", "examples"), ("counter_example", "text"),
                                  ("attributes", "attributes")):
            if f"{{{placeholder}}}" not in getattr(self, name):
                raise SynthloopError(f"the {name.replace('_', ' ')} template must contain {{{placeholder}}}")


@dataclass(frozen=True, kw_only=True)
class BackendSettings(Config):
    """Which LLM answers and how it is called: shared by generation and the LLM annotator."""

    backend: BackendName = setting("embedded", "where the LLM runs")
    model: str = setting("", "model name (openai), folder or hub id (transformers); default: the embedded model")
    base_url: str = setting("", "an OpenAI-compatible server's URL (default: OpenAI's)")
    api_key_env: str = setting("OPENAI_API_KEY", "the environment variable that holds the API key (never the key): "
                                                 "OPENAI_API_KEY or one listed in SYNTHLOOP_API_KEY_VARS")
    temperature: float = setting(1.0, "sampling temperature, 0 to 2")
    max_tokens: int = setting(160, "the longest reply, in tokens")
    concurrency: int = setting(4, "calls in flight at once")
    requests_per_minute: float | None = setting(None, "at most this many calls a minute (default: no limit)")
    timeout_s: float = setting(60.0, "seconds before a call is given up and retried")
    max_retries: int = setting(4, "retries of a failed call (with back-off, honouring retry-after)")
    seed: int = setting(0, "seed of sampling and of every random choice")

    def __post_init__(self) -> None:
        check_choice("backend", self.backend, BACKENDS)
        model = self.model.strip()
        if not model:
            if self.backend != "embedded":
                raise SynthloopError(f"the {self.backend} backend needs a model name: set {{model}} (e.g. gpt-4o-mini for"
                                     " OpenAI, a folder or hub id for transformers)", fields=("model",))
            model = EMBEDDED_MODEL
        object.__setattr__(self, "model", model)
        base_url = self.base_url.strip()
        if self.backend == "openai":
            base_url = base_url or DEFAULT_OPENAI_BASE_URL
            if not base_url.startswith(("http://", "https://")):
                raise SynthloopError(f"base URL {base_url!r} is not an http(s) URL: e.g. http://localhost:8000/v1")
        object.__setattr__(self, "base_url", base_url)
        check_key_variable(self.api_key_env)  # only variables the server's administrator allows
        check_number("temperature", self.temperature, 0.0, 2.0)
        check_whole_number("max_tokens", self.max_tokens, 1, 32_768)
        check_whole_number("concurrency", self.concurrency, 1, 256)
        if self.requests_per_minute is not None:
            check_number("requests_per_minute", self.requests_per_minute, 0.1, 1_000_000)
        check_number("timeout_s", self.timeout_s, 0.05, 3_600.0)
        check_whole_number("max_retries", self.max_retries, 0, 20)
        check_whole_number("seed", self.seed, 0, 2**32 - 1)


@dataclass(frozen=True, kw_only=True)
class GenerationConfig(BackendSettings):
    """One generation job's settings. ``labels`` are the labels to generate; ``per_label`` is the target each."""

    KIND = "generation setting"

    labels: tuple[str, ...] = setting(help="the labels to generate")
    mode: Mode = setting("zero-shot", "zero-shot (label names and descriptions only) or few-shot (with seeds)")
    prompt_form: PromptForm | None = setting(None, "chat turns, or a numbered list to continue (default: list for "
                                                   "the embedded model in few-shot, else chat)")
    per_label: int = setting(10, "accepted texts to generate for each label")
    examples_per_prompt: int = setting(3, "few-shot: seed examples in each prompt (label-balanced, re-sampled)")
    diversity_period: int = setting(5, "zero-shot: ask for something different every this many turns (0: never)")
    conversation_turns: int | None = setting(None, "turns before a conversation starts afresh (default: 10 "
                                                   "zero-shot, 1 few-shot)")
    word_limit: int = setting(50, "the longest text asked for, in words")
    style: str = setting("text", "what to write, e.g. movie review or news headline")
    near_duplicate_threshold: float = setting(0.8, "reject a text this similar (word n-grams) to one already kept")
    seed_copy_threshold: float = setting(0.6, "reject a text this similar to a seed example")
    min_words: int = setting(3, "reject texts shorter than this")
    max_words: int = setting(150, "reject texts longer than this")
    price_prompt_per_1k: float = setting(0.0, "price of 1,000 prompt tokens, for the cost estimate")
    price_completion_per_1k: float = setting(0.0, "price of 1,000 completion tokens, for the cost estimate")
    max_calls_per_text: float = setting(10.0, "the call budget per missing text, so a model that only produces "
                                              "rejects cannot loop forever")
    calls_per_label: int | None = setting(None, "a fixed budget: at most this many calls per label, whatever they "
                                                "yield (to compare settings at equal cost)")
    label_descriptions: dict[str, str] = setting(help="each label's description, written into the prompts",
                                                 factory=dict)
    context_prompt: str = setting("", "the project's context prompt, as it was when the job started")
    task: str = setting("", "the project's task, for prompts without a context prompt")
    templates: PromptTemplates = setting(help="the prompt templates", factory=PromptTemplates)
    # The loop's levers (README, "The loop"); all off by default, so a plain job is the paper's.
    feedback: bool = setting(False, "use people's verdicts on earlier rounds: confirmed items as examples, "
                                    "contradicted ones as counter-examples, more items for labels people doubt")
    feedback_min_labels: int = setting(2, "feedback: human labels an earlier item needs before its verdict counts")
    feedback_min_agreement: float = setting(0.6, "feedback: instance agreement a confirmed item needs to be an example")
    counter_examples_per_prompt: int = setting(2, "feedback: counter-examples shown in each prompt")
    grounding: Grounding = setting("none", "retrieval: each call shows real texts of the project, retrieved by "
                                           "similarity to a sampled one, to write in their domain")
    grounding_k: int = setting(3, "grounding: real texts shown per call")
    grounding_candidates: int = setting(20, "grounding: nearest texts from which MMR picks grounding_k")
    mmr_lambda: float = setting(0.5, "grounding: 1 picks the most similar texts, 0 the most varied")
    attributes: dict[str, tuple[str, ...]] = setting(
        help="attribute lists (e.g. topic, length): one value of each is sampled per call and asked for",
        factory=dict)
    batch: bool = setting(False, "openai backend: send the calls through the provider's Batch API (about half the "
                                 "price, answers within hours); polled and resumable")
    batch_poll_s: float = setting(30.0, "batch: seconds between polls of a submitted batch")
    # Frozen at the job's start from the verdicts on earlier rounds (core.generation.rounds), so a resumed job
    # shows the same examples; not set by hand.
    feedback_example_ids: dict[str, tuple[int, ...]] = setting(
        help="feedback: per label, the earlier synthetic items people confirmed (shown as examples)", factory=dict)
    counter_example_ids: dict[str, tuple[int, ...]] = setting(
        help="feedback: per label, the earlier synthetic items people judged otherwise", factory=dict)
    grounding_up_to_item: int | None = setting(
        None, "grounding: the corpus is the real items with ids up to this one (frozen at the job's start)")
    label_targets: dict[str, int] = setting(
        help="feedback: accepted texts per label when it differs from per_label (labels people doubt get more)",
        factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise SynthloopError("no labels to generate: pick at least one of the project's labels")
        if len(set(labels)) != len(labels):
            raise SynthloopError(f"labels {list(labels)} name one label twice")
        check_choice("mode", self.mode, MODES)
        form = self.prompt_form
        if form is None:
            form = "list" if (self.backend == "embedded" and self.mode == "few-shot") else "chat"
        check_choice("prompt form", form, PROMPT_FORMS)
        if form == "list" and self.mode != "few-shot":
            raise SynthloopError("the list prompt form continues a list of seed texts: use it with {mode} few-shot",
                                 fields=("mode",))
        object.__setattr__(self, "prompt_form", form)
        turns = self.conversation_turns
        if turns is None:
            turns = 10 if (self.mode == "zero-shot") else 1
        object.__setattr__(self, "conversation_turns", turns)
        check_whole_number("per_label", self.per_label, 1, 1_000_000)
        check_whole_number("examples_per_prompt", self.examples_per_prompt, 1, 50)
        check_whole_number("diversity_period", self.diversity_period, 0, 10_000)
        check_whole_number("conversation_turns", turns, 1, 1_000)
        check_whole_number("word_limit", self.word_limit, 1, 5_000)
        check_number("near_duplicate_threshold", self.near_duplicate_threshold, 0.05, 1.0)
        check_number("seed_copy_threshold", self.seed_copy_threshold, 0.05, 1.0)
        check_whole_number("min_words", self.min_words, 0, 10_000)
        check_whole_number("max_words", self.max_words, 1, 100_000)
        if self.min_words > self.max_words:
            raise SynthloopError(f"min_words {self.min_words} is above max_words {self.max_words}: lower it")
        check_number("price_prompt_per_1k", self.price_prompt_per_1k, 0.0, 1_000.0)
        check_number("price_completion_per_1k", self.price_completion_per_1k, 0.0, 1_000.0)
        check_number("max_calls_per_text", self.max_calls_per_text, 1.0, 1_000.0)
        if self.calls_per_label is not None:
            check_whole_number("calls_per_label", self.calls_per_label, 1, 10_000_000)
        if not self.style.strip():
            raise SynthloopError("style is empty: say what to write, e.g. 'movie review' or 'news headline'")
        object.__setattr__(self, "label_descriptions", dict(self.label_descriptions or {}))
        if isinstance(self.templates, dict):
            object.__setattr__(self, "templates", PromptTemplates.from_dict(self.templates))
        self._check_levers()

    def _check_levers(self) -> None:
        check_whole_number("feedback_min_labels", self.feedback_min_labels, 1, 1_000)
        check_number("feedback_min_agreement", self.feedback_min_agreement, 0.0, 1.0)
        check_whole_number("counter_examples_per_prompt", self.counter_examples_per_prompt, 0, 50)
        check_choice("grounding", self.grounding, GROUNDINGS)
        check_whole_number("grounding_k", self.grounding_k, 1, 50)
        check_whole_number("grounding_candidates", self.grounding_candidates, 1, 10_000)
        if self.grounding_candidates < self.grounding_k:
            raise SynthloopError(f"{{grounding_candidates}} {self.grounding_candidates} is below {{grounding_k}} "
                                 f"{self.grounding_k}: MMR picks from the candidates, so raise it",
                                 fields=("grounding_candidates", "grounding_k"))
        check_number("mmr_lambda", self.mmr_lambda, 0.0, 1.0)
        object.__setattr__(self, "attributes", check_attributes(self.attributes))
        check_number("batch_poll_s", self.batch_poll_s, 0.01, 3_600.0)
        if self.batch and self.backend != "openai":
            raise SynthloopError(f"the Batch API is the openai backend's, not {self.backend}'s: use {{backend}} "
                                 "openai with a provider that offers it, or leave batch off", fields=("backend",))
        for name in ("feedback_example_ids", "counter_example_ids"):
            object.__setattr__(self, name, {str(label): tuple(int(i) for i in ids)
                                            for label, ids in dict(getattr(self, name) or {}).items()})
        targets = {str(label): int(n) for label, n in dict(self.label_targets or {}).items()}
        for label, n in targets.items():
            check_whole_number(f"label_targets[{label}]", n, 1, 1_000_000)
        object.__setattr__(self, "label_targets", targets)

    def target_for(self, label: str) -> int:
        """Accepted texts wanted for ``label``: ``per_label``, or more where feedback found people doubting it."""
        return self.label_targets.get(label, self.per_label)

    @property
    def target_total(self) -> int:
        return sum(self.target_for(label) for label in self.labels)

    def max_calls(self, remaining: int) -> int:
        """Call budget for ``remaining`` texts, so a model that only produces rejects cannot loop forever."""
        return math.ceil(remaining * self.max_calls_per_text) + 2

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_prompt_per_1k + completion_tokens * self.price_completion_per_1k) / 1000
