"""Crowd studies: a link that brings a platform's workers (Prolific, MTurk, any other) to one project.

- A **study** belongs to one project and carries a random, unguessable token, the platform, and its settings
  (:class:`StudySettings`: quota, completion and screened-out codes, completion URL, gold rate, qualification
  threshold). :func:`study_url` is the link to give the platform, with the platform's placeholders.
- **Arrival** (:func:`arrive`): opening the link with the platform's worker id creates or resumes the worker's
  annotator identity, user ``<platform>:<worker id>`` (no password; only a crowd link logs it in), and records
  the platform's ids, first and last seen. The worker becomes a member of the study's project and of no other
  (core.projects: the picker and the Annotate page show members their projects only), and every queue function
  here refuses another project too (:func:`confined_project`).
- **The worker's queue**: the Annotate page calls :func:`next_item`, :func:`submit_label`, :func:`skip_item`,
  :func:`progress` and :func:`ending` for everyone; for an annotator who is not a crowd worker they are
  core.annotation.assignment's. A worker first answers the project's qualification checks (if any); below the
  study's threshold they are screened out. Then quality checks (gold items and attention checks,
  core.annotation.quality) are mixed into their real items at the study's gold rate, shown like any item; a
  check's answer is stored apart and never counts as a data label. After ``quota`` items (checks included), or
  when their queue ends, the worker has completed the study and sees its completion code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlite_utils

from core import projects
from core.annotation import assignment
from core.annotation.assignment import AssignedItem, Progress
from core.annotation.quality import Check, get_check, quality_report
from core.config import Config, check_number, setting
from core.data.tables import csv_bytes, write_csv
from core.errors import NotFoundError, PermissionDenied, SynthloopError
from core.projects import Project
from core.users import User
from core.vocab import CROWD_PLATFORMS, CrowdPlatform, WorkerStatus
from db import crowd as crowd_db
from db import now as db_now
from db import projects as projects_db
from db import transaction
from db import users as users_db

STUDY_PARAM = "study"  # the query parameter that carries a study's token
PUBLIC_URL_ENV = "SYNTHLOOP_PUBLIC_URL"
DEFAULT_BASE_URL = "http://localhost:8501"
CODE_PLACEHOLDER = "{code}"  # in a completion URL: replaced by the code of the worker's ending
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"  # MTurk's assignmentId while a worker only previews the HIT
ATTENTION_ITEM_ID = 0  # the item id an attention check is shown with: it is no item (ids start at 1)
_TOKEN_BYTES = 18  # 144 random bits, 24 URL-safe characters


@dataclass(frozen=True)
class Platform:
    """How a platform sends its workers: the query parameters with the worker's, study's and session's ids,
    and what the study URL adds after its token (the platform fills the placeholders in)."""

    name: str  # "Prolific", "MTurk"; empty for a generic platform
    worker_param: str
    study_param: str | None
    session_param: str | None
    placeholders: str
    note: str


PLATFORMS: dict[str, Platform] = {
    "prolific": Platform(
        "Prolific", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID",
        "&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
        "give it as the study URL on Prolific (it fills in PROLIFIC_PID, STUDY_ID and SESSION_ID)"),
    "mturk": Platform(
        "MTurk", "workerId", "hitId", "assignmentId", "",
        "give it as the ExternalQuestion URL of the HIT (MTurk adds workerId, assignmentId and hitId)"),
    "generic": Platform(
        "", "worker", None, None, "&worker={WORKER_ID}",
        "replace {WORKER_ID} with each worker's id (letters, digits, '.', '_', '-')"),
}
# Platform ids: letters and digits (Prolific, MTurk); a generic id may also have '.', '_' and '-'. An id still
# holding its placeholder ({{%PROLIFIC_PID%}}, {WORKER_ID}) never matches.
_WORKER_ID = {"prolific": re.compile(r"[A-Za-z0-9]{1,64}"), "mturk": re.compile(r"[A-Za-z0-9]{1,64}"),
              "generic": re.compile(r"[A-Za-z0-9._-]{1,64}")}
_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


# ---------------------------------------------------------------------------------------------- studies


@dataclass(frozen=True)
class StudySettings(Config):
    """A crowd study's settings (stored with the study)."""

    KIND = "crowd study setting"

    quota: int | None = setting(None, "items each worker labels, quality checks included (none: until the"
                                      " worker's queue ends)")
    completion_code: str = setting("", "the code a worker who finished is shown (the platform pays on it)")
    completion_url: str = setting("", "where a worker who finished returns to (e.g. Prolific's completion URL);"
                                      " {code} in it is replaced by the worker's code")
    screened_out_code: str = setting("", "the code a worker who failed the qualification is shown (the"
                                         " platform's screened-out path)")
    gold_rate: float = setting(0.0, "share of a worker's items that are quality checks (gold items and attention"
                                    " checks), e.g. 0.1")
    qualification_threshold: float = setting(0.8, "share of the qualification checks a worker must answer"
                                                  " correctly before real items")

    def __post_init__(self) -> None:
        if self.quota is not None and (isinstance(self.quota, bool) or not isinstance(self.quota, int)
                                       or not 1 <= self.quota <= 100_000):
            raise SynthloopError(f"{{quota}} {self.quota!r} is not valid: use a whole number from 1 to 100000,"
                                 " or none", fields=("quota",))
        for name in ("completion_code", "screened_out_code"):
            code = getattr(self, name)
            if code and not _CODE.fullmatch(code):
                raise SynthloopError(f"{{{name}}} {code!r} is not valid: use 1-64 letters, digits, '_' or '-'",
                                     fields=(name,))
        url = self.completion_url
        if url and (not re.match(r"https?://[^\s/]+", url) or any(c.isspace() for c in url) or len(url) > 2000):
            raise SynthloopError(f"{{completion_url}} {url[:80]!r} is not valid: give an http:// or https://"
                                 " address", fields=("completion_url",))
        for name, high in (("gold_rate", 0.5), ("qualification_threshold", 1.0)):
            try:
                check_number(name, getattr(self, name), 0.0, high)
            except SynthloopError:
                raise SynthloopError(f"{{{name}}} {getattr(self, name)!r} is not valid: use a number from 0 to"
                                     f" {high:g}", fields=(name,)) from None


