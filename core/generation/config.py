"""The frozen settings of one generation job, validated at construction and stored whole with the job.

Everything a job needs to be re-run or resumed identically is here: backend, model, mode, prompt templates,
label descriptions and the project's context prompt as they were when the job started. Secrets are not:
the API key is read from the environment variable named in ``api_key_env`` at call time.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from core.errors import SynthloopError

BackendName = Literal["embedded", "openai", "transformers"]
Mode = Literal["zero-shot", "few-shot"]
PromptForm = Literal["chat", "list"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
MODES: tuple[str, ...] = get_args(Mode)
PROMPT_FORMS: tuple[str, ...] = get_args(PromptForm)

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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

# Which placeholders each template may use; anything else is a typo the user should hear about.
TEMPLATE_FIELDS: dict[str, frozenset[str]] = {
    "context": frozenset({"context_prompt", "task", "style"}),
    "generation": frozenset({"label", "label_description", "label_description_clause", "style", "word_limit",
                             "task"}),
    "diversity": frozenset({"label", "style", "word_limit", "task"}),
    "few_shot": frozenset({"examples", "k", "style", "task", "label"}),
    "example": frozenset({"text", "label"}),
    "list_form": frozenset({"label", "label_description", "label_description_clause", "style", "task", "k"}),
}


def template_placeholders(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SynthloopError(f"prompt template {template[:40]!r}… is not valid ({exc}): "
                             "write literal braces as {{ and }}") from None


@dataclass(frozen=True)
class PromptTemplates:
    """The editable prompt texts (``str.format`` templates with named placeholders)."""

    context: str = DEFAULT_CONTEXT
    generation: str = DEFAULT_GENERATION
    diversity: str = DEFAULT_DIVERSITY
    few_shot: str = DEFAULT_FEW_SHOT
    example: str = DEFAULT_EXAMPLE
    list_form: str = DEFAULT_LIST

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
        if "{text}" not in self.example:
            raise SynthloopError("the example template must contain {text}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PromptTemplates:
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise SynthloopError(f"unknown prompt template {unknown[0]!r}: one of {sorted(TEMPLATE_FIELDS)}")
        return cls(**data)


@dataclass(frozen=True)
class GenerationConfig:
    """One generation job's settings. ``labels`` are the labels to generate; ``per_label`` is the target each."""

    labels: tuple[str, ...]
    backend: BackendName = "embedded"
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    mode: Mode = "zero-shot"
    prompt_form: PromptForm | None = None
    per_label: int = 10
    temperature: float = 1.0
    max_tokens: int = 160
    examples_per_prompt: int = 3
    diversity_period: int = 5
    conversation_turns: int | None = None
    word_limit: int = 50
    style: str = "text"
    concurrency: int = 4
    requests_per_minute: float | None = None
    near_duplicate_threshold: float = 0.8
    seed_copy_threshold: float = 0.6
    min_words: int = 3
    max_words: int = 150
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0
    seed: int = 0
    timeout_s: float = 60.0
    max_retries: int = 4
    max_calls_per_text: float = 10.0
    label_descriptions: dict[str, str] = field(default_factory=dict)
    context_prompt: str = ""
    task: str = ""
    templates: PromptTemplates = field(default_factory=PromptTemplates)

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        object.__setattr__(self, "labels", labels)
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise SynthloopError("no labels to generate: pick at least one of the project's labels")
        if len(set(labels)) != len(labels):
            raise SynthloopError(f"labels {list(labels)} name one label twice")
        _choice("backend", self.backend, BACKENDS)
        _choice("mode", self.mode, MODES)
        model = self.model.strip()
        if not model:
            if self.backend != "embedded":
                raise SynthloopError(f"the {self.backend} backend needs a model name: pass --model "
                                     "(e.g. gpt-4o-mini for OpenAI, a folder or hub id for transformers)")
            model = EMBEDDED_MODEL
        object.__setattr__(self, "model", model)
        base_url = self.base_url.strip()
        if self.backend == "openai":
            base_url = base_url or DEFAULT_OPENAI_BASE_URL
            if not base_url.startswith(("http://", "https://")):
                raise SynthloopError(f"base URL {base_url!r} is not an http(s) URL: e.g. http://localhost:8000/v1")
        object.__setattr__(self, "base_url", base_url)
        if not _ENV_NAME.match(self.api_key_env):
            raise SynthloopError(f"API key variable {self.api_key_env!r} is not an environment variable name: "
                                 "give the variable's name (e.g. OPENAI_API_KEY), never the key itself")
        form = self.prompt_form
        if form is None:
            form = "list" if (self.backend == "embedded" and self.mode == "few-shot") else "chat"
        _choice("prompt form", form, PROMPT_FORMS)
        if form == "list" and self.mode != "few-shot":
            raise SynthloopError("the list prompt form continues a list of seed texts: use it with --mode few-shot")
        object.__setattr__(self, "prompt_form", form)
        turns = self.conversation_turns
        if turns is None:
            turns = 10 if (self.mode == "zero-shot") else 1
        object.__setattr__(self, "conversation_turns", turns)
        _int_range("per_label", self.per_label, 1, 1_000_000)
        _number_range("temperature", self.temperature, 0.0, 2.0)
        _int_range("max_tokens", self.max_tokens, 1, 32_768)
        _int_range("examples_per_prompt", self.examples_per_prompt, 1, 50)
        _int_range("diversity_period", self.diversity_period, 0, 10_000)
        _int_range("conversation_turns", turns, 1, 1_000)
        _int_range("word_limit", self.word_limit, 1, 5_000)
        _int_range("concurrency", self.concurrency, 1, 256)
        if self.requests_per_minute is not None:
            _number_range("requests_per_minute", self.requests_per_minute, 0.1, 1_000_000)
        _number_range("near_duplicate_threshold", self.near_duplicate_threshold, 0.05, 1.0)
        _number_range("seed_copy_threshold", self.seed_copy_threshold, 0.05, 1.0)
        _int_range("min_words", self.min_words, 0, 10_000)
        _int_range("max_words", self.max_words, 1, 100_000)
        if self.min_words > self.max_words:
            raise SynthloopError(f"min_words {self.min_words} is above max_words {self.max_words}: lower it")
        _number_range("price_prompt_per_1k", self.price_prompt_per_1k, 0.0, 1_000.0)
        _number_range("price_completion_per_1k", self.price_completion_per_1k, 0.0, 1_000.0)
        _int_range("seed", self.seed, 0, 2**32 - 1)
        _number_range("timeout_s", self.timeout_s, 0.05, 3_600.0)
        _int_range("max_retries", self.max_retries, 0, 20)
        _number_range("max_calls_per_text", self.max_calls_per_text, 1.0, 1_000.0)
        if not self.style.strip():
            raise SynthloopError("style is empty: say what to write, e.g. 'movie review' or 'news headline'")
        descriptions = dict(self.label_descriptions or {})
        object.__setattr__(self, "label_descriptions", descriptions)
        if isinstance(self.templates, dict):
            object.__setattr__(self, "templates", PromptTemplates.from_dict(self.templates))

    @property
    def target_total(self) -> int:
        return self.per_label * len(self.labels)

    def max_calls(self, remaining: int) -> int:
        """Call budget for ``remaining`` texts, so a model that only produces rejects cannot loop forever."""
        return math.ceil(remaining * self.max_calls_per_text) + 2

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_prompt_per_1k + completion_tokens * self.price_completion_per_1k) / 1000

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["templates"] = self.templates.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SynthloopError(f"unknown generation setting {unknown[0]!r}: one of {sorted(known)}")
        if "labels" not in data:
            raise SynthloopError("generation settings lack 'labels'")
        data["labels"] = tuple(data["labels"])
        data["templates"] = PromptTemplates.from_dict(data.get("templates"))
        return cls(**data)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SynthloopError(f"{name} {value!r} is not valid: use one of {', '.join(allowed)}")


def _int_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SynthloopError(f"{name} {value!r} is not valid: use a whole number from {low} to {high}")


def _number_range(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SynthloopError(f"{name} {value!r} is not valid: use a number from {low} to {high}")
