"""The LLM as one more annotator: the configured backend labels chosen items as annotator ``llm:<model>``,
so its agreement with people is measured like anyone's (job kind ``llm_annotation``).

Prompt building and label parsing are pure; the job runs the calls on a thread pool and writes the labels in
small transactions from the main thread, with every call (prompt, raw reply, parsed label, latency, error) in
``llm_annotation_call``. A job whose replies name no label at all fails with the reason and example replies;
one where only some do ends done with a warning (``result["warning"]``).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlite_utils

from core import jobs as core_jobs
from core.config import check_choice, setting
from core.errors import SynthloopError
from core.generation.backends import Backend, BackendCallError, make_backend
from core.generation.config import BackendSettings
from core.generation.jobs import RateLimiter
from core.projects import Project, get_project, update_settings
from core.store import db_file
from core.vocab import LLM_ANNOTATOR_PREFIX, LLM_SELECTIONS, LLMSelection
from db import connection, transaction
from db import items as items_db
from db import jobs as jobs_db
from db import llm_annotation as llm_db

SETTINGS_KEY = "llm_annotator"  # project.settings: the saved backend options (SAVABLE)
WRITE_BATCH = 20
EXAMPLES_SHOWN = 3  # example replies that named no label, in the job's warning or error
EXAMPLE_CHARS = 80

DEFAULT_INSTRUCTION = (
    "Classify the text into exactly one of these labels:\n{label_lines}\n\n"
    "Answer with the label name only.\n\nText: {text}\nLabel:"
)


@dataclass(frozen=True, kw_only=True)
class LLMAnnotatorConfig(BackendSettings):
    """An LLM that labels items as annotator ``llm:<model>``: the generation backend settings, with defaults for
    short, deterministic answers, plus which items to label."""

    KIND = "LLM annotator setting"

    temperature: float = setting(0.0, "sampling temperature, 0 to 2 (0: the most likely label)")
    max_tokens: int = setting(16, "the longest reply, in tokens (a label name is short)")
    labels: tuple[str, ...] = setting(help="the project's labels, the only answers accepted")
    selection: LLMSelection = setting("pool", "which items to label")
    item_ids: tuple[int, ...] = setting((), "selection ids: the items to label")
    overwrite: bool = setting(False, "label again items this annotator already labelled")
    label_descriptions: dict[str, str] = setting(help="each label's description, written into the prompt",
                                                 factory=dict)
    context_prompt: str = setting("", "the system message (default: the project's task)")
    task: str = setting("", "the project's task")
    instruction_variant: str = setting("", "a short name (a-z, 0-9, _ and -) for an instruction of your own: the "
                                           "annotator becomes llm:<model>/<variant>")
    instruction: str = setting("", "the instruction with {label_lines} and {text} in it (default: the built-in "
                                   "one); needs an instruction_variant")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "item_ids", tuple(int(i) for i in self.item_ids))
        object.__setattr__(self, "label_descriptions", dict(self.label_descriptions or {}))
        if not self.labels:
            raise SynthloopError("the LLM annotator needs the project's labels")
        check_choice("selection", self.selection, LLM_SELECTIONS)
        if self.selection == "ids" and not self.item_ids:
            raise SynthloopError("selection 'ids' needs item ids")
        check_variant(self.instruction_variant)
        if self.instruction.strip():
            check_instruction(self.instruction, self.instruction_variant)

    @property
    def annotator(self) -> str:
        return annotator_name(self.model, self.instruction_variant)


def annotator_name(model: str, variant: str = "") -> str:
    """``llm:<model>``, or ``llm:<model>/<variant>`` for a named instruction variant."""
    return f"{LLM_ANNOTATOR_PREFIX}{model}" + (f"/{variant}" if variant else "")


VARIANT_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")


def check_variant(variant: str) -> None:
    if variant and not VARIANT_PATTERN.fullmatch(variant):
        raise SynthloopError(f"instruction variant {variant!r} is not valid: use 1 to 32 characters of a-z, 0-9, _ "
                             "and - (e.g. strict-v2)")


def check_instruction(instruction: str, variant: str) -> None:
    """An instruction of one's own needs its own annotator name (else its labels would mix with the default
    instruction's) and must place the text; ``{label_lines}`` and ``{text}`` are its only placeholders."""
    if not variant:
        raise SynthloopError("an instruction of your own needs an {instruction_variant} name, so that its labels "
                             "get their own annotator: set it, e.g. 'strict'", fields=("instruction_variant",))
    try:
        instruction.format(label_lines="", text="")
    except (KeyError, IndexError, ValueError) as exc:
        raise SynthloopError(f"the instruction is not a valid template ({type(exc).__name__}: {exc}): use only "
                             "{label_lines} and {text} as placeholders and write other braces twice ({{ }})") from None
    if "{text}" not in instruction:
        raise SynthloopError("the instruction does not contain {text}: put {text} where the text to classify goes")


