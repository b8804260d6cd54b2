"""What pages and the CLI call for generation: settings and templates per project, prompt preview, test
connection, start / resume / cancel a job, and the job's live summary."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlite_utils

from core import jobs as core_jobs
from core.errors import NotFoundError, SynthloopError
from core.generation import prompts, rounds, steering
from core.generation.backends import make_backend
from core.generation.config import GenerationConfig, PromptTemplates
from core.generation.seeds import SeedExample, seed_counts, seed_examples, seed_warnings
from core.projects import Project, get_project, update_settings
from core.store import db_file
from core.vocab import ACTIVE_STATUSES
from db import generation as gen_db
from db import jobs as jobs_db
from db import transaction

JOB_KIND = "generation"
SETTINGS_KEY = "generation"  # project.settings["generation"]: the form's saved defaults
TEMPLATES_KEY = "prompt_templates"  # project.settings["prompt_templates"]: edited templates (only the changed ones)
# Options a project may save as its defaults (everything else is per job or comes from the project itself).
SAVABLE = ("backend", "model", "base_url", "api_key_env", "mode", "prompt_form", "per_label", "temperature",
           "max_tokens", "examples_per_prompt", "diversity_period", "conversation_turns", "word_limit", "style",
           "concurrency", "requests_per_minute", "near_duplicate_threshold", "seed_copy_threshold", "min_words",
           "max_words", "price_prompt_per_1k", "price_completion_per_1k", "seed", "timeout_s", "max_retries",
           "feedback", "feedback_min_labels", "feedback_min_agreement", "counter_examples_per_prompt", "grounding",
           "grounding_k", "grounding_candidates", "mmr_lambda", "attributes", "calls_per_label", "batch",
           "batch_poll_s")
# Options that mean something only with the backend they were set for: another backend starts them afresh.
BACKEND_SPECIFIC = ("model", "base_url")
RECENT_REJECTED = 100  # rejected outputs a job's summary lists, newest first


# --- settings and templates ----------------------------------------------------------------------------


def get_templates(project: Project) -> PromptTemplates:
    return PromptTemplates.from_dict(project.settings.get(TEMPLATES_KEY) or {})


def save_templates(db: sqlite_utils.Database, project_id: int, templates: dict[str, str]) -> PromptTemplates:
    """Validate and store edited templates; only those that differ from the defaults are kept."""
    validated = PromptTemplates.from_dict(templates)
    defaults = PromptTemplates().to_dict()
    changed = {k: v for k, v in validated.to_dict().items() if v != defaults[k]}
    update_settings(db, project_id, **{TEMPLATES_KEY: changed})
    return validated


def reset_templates(db: sqlite_utils.Database, project_id: int) -> PromptTemplates:
    update_settings(db, project_id, **{TEMPLATES_KEY: {}})
    return PromptTemplates()


def saved_options(project: Project) -> dict[str, Any]:
    return {k: v for k, v in (project.settings.get(SETTINGS_KEY) or {}).items() if k in SAVABLE}


def save_options(db: sqlite_utils.Database, project_id: int, **options: Any) -> GenerationConfig:
    """Validate (by building a config) and store the generation form's values as the project's defaults.

    The values are stored as given, not as the config resolves them: an "auto" (``None``) prompt form or number
    of turns stays "auto", and a blank model stays blank, so the config still decides for each job."""
    project = get_project(db, project_id)
    config = build_config(project, **options)
    update_settings(db, project_id, **{SETTINGS_KEY: {k: options[k] for k in SAVABLE if k in options}})
    return config


def config_defaults() -> dict[str, Any]:
    """What the CLI uses for an option it is not given: each ``GenerationConfig`` field's default, unresolved
    (``None`` leaves the choice to the config, e.g. the prompt form: list for the embedded model, else chat)."""
    defaults = {}
    for field in dataclasses.fields(GenerationConfig):
        if field.default is not dataclasses.MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def form_values(project: Project, backend: str | None = None) -> dict[str, Any]:
    """The generation form's starting values: the config defaults under the project's saved defaults, and the
    project's labels. For a ``backend`` other than the saved one, the backend-specific options (model, base URL)
    start from their defaults instead of keeping another backend's values."""
    defaults = config_defaults()
    values = {name: defaults[name] for name in SAVABLE}
    try:
        build_config(project)
        values.update(saved_options(project))
    except SynthloopError:  # saved defaults that no longer validate (e.g. a removed label): start clean
        pass
    if backend is not None and backend != values["backend"]:
        values.update({name: defaults[name] for name in BACKEND_SPECIFIC}, backend=backend)
    values["labels"] = list(project.label_names)
    return values


