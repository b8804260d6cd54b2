"""The LLM as one more annotator: the configured backend labels chosen items as annotator ``llm:<model>``,
so its agreement with people is measured like anyone's (job kind ``llm_annotation``).

Prompt building and label parsing are pure; the job runs the calls on a thread pool and writes the labels in
small transactions from the main thread.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from core import jobs as core_jobs
from core.config import check_choice, setting
from core.errors import SynthloopError
from core.generation.backends import BackendCallError, make_backend
from core.generation.config import BackendSettings
from core.generation.jobs import RateLimiter
from core.projects import Project, get_project, update_settings
from core.store import db_file
from core.vocab import LLM_ANNOTATOR_PREFIX, LLM_SELECTIONS, LLMSelection
from db import connection, transaction
from db import items as items_db
from db import jobs as jobs_db

SETTINGS_KEY = "llm_annotator"  # project.settings: the saved backend options (SAVABLE)
WRITE_BATCH = 20

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

    @property
    def annotator(self) -> str:
        return annotator_name(self.model)


def annotator_name(model: str) -> str:
    return f"{LLM_ANNOTATOR_PREFIX}{model}"


def build_messages(config: LLMAnnotatorConfig, text: str) -> list[dict[str, str]]:
    """A system line with the task, then the labels (with descriptions) and the text to classify."""
    label_lines = "\n".join(
        f"- {label}" + (f": {config.label_descriptions[label]}" if config.label_descriptions.get(label) else "")
        for label in config.labels
    )
    system = config.context_prompt.strip() or f"You are a careful annotator for a text classification task: " \
                                               f"{config.task or 'classification'}."
    return [{"role": "system", "content": system},
            {"role": "user", "content": DEFAULT_INSTRUCTION.format(label_lines=label_lines, text=text.strip())}]


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


SAVABLE = ("backend", "model", "base_url", "api_key_env", "temperature", "concurrency", "selection")


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


def build_config(project: Project, **options: Any) -> LLMAnnotatorConfig:
    saved = {k: v for k, v in (project.settings.get(SETTINGS_KEY) or {}).items() if k in SAVABLE}
    given = {k: v for k, v in options.items() if v is not None}
    return LLMAnnotatorConfig(
        labels=tuple(project.label_names),
        label_descriptions={label.name: label.description for label in project.labels if label.description},
        context_prompt="", task=project.description or project.name, **{**saved, **given},
    )


def select_items(db: sqlite_utils.Database, project_id: int, config: LLMAnnotatorConfig) -> list[tuple[int, str]]:
    """``(item id, text)`` of the items to label, minus those this annotator already labelled (unless overwrite)."""
    items = items_db.items_frame(db, project_id)
    if config.selection == "pool":
        items = items[items["in_pool"] == 1]
    elif config.selection == "test":
        items = items[items["split"] == "test"]
    elif config.selection == "ids":
        items = items[items["id"].isin(config.item_ids)]
    if not config.overwrite:
        annotations = items_db.annotations_frame(db, project_id)
        done = set(annotations.loc[annotations["annotator"] == config.annotator, "item_id"])
        if config.selection == "unlabelled":
            done |= set(annotations.loc[~annotations["annotator"].str.startswith(LLM_ANNOTATOR_PREFIX), "item_id"])
        items = items[~items["id"].isin(done)]
    return [(int(i), str(t)) for i, t in zip(items["id"], items["text"], strict=True)]


def start_llm_annotation(db: sqlite_utils.Database, project_id: int, *, launch: bool = True, **options: Any) -> int:
    config = build_config(get_project(db, project_id), **options)
    todo = select_items(db, project_id, config)
    if not todo:
        raise SynthloopError(f"no items to label for selection {config.selection!r}: "
                             "send items to annotation first or pick another selection")
    job_id = core_jobs.create(db, kind="llm_annotation", project_id=project_id, config=config.to_dict(), total=len(todo))
    if launch:
        core_jobs.launch(db_file(db), job_id)
    return job_id


def run_llm_annotation(db_path: str, job_id: int) -> dict[str, Any]:
    """``JOB_RUNNERS["llm_annotation"]``: label the selected items; unparseable replies are counted, not stored."""
    started = time.monotonic()
    db = connection.connect(db_path)
    try:
        job = jobs_db.get_job(db, job_id)
        config = LLMAnnotatorConfig.from_dict(job["config"])
        todo = select_items(db, int(job["project_id"]), config)
        backend = make_backend(config)
        limiter = RateLimiter(config.requests_per_minute)
        counts = {"labelled": 0, "unparsed": 0, "errors": 0}
        batch: list[dict[str, Any]] = []
        last_error = ""

        def label_one(item_id: int, text: str) -> tuple[int, str | None, float, str]:
            limiter.acquire()
            try:
                completion = backend.complete(build_messages(config, text), temperature=config.temperature,
                                              max_tokens=config.max_tokens, seed=config.seed)
            except BackendCallError as exc:
                if exc.fatal:
                    raise
                return item_id, None, 0.0, str(exc)
            return item_id, completion.text, completion.latency_s, ""

        def flush() -> bool:
            with transaction(db):
                items_db.insert_annotations(db, batch)
            batch.clear()
            return jobs_db.update_progress(db, job_id, done=sum(counts.values()), total=len(todo),
                                           message=f"{counts['labelled']} labelled", result=dict(counts))

        cancelled = False
        pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="llm-annotate")
        try:
            futures = [pool.submit(label_one, item_id, text) for item_id, text in todo]
            for future in as_completed(futures):
                item_id, reply, latency, error = future.result()
                if error:
                    counts["errors"] += 1
                    last_error = error
                else:
                    label = parse_label(reply, config.labels)
                    if label is None:
                        counts["unparsed"] += 1
                    else:
                        counts["labelled"] += 1
                        batch.append({"item_id": item_id, "annotator": config.annotator, "label": label,
                                      "seconds": round(latency, 3), "comment": ""})
                if len(batch) >= WRITE_BATCH and flush():
                    cancelled = True
                    break
        finally:
            # On cancel or a fatal error (bad key, unknown model) the queued calls are dropped, not run.
            pool.shutdown(wait=True, cancel_futures=True)
            if batch:
                flush()
        if not cancelled:
            flush()
        return {**counts, "annotator": config.annotator, "items": len(todo), "last_error": last_error,
                "seconds": round(time.monotonic() - started, 3)}
    finally:
        db.conn.close()