def build_messages(config: LLMAnnotatorConfig, text: str) -> list[dict[str, str]]:
    """A system line with the task, then the labels (with descriptions) and the text to classify."""
    label_lines = "\n".join(
        f"- {label}" + (f": {config.label_descriptions[label]}" if config.label_descriptions.get(label) else "")
        for label in config.labels
    )
    system = config.context_prompt.strip() or f"You are a careful annotator for a text classification task: " \
                                               f"{config.task or 'classification'}."
    return [{"role": "system", "content": system},
            {"role": "user", "content": (config.instruction.strip() or DEFAULT_INSTRUCTION).format(
                label_lines=label_lines, text=text.strip())}]


def parse_label(reply: str | None, labels: tuple[str, ...] | list[str]) -> str | None:
    """The label a reply names: an exact answer, else the earliest (longest at that place) label mentioned as a
    whole word; None when it names none."""
    if not reply:
        return None
    text = reply.strip().strip("\"'`*.").strip()
    text = re.sub(r"^(?:the\s+)?(?:label|answer|category|class)\s*(?:is)?\s*[:\-]?\s*", "", text, flags=re.IGNORECASE)
    text = text.strip().strip("\"'`*.[]()").strip()
    by_lower = {label.lower(): label for label in labels}
    if text.lower() in by_lower:
        return by_lower[text.lower()]
    best: tuple[int, int, str] | None = None
    for label in labels:
        match = re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", reply, flags=re.IGNORECASE)
        if match:
            key = (match.start(), -len(label), label)
            if best is None or key < best:
                best = key
    return best[2] if best else None


SAVABLE = ("backend", "model", "base_url", "api_key_env", "temperature", "concurrency", "selection",
           "instruction_variant", "instruction")


def settings(project: Project) -> dict[str, Any]:
    """The project's saved LLM-annotator options (backend, model, …); empty until saved once."""
    saved = dict(project.settings.get(SETTINGS_KEY) or {})
    return {k: saved[k] for k in SAVABLE if k in saved}


def save_settings(db: sqlite_utils.Database, project_id: int, **options: Any) -> LLMAnnotatorConfig:
    """Validate (by building a config) and store the options; the key itself is never stored, only its variable."""
    project = get_project(db, project_id)
    config = build_config(project, **options)
    data = config.to_dict()
    update_settings(db, project_id, **{SETTINGS_KEY: {k: data[k] for k in SAVABLE}})
    return config