def estimate_cost(config: GenerationConfig, prompt: prompts.CallPrompt | None) -> dict[str, float]:
    """A rough cost for the whole target: one call per text, prompt tokens ≈ 1.3 × words of the first prompt,
    completion tokens ≈ the max-tokens cap (an upper bound)."""
    words = sum(len(m["content"].split()) for m in prompt.messages) if prompt else 0
    prompt_tokens = round(words * 1.3) * config.target_total
    completion_tokens = config.max_tokens * config.target_total
    return {"calls": config.target_total, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost": round(config.cost(prompt_tokens, completion_tokens), 4)}


def build_config(project: Project, *, saved_defaults: bool = True, **options: Any) -> GenerationConfig:
    """A validated config: the project's labels, descriptions, context prompt and templates, its saved defaults,
    then ``options`` (``None`` values are ignored: the option was not given).

    ``saved_defaults=False`` leaves the saved defaults out, for a caller that sends a whole form which started
    from them: an "auto" (``None``) it sends then means the config's own default, not the saved value."""
    given = {k: v for k, v in options.items() if v is not None}
    labels = given.pop("labels", None)
    if labels is None:
        labels = project.label_names
    elif not labels:
        raise SynthloopError("no labels to generate: pick at least one of the project's labels")
    unknown = sorted(set(labels) - set(project.label_names))
    if unknown:
        raise SynthloopError(f"label {unknown[0]!r} is not a label of project {project.name!r}: "
                             f"one of {project.label_names}")
    data: dict[str, Any] = {
        "labels": tuple(labels),
        "label_descriptions": {label.name: label.description for label in project.labels if label.description},
        "context_prompt": project.context_prompt,
        "task": project.description or project.name,
        "templates": get_templates(project),
        **(saved_options(project) if saved_defaults else {}),
        **given,
    }
    if "templates" in given and isinstance(given["templates"], dict):
        data["templates"] = PromptTemplates.from_dict(given["templates"])
    return GenerationConfig(**data)


# --- preview and connection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptPreview:
    settings: dict[str, list[prompts.CallPrompt]]  # "zero-shot", "few-shot" (and "list" when it differs)
    seed_counts: dict[str, int]
    warnings: list[str]
    feedback: rounds.Feedback | None  # what a feedback round started now would take (None: feedback is off)


def _variant(config: GenerationConfig, **changes: Any) -> GenerationConfig:
    data = config.to_dict()
    data.update(prompt_form=None, conversation_turns=None)
    data.update(changes)
    return GenerationConfig.from_dict(data)


def preview_prompts(db: sqlite_utils.Database, project_id: int, *, label: str | None = None,
                    **options: Any) -> PromptPreview:
    """The prompts both settings would send for one label, before any call, with the levers that are on
    (placeholders stand for replies and for retrieved texts; feedback, counter-examples and attributes are those a
    round started now would use)."""
    project = get_project(db, project_id)
    config = build_config(project, **options)
    seeds = seed_examples(db, project_id)
    few_shot = _variant(config, mode="few-shot", prompt_form="chat")
    feedback = rounds.gather_feedback(db, project_id, few_shot) if config.feedback else None
    examples = rounds.feedback_examples(db, feedback.example_ids) if feedback else {}
    counters = rounds.feedback_examples(db, feedback.counter_example_ids) if feedback else {}
    grounder = steering.PlaceholderGrounder(config.grounding_k) if config.grounding == "retrieval" else None

    def shown(variant: GenerationConfig, pool: list[SeedExample], calls: int) -> list[prompts.CallPrompt]:
        return prompts.preview(variant, pool, label=label, calls=calls, steer=lambda name, number: steering.steer(
            variant, name, number, grounder=grounder, counter_examples=counters.get(name, [])))

    zero = _variant(config, mode="zero-shot")
    settings = {"zero-shot": shown(zero, seeds, min(8, zero.diversity_period + 1) if zero.diversity_period else 2)}
    counts = seed_counts(db, project_id)
    warnings = []
    if seeds:
        with_confirmed = seeds + [example for confirmed in examples.values() for example in confirmed]
        settings["few-shot"] = shown(few_shot, with_confirmed, 2)
        settings["list"] = shown(_variant(config, mode="few-shot", prompt_form="list"), with_confirmed, 2)
        warnings = seed_warnings({k: v for k, v in counts.items() if k in config.labels}, config.examples_per_prompt)
    else:
        warnings = ["no seeds pinned yet: the few-shot preview needs seeds (Seeds page or `seeds sample`)"]
    if feedback is not None and config.mode != "few-shot":  # a zero-shot round shows no examples, confirmed or not
        feedback = dataclasses.replace(feedback, example_ids={})
    return PromptPreview(settings=settings, seed_counts=counts, warnings=warnings, feedback=feedback)


def test_connection(db: sqlite_utils.Database, project_id: int, **options: Any) -> str:
    """Reach the backend and make one tiny call; raises BackendError with what is wrong."""
    config = build_config(get_project(db, project_id), **options)
    return make_backend(config).check()


# --- jobs ----------------------------------------------------------------------------------------------


def _check_seeds(db: sqlite_utils.Database, project_id: int, config: GenerationConfig) -> list[str]:
    if config.mode != "few-shot":
        return []
    counts = seed_counts(db, project_id)
    if not any(counts.values()):
        raise SynthloopError("few-shot generation needs seeds, and this project has none: pin some on the Seeds "
                             "page or run `python -m core seeds sample PROJECT --per-label N`")
    if config.prompt_form == "list":
        empty = [label for label in config.labels if not counts.get(label)]
        if empty:
            raise SynthloopError(f"label {empty[0]!r} has no seeds, and the list form continues a list of the "
                                 "label's own seeds: pin some or use the chat form")
    return seed_warnings({k: v for k, v in counts.items() if k in config.labels}, config.examples_per_prompt)


def create_job(db: sqlite_utils.Database, project_id: int, config: GenerationConfig) -> int:
    """Queue a generation job (job row + generation_job row, one transaction); returns the job id."""
    _check_seeds(db, project_id, config)
    with transaction(db):
        config = rounds.frozen_for_round(db, project_id, config)
        job_id = core_jobs.create(db, kind=JOB_KIND, project_id=project_id, config=config.to_dict(),
                                  total=config.target_total, message="queued")
        gen_db.create_generation_job(db, project_id=project_id, job_id=job_id, config=config.to_dict())
    return job_id


def start_generation(db: sqlite_utils.Database, project_id: int, *, launch: bool = True, **options: Any) -> int:
    """Build the config, queue the job and (by default) start it in a detached process; returns the job id."""
    config = build_config(get_project(db, project_id), **options)
    job_id = create_job(db, project_id, config)
    if launch:
        core_jobs.launch(db_file(db), job_id)
    return job_id


def _generation_job(db: sqlite_utils.Database, job_id: int) -> dict[str, Any]:
    row = gen_db.get_generation_job_by_job(db, job_id)
    if row is None:
        raise NotFoundError(f"job {job_id} is not a generation job: see `python -m core job list`")
    return row


def job_project_id(db: sqlite_utils.Database, job_id: int) -> int:
    return int(_generation_job(db, job_id)["project_id"])


def resume_generation(db: sqlite_utils.Database, job_id: int, *, launch: bool = True) -> int:
    """Queue a failed, cancelled or killed job again; it generates only what is still missing per label."""
    generation_job = _generation_job(db, job_id)
    core_jobs.fail_orphaned_jobs(db)
    job = core_jobs.get(db, job_id)
    if job["status"] in ACTIVE_STATUSES:
        raise SynthloopError(f"job {job_id} is still {job['status']}: cancel it first or wait for it to finish")
    config = GenerationConfig.from_dict(generation_job["config"])
    done = gen_db.accepted_per_label(db, int(generation_job["id"]))
    if not _below_target(config, done):
        target = (f"{config.per_label} per label" if not config.label_targets else
                  ", ".join(f"{label} {config.target_for(label)}" for label in config.labels))
        raise SynthloopError(f"job {job_id} already reached its target of {target}: "
                             "start a new job to generate more")
    with transaction(db):
        if not jobs_db.reset_for_resume(db, job_id):  # another resume queued it since the check above
            status = core_jobs.get(db, job_id)["status"]
            raise SynthloopError(f"job {job_id} is still {status}: cancel it first or wait for it to finish")
        gen_db.set_status(db, int(generation_job["id"]), "queued")
    if launch:
        core_jobs.launch(db_file(db), job_id)
    return job_id


def _below_target(config: GenerationConfig, accepted: Mapping[str, int]) -> bool:
    return any(accepted.get(label, 0) < config.target_for(label) for label in config.labels)


def is_resumable(status: str, config: GenerationConfig, accepted: Mapping[str, int]) -> bool:
    """Whether a job can be resumed: it is neither queued nor running, and a label is below its target (the
    job failed, was cancelled or killed, or stopped when its call budget ran out)."""
    return status not in ACTIVE_STATUSES and _below_target(config, accepted)


def cancel_generation(db: sqlite_utils.Database, job_id: int) -> None:
    _generation_job(db, job_id)
    core_jobs.cancel(db, job_id)


def run_in_foreground(db: sqlite_utils.Database, job_id: int) -> GenerationJobSummary:
    """Run a queued job in this process with the same runner the app launches (the CLI's ``generate``)."""
    job = core_jobs.run(db_file(db), job_id)
    if job["status"] == "failed":
        raise SynthloopError(f"generation job {job_id} failed: {job['error'].splitlines()[0] if job['error'] else ''}")
    return job_summary(db, job_id)


SURPLUS_REASON = "target_reached"  # an outcome that is no quality verdict: the label already had enough


@dataclass(frozen=True)
class GenerationJobSummary:
    """One generation job as the Generate page and ``generate --json`` show it. ``active``: queued or running;
    ``resumable``: see :func:`is_resumable`; ``eta_s`` only while running."""

    job_id: int
    generation_job_id: int
    status: str
    active: bool
    resumable: bool
    message: str
    error: str
    mode: str
    backend: str
    model: str
    round: int
    target_per_label: int
    targets: dict[str, int]  # per label: per_label, or more where feedback found people doubting the label
    accepted_per_label: dict[str, int]
    accepted: int
    target: int
    rejected: dict[str, int]
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    mean_latency_s: float | None
    cost: float
    eta_s: float | None
    seconds: float | None
    created_at: str
    finished_at: str | None
    config: dict[str, Any]

    @property
    def surplus(self) -> int:
        """Texts that passed every filter but came after their label's target was reached (not a rejection)."""
        return self.rejected.get(SURPLUS_REASON, 0)

    @property
    def rejected_by_filters(self) -> int:
        return sum(n for reason, n in self.rejected.items() if reason != SURPLUS_REASON)


def job_summary(db: sqlite_utils.Database, job_id: int) -> GenerationJobSummary:
    """Status, per-label progress (accepted/target), rejections by reason, tokens, cost and ETA of one job."""
    generation_job = _generation_job(db, job_id)
    job = core_jobs.watch(db, job_id)  # the Generate page polls this: a dead job shows as failed
    gid = int(generation_job["id"])
    config = GenerationConfig.from_dict(generation_job["config"])
    accepted = gen_db.accepted_per_label(db, gid)
    totals = gen_db.call_totals(db, gid)
    live = job["result"] or {}
    return GenerationJobSummary(
        job_id=job_id, generation_job_id=gid, status=job["status"], active=job["status"] in ACTIVE_STATUSES,
        resumable=is_resumable(job["status"], config, accepted), message=job["message"], error=job["error"],
        mode=config.mode, backend=config.backend, model=config.model, round=int(generation_job["round"] or 0),
        target_per_label=config.per_label, targets={label: config.target_for(label) for label in config.labels},
        accepted_per_label={label: int(accepted.get(label, 0)) for label in config.labels},
        accepted=int(sum(accepted.get(label, 0) for label in config.labels)), target=config.target_total,
        rejected=gen_db.rejected_by_reason(db, gid), calls=totals["calls"], failed_calls=totals["failed_calls"],
        prompt_tokens=totals["prompt_tokens"], completion_tokens=totals["completion_tokens"],
        mean_latency_s=totals["mean_latency_s"],
        cost=round(config.cost(totals["prompt_tokens"], totals["completion_tokens"]), 6),
        eta_s=live.get("eta_s") if job["status"] == "running" else None, seconds=live.get("seconds"),
        created_at=job["created_at"], finished_at=job["finished_at"], config=config.to_dict(),
    )


def list_generation_jobs(db: sqlite_utils.Database, project_id: int) -> pd.DataFrame:
    core_jobs.fail_orphaned_jobs(db)
    rows = gen_db.list_generation_jobs(db, project_id)
    return pd.DataFrame([
        {"job_id": r["job_id"], "round": r["round"], "status": r["job_status"], "mode": r["config"].get("mode"),
         "model": r["config"].get("model"), "per_label": r["config"].get("per_label"), "accepted": r["n_accepted"],
         "rejected": r["n_rejected"], "calls": r["n_calls"], "cost": round(r["cost"], 4),
         "created_at": r["job_created_at"], "message": r["job_message"]}
        for r in rows
    ], columns=["job_id", "round", "status", "mode", "model", "per_label", "accepted", "rejected", "calls", "cost",
                "created_at", "message"])


def rejected_outputs(db: sqlite_utils.Database, job_id: int, *, limit: int = RECENT_REJECTED) -> pd.DataFrame:
    """One row per rejected text or failed call of the job, newest first: label, text, reason, error."""
    gid = int(_generation_job(db, job_id)["id"])
    calls = gen_db.calls_frame(db, gid, limit=limit, only_with_rejections=True)
    rows = []
    for call in calls.itertuples():
        if call.error:
            rows.append({"call_id": call.id, "label": call.label, "text": (call.raw_output or ""), "reason": "error",
                         "detail": call.error})
        for outcome in json.loads(call.outcomes or "[]"):
            if not outcome.get("accepted"):
                detail = ""
                if outcome.get("similarity") is not None:
                    detail = f"similarity {outcome['similarity']:.2f} to item {outcome.get('match_id')}"
                rows.append({"call_id": call.id, "label": call.label, "text": outcome.get("text", ""),
                             "reason": outcome.get("reason"), "detail": detail})
    return pd.DataFrame(rows, columns=["call_id", "label", "text", "reason", "detail"])


def api_key_present(env_name: str) -> bool:
    """Whether a key is available (for the page's hint) — the key itself is never returned, and a variable that
    may not be sent is not even looked at (the hint would tell which secrets the server holds)."""
    from core.generation.api_keys import allowed_key_variables, resolve_api_key

    if env_name not in allowed_key_variables():
        return False
    return bool(os.environ.get(env_name)) or resolve_api_key(env_name) is not None
