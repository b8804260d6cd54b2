"""The frozen settings of one generation job, validated at construction and stored whole with the job.

Everything a job needs to be re-run or resumed identically is here: backend, model, mode, prompt templates,
label descriptions and the project's context prompt as they were when the job started. Secrets are not:
the API key is read from the environment variable named in ``api_key_env`` at call time.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

from core.config import Config, check_choice, check_number, check_whole_number, setting
from core.errors import SynthloopError
from core.generation.api_keys import check_key_variable
from core.vocab import BACKENDS, MODES, PROMPT_FORMS, BackendName, Mode, PromptForm

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
class PromptTemplates(Config):
    """The editable prompt texts (``str.format`` templates with named placeholders)."""

    KIND = "prompt template"

    context: str = setting(DEFAULT_CONTEXT, "the system message: who the model is and what it writes")
    generation: str = setting(DEFAULT_GENERATION, "the request for one text of a label")
    diversity: str = setting(DEFAULT_DIVERSITY, "zero-shot: asks for something different, every few turns")
    few_shot: str = setting(DEFAULT_FEW_SHOT, "few-shot: introduces the seed examples")
    example: str = setting(DEFAULT_EXAMPLE, "few-shot: how one seed example is written")
    list_form: str = setting(DEFAULT_LIST, "few-shot list form: the instruction above a numbered list of seeds")

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
    label_descriptions: dict[str, str] = setting(help="each label's description, written into the prompts",
                                                 factory=dict)
    context_prompt: str = setting("", "the project's context prompt, as it was when the job started")
    task: str = setting("", "the project's task, for prompts without a context prompt")
    templates: PromptTemplates = setting(help="the prompt templates", factory=PromptTemplates)

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
        if not self.style.strip():
            raise SynthloopError("style is empty: say what to write, e.g. 'movie review' or 'news headline'")
        object.__setattr__(self, "label_descriptions", dict(self.label_descriptions or {}))
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
