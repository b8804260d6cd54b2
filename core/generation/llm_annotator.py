"""The LLM as one more annotator: the configured backend labels chosen items as annotator ``llm:<model>``,
so its agreement with people is measured like anyone's (job kind ``llm_annotation``).

Prompt building and label parsing are pure; the job runs the calls on a thread pool and writes the labels in
small transactions from the main thread.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import sqlite_utils

from core import jobs as core_jobs
from core.errors import SynthloopError
from core.generation.backends import BackendCallError, make_backend
from core.generation.config import BACKENDS, DEFAULT_OPENAI_BASE_URL, EMBEDDED_MODEL
from core.generation.jobs import RateLimiter
from core.projects import Project, get_project, update_settings
from core.store import db_file
from db import connection, transaction
from db import items as items_db
from db import jobs as jobs_db

JOB_KIND = "llm_annotation"
SETTINGS_KEY = "llm_annotator"  # project.settings: {"enabled": bool, "backend": …, "model": …, "base_url": …}
ANNOTATOR_PREFIX = "llm:"
Selection = Literal["pool", "unlabelled", "test", "all", "ids"]
SELECTIONS: tuple[str, ...] = get_args(Selection)
WRITE_BATCH = 20

DEFAULT_INSTRUCTION = (
    "Classify the text into exactly one of these labels:\n{label_lines}\n\n"
    "Answer with the label name only.\n\nText: {text}\nLabel:"
)


@dataclass(frozen=True)
class LLMAnnotatorConfig:
    labels: tuple[str, ...]
    backend: str = "embedded"
    model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 16
    concurrency: int = 4
    requests_per_minute: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 4
    seed: int = 0
    selection: Selection = "pool"
    item_ids: tuple[int, ...] = ()
    overwrite: bool = False
    label_descriptions: dict[str, str] | None = None
    context_prompt: str = ""
    task: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "item_ids", tuple(int(i) for i in self.item_ids))
        object.__setattr__(self, "label_descriptions", dict(self.label_descriptions or {}))
        if not self.labels:
            raise SynthloopError("the LLM annotator needs the project's labels")
        if self.backend not in BACKENDS:
            raise SynthloopError(f"backend {self.backend!r} is not valid: use one of {', '.join(BACKENDS)}")
        if not self.model.strip():
            if self.backend != "embedded":
                raise SynthloopError(f"the {self.backend} backend needs a model name: pass --model")
            object.__setattr__(self, "model", EMBEDDED_MODEL)
        if self.backend == "openai" and not self.base_url:
            object.__setattr__(self, "base_url", DEFAULT_OPENAI_BASE_URL)
        if self.selection not in SELECTIONS:
            raise SynthloopError(f"selection {self.selection!r} is not valid: use one of {', '.join(SELECTIONS)}")
        if self.selection == "ids" and not self.item_ids:
            raise SynthloopError("selection 'ids' needs item ids")
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 256:
            raise SynthloopError(f"concurrency {self.concurrency!r} is not valid: use 1 to 256")
        if not 0.0 <= float(self.temperature) <= 2.0:
            raise SynthloopError(f"temperature {self.temperature!r} is not valid: use 0 to 2")

    @property
    def annotator(self) -> str:
        return annotator_name(self.model)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["item_ids"] = list(self.item_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMAnnotatorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SynthloopError(f"unknown LLM annotator setting {unknown[0]!r}")
        return cls(**data)


def annotator_name(model: str) -> str:
    return f"{ANNOTATOR_PREFIX}{model}"


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
    """The project's LLM-annotator setting: ``enabled`` plus the saved backend options."""
    saved = dict(project.settings.get(SETTINGS_KEY) or {})
    return {"enabled": bool(saved.get("enabled", False)), **{k: saved[k] for k in SAVABLE if k in saved}}


def save_settings(db: sqlite_utils.Database, project_id: int, *, enabled: bool, **options: Any) -> LLMAnnotatorConfig:
    """Validate (by building a config) and store the setting; the key itself is never stored, only its variable."""
    project = get_project(db, project_id)
    config = build_config(project, **options)
    data = config.to_dict()
    update_settings(db, project_id, **{SETTINGS_KEY: {"enabled": bool(enabled),
                                                       **{k: data[k] for k in SAVABLE}}})
    return config


def list_jobs(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    return core_jobs.list_jobs(db, project_id=project_id, kind=JOB_KIND)


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
            done |= set(annotations.loc[~annotations["annotator"].str.startswith(ANNOTATOR_PREFIX), "item_id"])
        items = items[~items["id"].isin(done)]
    return [(int(i), str(t)) for i, t in zip(items["id"], items["text"], strict=True)]


def start_llm_annotation(db: sqlite_utils.Database, project_id: int, *, launch: bool = True, **options: Any) -> int:
    config = build_config(get_project(db, project_id), **options)
    todo = select_items(db, project_id, config)
    if not todo:
        raise SynthloopError(f"no items to label for selection {config.selection!r}: "
                             "send items to annotation first or pick another selection")
    job_id = core_jobs.create(db, kind=JOB_KIND, project_id=project_id, config=config.to_dict(), total=len(todo))
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