def list_jobs(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    return core_jobs.list_jobs(db, project_id=project_id, kind="llm_annotation")


PROJECT_FIELDS = ("labels", "label_descriptions", "task")  # taken from the project, never from options


def project_fields(project: Project) -> dict[str, Any]:
    """The settings every annotator of the project shares: its labels (with descriptions) and its task."""
    return {"labels": tuple(project.label_names),
            "label_descriptions": {label.name: label.description for label in project.labels if label.description},
            "task": project.description or project.name}


def build_config(project: Project, **options: Any) -> LLMAnnotatorConfig:
    saved = {k: v for k, v in (project.settings.get(SETTINGS_KEY) or {}).items() if k in SAVABLE}
    given = {k: v for k, v in options.items() if v is not None}
    return LLMAnnotatorConfig(context_prompt="", **project_fields(project), **{**saved, **given})


def select_items(db: sqlite_utils.Database, project_id: int, config: LLMAnnotatorConfig) -> list[tuple[int, str]]:
    """``(item id, text)`` of the items to label, minus those this annotator already labelled (unless overwrite)."""
    items = items_db.items_frame(db, project_id)
    if config.selection == "pool":
        items = items[items["in_pool"] == 1]
    elif config.selection == "test":
        items = items[items["split"] == "test"]
    elif config.selection == "synthetic":
        items = items[items["source"] == "synthetic"]
    elif config.selection == "ids":
        items = items[items["id"].isin(config.item_ids)]
    if not config.overwrite:
        annotations = items_db.annotations_frame(db, project_id, include_excluded=True)
        done = set(annotations.loc[annotations["annotator"] == config.annotator, "item_id"])
        if config.selection == "unlabelled":
            done |= set(annotations.loc[~annotations["annotator"].str.startswith(LLM_ANNOTATOR_PREFIX), "item_id"])
        items = items[~items["id"].isin(done)]
    return [(int(i), str(t)) for i, t in zip(items["id"], items["text"], strict=True)]


def queue_job(db: sqlite_utils.Database, project_id: int, config: LLMAnnotatorConfig) -> int | None:
    """Queue a job labelling ``config``'s items; None when it has nothing to label."""
    todo = select_items(db, project_id, config)
    if not todo:
        return None
    return core_jobs.create(db, kind="llm_annotation", project_id=project_id, config=config.to_dict(), total=len(todo))


def start_llm_annotation(db: sqlite_utils.Database, project_id: int, *, launch: bool = True, **options: Any) -> int:
    config = build_config(get_project(db, project_id), **options)
    job_id = queue_job(db, project_id, config)
    if job_id is None:
        raise SynthloopError(f"no items to label for selection {config.selection!r}: "
                             "send items to annotation first or pick another selection")
    if launch:
        core_jobs.launch(db_file(db), job_id)
    return job_id


def job_calls(db: sqlite_utils.Database, job_id: int, *, unlabelled_only: bool = False) -> pd.DataFrame:
    """The job's calls in item order: item, prompt (JSON), raw reply, parsed label (missing when the reply named
    none), latency and error; ``unlabelled_only``: the replies that named no label and the failed calls."""
    return llm_db.calls_frame(db, job_id, unlabelled_only=unlabelled_only)


@dataclass(frozen=True)
class Call:
    """One finished request: the item, the prompt, the raw reply (None when the call failed) and its label."""

    item_id: int
    messages: list[dict[str, str]]
    reply: str | None = None
    label: str | None = None
    latency_s: float | None = None
    error: BackendCallError | None = None

    def row(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "messages": self.messages, "raw_output": self.reply, "label": self.label,
                "latency_s": None if self.latency_s is None else round(self.latency_s, 4),
                "error": f"{self.error.code}: {self.error}" if self.error else ""}


def call_backend(backend: Backend, limiter: RateLimiter, config: LLMAnnotatorConfig, item_id: int, text: str) -> Call:
    """Worker-thread body: never raises, so one bad reply cannot stop the job (a fatal error is the caller's to
    act on)."""
    messages = build_messages(config, text)
    limiter.acquire()
    try:
        completion = backend.complete(messages, temperature=config.temperature, max_tokens=config.max_tokens,
                                      seed=config.seed)
    except BackendCallError as exc:
        return Call(item_id, messages, error=exc)
    except Exception as exc:  # an unexpected client failure is this call's error, not the job's
        return Call(item_id, messages, error=BackendCallError("malformed", f"{type(exc).__name__}: {exc}"))
    return Call(item_id, messages, completion.text, parse_label(completion.text, config.labels), completion.latency_s)


def shorten(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def annotation_warning(*, labelled: int, unparsed: int, errors: int, examples: list[str], labels: tuple[str, ...],
                       last_error: str) -> str:
    """What went wrong in a job, in one line ('' when nothing did): when nothing was labelled, the reason the job
    failed; else how many replies named no label (with examples) and how many calls failed."""
    replies = labelled + unparsed
    shown = ", ".join(repr(example) for example in examples)
    if not labelled and unparsed:
        return (f"the LLM named no label in any of its {replies} replies (e.g. {shown}), so nothing was labelled: "
                f"it must answer with one of {', '.join(labels)}; pick a model that follows the instruction")
    if not labelled and errors:
        return f"all {errors} calls failed, so nothing was labelled: {last_error}"
    problems = []
    if unparsed:
        problems.append(f"{unparsed} of {replies} replies named no label and were not stored (e.g. {shown})")
    if errors:
        problems.append(f"{errors} of {replies + errors} calls failed (last: {last_error})")
    return "; ".join(problems)


def run_llm_annotation(db_path: str, job_id: int) -> dict[str, Any]:
    """``JOB_RUNNERS["llm_annotation"]``: label the selected items, keeping every call. Replies that name no label
    are counted and kept as calls, not stored as labels; a job that labelled nothing fails with the reason."""
    started = time.monotonic()
    db = connection.connect(db_path)
    try:
        job = jobs_db.get_job(db, job_id)
        config = LLMAnnotatorConfig.from_dict(job["config"])
        todo = select_items(db, int(job["project_id"]), config)
        backend = make_backend(config)
        limiter = RateLimiter(config.requests_per_minute)
        counts = {"labelled": 0, "unparsed": 0, "errors": 0}
        unlabelled: list[tuple[int, str]] = []  # (item id, reply) of the replies that named no label
        last_error: BackendCallError | None = None
        fatal: BackendCallError | None = None
        pending: list[Call] = []

        def flush() -> bool:
            """Write the pending calls with their labels (one transaction); True when a cancel was requested."""
            with transaction(db):
                llm_db.insert_calls(db, job_id, [call.row() for call in pending])
                items_db.insert_annotations(db, [
                    {"item_id": call.item_id, "annotator": config.annotator, "label": call.label,
                     "seconds": round(call.latency_s or 0.0, 3), "comment": ""} for call in pending if call.label])
            pending.clear()
            return jobs_db.update_progress(db, job_id, done=sum(counts.values()), total=len(todo),
                                           message=f"{counts['labelled']} labelled", result=dict(counts))

        cancelled = False
        pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="llm-annotate")
        try:
            futures = [pool.submit(call_backend, backend, limiter, config, item_id, text) for item_id, text in todo]
            for future in as_completed(futures):
                call = future.result()
                pending.append(call)
                if call.error is not None:
                    counts["errors"] += 1
                    last_error = call.error
                    if call.error.fatal:  # a bad key or an unknown model: every other call would fail the same
                        fatal = call.error
                        break
                elif call.label is None:
                    counts["unparsed"] += 1
                    unlabelled.append((call.item_id, call.reply or ""))
                else:
                    counts["labelled"] += 1
                if len(pending) >= WRITE_BATCH and flush():
                    cancelled = True
                    break
        finally:
            # On cancel or a fatal error the queued calls are dropped, not run.
            pool.shutdown(wait=True, cancel_futures=True)
        cancelled = flush() or cancelled
        examples = list(dict.fromkeys(shorten(reply) for _, reply in sorted(unlabelled)))[:EXAMPLES_SHOWN]
        warning = annotation_warning(**counts, examples=examples, labels=config.labels,
                                     last_error=str(last_error) if last_error else "")
        result = {**counts, "annotator": config.annotator, "items": len(todo),
                  "last_error": str(last_error) if last_error else "", "examples": examples, "warning": warning,
                  "seconds": round(time.monotonic() - started, 3)}
        jobs_db.update_progress(db, job_id, result=result)
        if fatal is not None:
            raise fatal
        if todo and not counts["labelled"] and not cancelled:
            raise SynthloopError(warning)  # the job ends failed, with the reason as its error
        return result
    finally:
        db.conn.close()
