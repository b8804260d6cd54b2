"""An LLM panel: several LLM annotators label the same items, one after the other.

A member is an :class:`LLMAnnotatorConfig` with its own annotator name: ``llm:<model>`` for a model of its own,
``llm:<model>/<variant>`` for an instruction variant. A panel file is a JSON list of members, each an object of
LLM-annotator settings (backend, model, base_url, api_key_env, temperature, instruction_variant, instruction …).
Every member is validated before any call, so a bad member writes nothing; the project's labels and task and the
item selection are the panel's, not a member's. The panel's figures are in :mod:`core.agreement.panel`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import sqlite_utils

from core import jobs as core_jobs
from core.errors import SynthloopError
from core.generation.llm_annotator import PROJECT_FIELDS, LLMAnnotatorConfig, project_fields, queue_job
from core.projects import Project
from core.store import db_file

PANEL_SELECTION = "synthetic"  # what a panel labels unless told otherwise: the synthetic items it vouches for
PANEL_WIDE = ("selection", "item_ids", "overwrite")  # set for the whole panel, so every member labels the same items
MEMBER_KEYS = tuple(f.name for f in fields(LLMAnnotatorConfig) if f.name not in (*PROJECT_FIELDS, *PANEL_WIDE))
EXAMPLE = '[{"backend": "openai", "model": "gpt-4o-mini"}, {"backend": "openai", "model": "gpt-4o"}]'


def read_panel_file(path: str | Path) -> list[dict[str, Any]]:
    """The members of a panel file (a JSON list of objects), checked for shape and known keys only."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SynthloopError(f"cannot read the panel file {str(path)!r} ({exc.strerror or exc}): give the path of a "
                             f"JSON file with a list of members, e.g. {EXAMPLE}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynthloopError(f"the panel file {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                             f"{exc.colno}): write a list of member objects, e.g. {EXAMPLE}") from None
    return check_members(data)


def check_members(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not data:
        raise SynthloopError(f"a panel is a JSON list of at least one member object, not {type(data).__name__} "
                             f"{_short(data)}: write e.g. {EXAMPLE}")
    for number, member in enumerate(data, start=1):
        if not isinstance(member, dict):
            raise SynthloopError(f"panel member {number} is {type(member).__name__} {_short(member)}, not an object: "
                                 'write each member as {"backend": …, "model": …}')
        for key in member:
            if key in (*PROJECT_FIELDS, *PANEL_WIDE):
                raise SynthloopError(f"panel member {number} sets {key!r}, which belongs to the whole panel (the "
                                     "labels and task come from the project, the selection from the command): "
                                     "remove it from the member")
            if key not in MEMBER_KEYS:
                raise SynthloopError(f"panel member {number} has an unknown setting {key!r}: the known ones are "
                                     f"{', '.join(MEMBER_KEYS)}")
    return data


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text[:limit] + ("…" if len(text) > limit else "")


def panel_configs(project: Project, members: list[dict[str, Any]], *, selection: str | None = None,
                  item_ids: tuple[int, ...] = (), overwrite: bool = False) -> list[LLMAnnotatorConfig]:
    """Every member's config, all validated before anything runs; member annotator names must differ."""
    members = check_members(members)
    panel_wide = {"selection": selection or PANEL_SELECTION, "item_ids": tuple(item_ids), "overwrite": overwrite}
    configs: list[LLMAnnotatorConfig] = []
    for number, member in enumerate(members, start=1):
        try:
            config = LLMAnnotatorConfig(**project_fields(project), **member, **panel_wide)
        except SynthloopError as exc:
            # str() names the settings as quoted keys (of the file), never as command-line flags.
            raise SynthloopError(f"panel member {number} of {len(members)}: {exc}: fix that member in the panel "
                                 "file") from None
        except TypeError as exc:  # a value of the wrong type (e.g. a list for the model)
            raise SynthloopError(f"panel member {number} of {len(members)} has a value of the wrong type ({exc}): "
                                 "fix that member in the panel file") from None
        for earlier, other in enumerate(configs, start=1):
            if other.annotator == config.annotator:
                raise SynthloopError(f"panel members {earlier} and {number} are both annotator {config.annotator!r}:"
                                     " give one another model or its own instruction_variant (and instruction)")
        configs.append(config)
    return configs


@dataclass(frozen=True)
class MemberRun:
    """What one member did: its job (None when it had nothing left to label) and the job's counts."""

    member: int
    annotator: str
    job_id: int | None
    status: str
    items: int
    labelled: int
    unparsed: int
    errors: int
    warning: str

    def line(self) -> str:
        if self.job_id is None:
            return f"member {self.member} {self.annotator}: nothing to label (every selected item already labelled)"
        line = (f"member {self.member} {self.annotator}: job {self.job_id} {self.status}, {self.labelled} of "
                f"{self.items} labelled, {self.unparsed} unparsed replies, {self.errors} failed calls")
        return line + (f" (warning: {self.warning})" if self.warning else "")


def run_panel(db: sqlite_utils.Database, project_id: int, configs: list[LLMAnnotatorConfig]) -> list[MemberRun]:
    """Run each member's LLM-annotation job in turn, in this process. A member whose job fails stops the panel with
    the reason; the labels of the members before it are kept (a rerun skips the items they already labelled)."""
    runs: list[MemberRun] = []
    for number, config in enumerate(configs, start=1):
        job_id = queue_job(db, project_id, config)
        if job_id is None:
            runs.append(MemberRun(number, config.annotator, None, "skipped", 0, 0, 0, 0, ""))
            continue
        job = core_jobs.run(db_file(db), job_id)
        if job["status"] != "done":
            reason = (job.get("error") or job["status"]).splitlines()[0]
            kept = {1: "", 2: "; the labels of member 1 are kept"}.get(
                number, f"; the labels of members 1 to {number - 1} are kept")
            raise SynthloopError(f"panel member {number} of {len(configs)} ({config.annotator}) {job['status']} in "
                                 f"job {job_id}: {reason}{kept}: fix that member in the panel file and run the "
                                 "panel again (members skip the items they already labelled)")
        result = job["result"] or {}
        runs.append(MemberRun(number, config.annotator, job_id, job["status"], int(result.get("items", 0)),
                              int(result.get("labelled", 0)), int(result.get("unparsed", 0)),
                              int(result.get("errors", 0)), str(result.get("warning") or "")))
    return runs