@dataclass(frozen=True)
class Study:
    id: int
    project_id: int
    platform: CrowdPlatform
    token: str
    settings: StudySettings
    created_at: str = ""


def _study(row: Mapping[str, Any]) -> Study:
    return Study(id=row["id"], project_id=row["project_id"], platform=row["platform"], token=row["token"],
                 settings=StudySettings.from_dict(json.loads(row["settings"]), strict=False),
                 created_at=row.get("created_at", ""))


def base_url(given: str | None = None) -> str:
    """Where workers reach the app: ``given``, else ``$SYNTHLOOP_PUBLIC_URL``, else http://localhost:8501."""
    url = (given or os.environ.get(PUBLIC_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s?#]+", url):
        raise SynthloopError(f"{{base_url}} {url[:80]!r} is not valid: give the app's public address, e.g."
                             " https://synthloop.example.org", fields=("base_url",))
    return url


def suggested_base_url(seen: str = "") -> str:
    """The address to offer for a page's study links: ``$SYNTHLOOP_PUBLIC_URL``, else the address the
    researcher's browser reached the app by (``seen``), else the default."""
    return os.environ.get(PUBLIC_URL_ENV) or seen or DEFAULT_BASE_URL


def study_url(study: Study, base: str | None = None) -> str:
    """The link to give the platform: the app's address, the study's token and the platform's placeholders."""
    return f"{base_url(base)}/?{STUDY_PARAM}={study.token}{PLATFORMS[study.platform].placeholders}"


def create_study(db: sqlite_utils.Database, project: Project, platform: str,
                 settings: StudySettings | None = None) -> Study:
    if platform not in CROWD_PLATFORMS:
        raise SynthloopError(f"{{platform}} {platform!r} is not one of {', '.join(CROWD_PLATFORMS)}",
                             fields=("platform",))
    settings = settings or StudySettings()
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    with transaction(db):
        study_id = crowd_db.create_study(db, project_id=project.id, platform=platform, token=token,
                                         settings=json.dumps(settings.to_dict()))
    return get_study(db, project, study_id)


def get_study(db: sqlite_utils.Database, project: Project, study_id: int) -> Study:
    row = crowd_db.get_study(db, study_id)
    if row is None or row["project_id"] != project.id:
        raise NotFoundError(f"no crowd study {study_id} in project {project.name!r}")
    return _study(row)


STUDY_COLUMNS = ("study_id", "platform", "url", "quota", "workers", "working", "completed", "screened_out",
                 "excluded", "items_done", "completion_code", "screened_out_code", "completion_url", "gold_rate",
                 "qualification_threshold", "created_at")


def studies_table(db: sqlite_utils.Database, project: Project, *, base: str | None = None) -> pd.DataFrame:
    """The project's studies, newest first (``STUDY_COLUMNS``): their link, workers by status (``completed``
    and ``screened_out`` as they ended, ``working`` and ``excluded`` now) and the items their workers have done
    (labels and checks)."""
    workers = workers_table(db, project)
    rows = []
    for row in crowd_db.list_studies(db, project.id):
        study = _study(row)
        mine = workers[workers["study_id"] == study.id]
        rows.append({
            "study_id": study.id, "platform": study.platform, "url": study_url(study, base),
            "quota": study.settings.quota, "workers": int(row["workers"]),
            "working": int((mine["status"] == "working").sum()), "completed": int(row["completed"]),
            "screened_out": int(row["screened_out"]), "excluded": int((mine["status"] == "excluded").sum()),
            "items_done": int(mine["items_done"].sum()),
            "completion_code": study.settings.completion_code, "screened_out_code": study.settings.screened_out_code,
            "completion_url": study.settings.completion_url, "gold_rate": study.settings.gold_rate,
            "qualification_threshold": study.settings.qualification_threshold, "created_at": study.created_at,
        })
    return pd.DataFrame(rows, columns=list(STUDY_COLUMNS))


# ---------------------------------------------------------------------------------------------- arrival


@dataclass(frozen=True)
class Arrival:
    user: User
    project_id: int
    study_id: int


def crowd_username(platform: str, worker_id: str) -> str:
    return f"{platform}:{worker_id}"


def arrive(db: sqlite_utils.Database, token: str, params: Mapping[str, str]) -> Arrival:
    """The worker a study link names (``params``: the link's query parameters), created on first arrival.

    Every message is meant for the worker: polite, and saying what to do.
    """
    row = crowd_db.study_by_token(db, str(token).strip()) if str(token).strip() else None
    if row is None:
        raise SynthloopError("This study link is not valid. Please open the study again from the page where you"
                             " found it, or contact the researcher.")
    study = _study(row)
    platform = PLATFORMS[study.platform]
    session_id = str(params.get(platform.session_param, "")).strip() if platform.session_param else ""
    if study.platform == "mturk" and session_id == MTURK_PREVIEW:
        raise SynthloopError("Please accept the HIT to start: the task opens once you have accepted it.")
    worker_id = str(params.get(platform.worker_param, "")).strip()
    where = platform.name or "the study's page"
    if not worker_id:
        raise SynthloopError(f"This link does not carry your worker ID. Please open the study from {where}"
                             " again, or contact the researcher.")
    if not _WORKER_ID[study.platform].fullmatch(worker_id):
        raise SynthloopError(f"The worker ID in this link is not valid. Please open the study from {where}"
                             " again, or contact the researcher.")
    platform_study = str(params.get(platform.study_param, "")).strip()[:128] if platform.study_param else ""
    username = crowd_username(study.platform, worker_id)
    with transaction(db):
        user_row = users_db.get_user_by_name(db, username)
        if user_row is None:
            user_id = users_db.create_user(db, username=username, role="annotator",
                                           display_name=f"{platform.name or 'Crowd'} worker")
            user_row = users_db.get_user(db, user_id)
        if user_row["role"] != "annotator":  # a crowd identity an admin promoted must not log in by a link
            raise PermissionDenied("This account cannot start a study from a link. Please contact the researcher.")
        crowd_db.arrive(db, study_id=study.id, user_id=user_row["id"], annotator=user_row["username"],
                        worker_id=worker_id, platform_study_id=platform_study, platform_session_id=session_id[:128])
        # The worker is a member of their study's project, and of no other: the project picker and the Annotate
        # page's access check (core.projects) then show them this project alone.
        for other in projects_db.member_projects(db, user_row["id"]) - {study.project_id}:
            projects.remove_member(db, other, user_row["id"])
        projects.add_member(db, study.project_id, user_row["id"])
    user = User(user_row["id"], user_row["username"], user_row["role"], user_row["display_name"])
    return Arrival(user=user, project_id=study.project_id, study_id=study.id)


# ------------------------------------------------------------------------------------- the worker's queue


@dataclass(frozen=True)
class _Worker:
    id: int
    annotator: str
    study: Study
    status: str
    qualified: bool | None
    pending_check_id: int | None


def _worker(db: sqlite_utils.Database, annotator: str) -> _Worker | None:
    row = crowd_db.current_worker(db, annotator)
    if row is None:
        return None
    study = _study({"id": row["study_id"], "project_id": row["project_id"], "platform": row["platform"],
                    "token": row["study_token"], "settings": row["study_settings"]})
    return _Worker(id=row["id"], annotator=annotator, study=study, status=row["status"],
                   qualified=None if row["qualified"] is None else bool(row["qualified"]),
                   pending_check_id=row["pending_check_id"])


def confined_project(db: sqlite_utils.Database, annotator: str) -> int | None:
    """The only project a crowd worker may see (their latest study's); None for everyone else."""
    worker = _worker(db, annotator)
    return None if worker is None else worker.study.project_id


def _confine(worker: _Worker, project: Project) -> None:
    if worker.study.project_id != project.id:
        raise PermissionDenied("This project is not part of your study: reload the page to return to your task.")


def _draw(worker: _Worker, *parts: object) -> float:
    """A number in [0, 1) fixed by the study's secret token, the worker and ``parts``: the same on every reload,
    unpredictable to the worker."""
    text = ":".join(str(p) for p in (worker.study.token, worker.annotator, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def _main_done(db: sqlite_utils.Database, project: Project, worker: _Worker) -> int:
    """Items of the main phase the worker has done: their data labels and their answers to mixed-in checks."""
    answered = crowd_db.answer_counts(db, project_id=project.id, annotator=worker.annotator)
    return crowd_db.count_data_labels(db, project_id=project.id, annotator=worker.annotator) + answered.get(
        "main", (0, 0))[0]


def _shown(check: Check) -> AssignedItem:
    """A check as the page shows it: like any item. The worker's pending check (kept on their row) is what
    tells, server-side, that a label for this item id answers the check."""
    return AssignedItem(item_id=check.item_id or ATTENTION_ITEM_ID, text=check.text)


def _serve(db: sqlite_utils.Database, project: Project, worker: _Worker, check_ids: list[int]) -> AssignedItem:
    """Hand out one of ``check_ids`` (in the worker's own shuffled order) and keep it until it is answered."""
    check_id = min(check_ids, key=lambda check_id: _draw(worker, "check", check_id))
    crowd_db.update_worker(db, worker.id, pending_check_id=check_id)
    return _shown(get_check(db, project, check_id))


def _finish(db: sqlite_utils.Database, worker: _Worker, status: WorkerStatus) -> None:
    crowd_db.update_worker(db, worker.id, status=status, finished_at=db_now(), pending_check_id=None)


def next_item(db: sqlite_utils.Database, project: Project, annotator: str, *,
              at: datetime | None = None) -> AssignedItem | None:
    """What ``annotator`` labels now (:func:`core.annotation.assignment.next_item` for a non-crowd annotator);
    None when their queue is empty or, for a worker, their study has ended (see :func:`ending`)."""
    worker = _worker(db, annotator)
    if worker is None:
        return assignment.next_item(db, project, annotator, at=at)
    _confine(worker, project)
    with transaction(db):
        worker = _worker(db, annotator)  # again under the write lock: two tabs must not both hand out an item
        if worker.status != "working":
            return None
        crowd_db.update_worker(db, worker.id, last_seen=db_now())
        if worker.pending_check_id is not None:  # a reload shows the same check
            return _shown(get_check(db, project, worker.pending_check_id))
        done = _main_done(db, project, worker)
        if worker.qualified is None and done == 0:
            todo = crowd_db.unanswered_checks(db, project_id=project.id, annotator=annotator, qualification=True)
            if todo:
                return _serve(db, project, worker, todo)
        quota = worker.study.settings.quota
        if quota is not None and done >= quota:
            _finish(db, worker, "completed")
            return None
        if _draw(worker, "position", done + 1) < worker.study.settings.gold_rate:
            todo = crowd_db.unanswered_checks(db, project_id=project.id, annotator=annotator, qualification=False)
            if todo:
                return _serve(db, project, worker, todo)
        item = assignment.next_item(db, project, annotator, at=at)
        if item is None:
            _finish(db, worker, "completed")
        return item


def _after_answer(db: sqlite_utils.Database, project: Project, worker: _Worker) -> None:
    """End the qualification (pass or screen out) or the study (quota reached) when the last answer did."""
    if worker.qualified is None and not crowd_db.unanswered_checks(
            db, project_id=project.id, annotator=worker.annotator, qualification=True):
        answered, correct = crowd_db.answer_counts(db, project_id=project.id,
                                                   annotator=worker.annotator).get("qualification", (0, 0))
        if answered:
            passed = correct / answered >= worker.study.settings.qualification_threshold - 1e-9
            crowd_db.update_worker(db, worker.id, qualified=int(passed))
            if not passed:
                _finish(db, worker, "screened_out")
                return
    quota = worker.study.settings.quota
    if quota is not None and _main_done(db, project, worker) >= quota:
        _finish(db, worker, "completed")


def _pending_check(db: sqlite_utils.Database, project: Project, worker: _Worker, item_id: int) -> Check | None:
    """The check the worker was shown as ``item_id`` (see :func:`_shown`) and has not answered yet."""
    if worker.pending_check_id is None:
        return None
    check = get_check(db, project, worker.pending_check_id)
    return check if (check.item_id or ATTENTION_ITEM_ID) == item_id else None


def _answered_check(db: sqlite_utils.Database, project: Project, worker: _Worker, item_id: int) -> bool:
    """Whether ``item_id`` names a check the worker answered already (a second click, a second tab)."""
    return item_id == ATTENTION_ITEM_ID or crowd_db.answered_gold_item(
        db, project_id=project.id, annotator=worker.annotator, item_id=item_id)


def _answer(db: sqlite_utils.Database, project: Project, worker: _Worker, check: Check, label: str | None,
            seconds: float | None) -> bool:
    """Record the worker's answer to the check they were shown (inside the caller's transaction)."""
    phase = "qualification" if check.qualification else "main"
    stored = crowd_db.add_answer(db, check_id=check.id, study_id=worker.study.id, annotator=worker.annotator,
                                 phase=phase, label=label, correct=check.is_correct(label), seconds=seconds)
    crowd_db.update_worker(db, worker.id, pending_check_id=None, last_seen=db_now())
    if worker.status == "working":
        _after_answer(db, project, worker)
    return stored


def submit_label(db: sqlite_utils.Database, project: Project, annotator: str, item_id: int, label: str, *,
                 unsure: bool = False, comment: str = "", seconds: float | None = None) -> bool:
    """Store the label of the item shown (:func:`core.annotation.assignment.submit_label`); for a crowd worker
    shown a quality check, their answer to it instead (never a data label). True when new."""
    worker = _worker(db, annotator)
    if worker is None:
        return assignment.submit_label(db, project, annotator, item_id, label, unsure=unsure, comment=comment,
                                       seconds=seconds)
    _confine(worker, project)
    if label not in project.label_names:
        raise SynthloopError(f"label {label!r} is not one of the project's labels {project.label_names}")
    with transaction(db):
        worker = _worker(db, annotator)
        check = _pending_check(db, project, worker, item_id)
        if check is not None:
            return _answer(db, project, worker, check, label, seconds)
        if _answered_check(db, project, worker, item_id):
            return False
        is_new = assignment.submit_label(db, project, annotator, item_id, label, unsure=unsure, comment=comment,
                                         seconds=seconds)
        if is_new:
            crowd_db.update_worker(db, worker.id, last_seen=db_now())
            if worker.status == "working":
                _after_answer(db, project, worker)
    return is_new


def skip_item(db: sqlite_utils.Database, project: Project, annotator: str, item_id: int, *,
              at: datetime | None = None) -> None:
    """Set the item aside (:func:`core.annotation.assignment.skip_item`). A skipped check is answered with no
    label: it counts as not correct, and does not come back."""
    worker = _worker(db, annotator)
    if worker is None:
        assignment.skip_item(db, project, annotator, item_id, at=at)
        return
    _confine(worker, project)
    with transaction(db):
        worker = _worker(db, annotator)
        check = _pending_check(db, project, worker, item_id)
        if check is not None:
            _answer(db, project, worker, check, None, None)
        elif not _answered_check(db, project, worker, item_id):
            assignment.skip_item(db, project, annotator, item_id, at=at)


def progress(db: sqlite_utils.Database, project: Project, annotator: str, *, at: datetime | None = None) -> Progress:
    """``annotator``'s progress (:func:`core.annotation.assignment.progress`). A worker's counts every item
    shown to them — checks too, so that they look like any item — out of the quota plus the qualification."""
    worker = _worker(db, annotator)
    if worker is None:
        return assignment.progress(db, project, annotator, at=at)
    _confine(worker, project)
    answered = crowd_db.answer_counts(db, project_id=project.id, annotator=annotator)
    qualification = answered.get("qualification", (0, 0))[0]
    done = (crowd_db.count_data_labels(db, project_id=project.id, annotator=annotator) + qualification
            + answered.get("main", (0, 0))[0])
    if worker.qualified is None and done == qualification:  # still qualifying: all of its checks lie ahead
        qualification = crowd_db.count_checks(db, project.id, qualification=True)
    quota = worker.study.settings.quota
    if quota is None:
        return Progress(done=done, remaining=assignment.progress(db, project, annotator, at=at).remaining, skipped=0)
    return Progress(done=done, remaining=max(0, quota + qualification - done), skipped=0)


@dataclass(frozen=True)
class Ending:
    """How a worker's study ended: what the end screen says, the code to give the platform, and where to
    return to (empty when the study names no completion URL for this ending)."""

    status: WorkerStatus
    message: str
    code: str
    url: str
    platform: str  # the platform's name, for "Return to Prolific" (empty for a generic platform)


def ending(db: sqlite_utils.Database, project: Project, annotator: str) -> Ending | None:
    """The end of ``annotator``'s study (completed or screened out); None while it goes on, and for anyone who
    is not a crowd worker."""
    worker = _worker(db, annotator)
    if worker is None or worker.status == "working" or worker.study.project_id != project.id:
        return None
    settings = worker.study.settings
    if worker.status == "screened_out":
        code = settings.screened_out_code
        url = settings.completion_url.replace(CODE_PLACEHOLDER, code) if CODE_PLACEHOLDER in \
            settings.completion_url and code else ""
        message = ("Thank you for your time. Your answers to the first items did not match what this study needs,"
                   " so it ends here for you.")
    else:
        code = settings.completion_code
        url = settings.completion_url.replace(CODE_PLACEHOLDER, code)
        message = "Thank you: you have finished this study."
    return Ending(status=worker.status, message=message, code=code, url=url,
                  platform=PLATFORMS[worker.study.platform].name)


# ---------------------------------------------------------------------------------------------- workers

WORKER_COLUMNS = ("study_id", "platform", "worker_id", "platform_study_id", "platform_session_id", "annotator",
                  "status", "first_seen", "last_seen", "finished_at", "time_on_task_s", "items_done", "n_labels",
                  "gold_accuracy", "qualification_score")


def workers_table(db: sqlite_utils.Database, project: Project) -> pd.DataFrame:
    """Every worker of the project's studies (``WORKER_COLUMNS``), a row per (study, worker): platform ids,
    first and last seen, status (``excluded`` when the project excluded them), time on task (seconds spent on
    items, checks included), items done (labels and checks answered) and their quality figures."""
    report = quality_report(db, project)
    report["items_done"] = report["n_labels"] + report["n_gold"] + report["n_attention"] + report["n_qualification"]
    figures = report[["annotator", "excluded", "time_on_task_s", "items_done", "n_labels", "gold_accuracy",
                      "qualification_score"]]
    table = crowd_db.workers_frame(db, project.id).merge(figures, on="annotator", how="left")
    table.loc[table["excluded"].astype("boolean").fillna(False).astype(bool), "status"] = "excluded"
    return table[list(WORKER_COLUMNS)].reset_index(drop=True)


def workers_csv(db: sqlite_utils.Database, project: Project) -> bytes:
    """:func:`workers_table` as CSV bytes (the page's download), through the project's one CSV writer."""
    return csv_bytes(workers_table(db, project))


def export_workers(db: sqlite_utils.Database, project: Project, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write :func:`workers_table` as CSV (through the project's one CSV writer)."""
    table = workers_table(db, project)
    target = write_csv(table, path)
    return {"rows": len(table), "path": str(target)}
