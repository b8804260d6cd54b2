"""Projects (one classification task each) and their labels."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from core.errors import NotFoundError, PermissionDenied, SynthloopError
from core.users import User
from db import projects as projects_db
from db import transaction, versions
from db import users as users_db

MAX_LABELS = 50
STREAMLIT_SHORTCUT_KEYS = frozenset({"c", "r"})  # taken by Streamlit itself (clear cache, rerun)
# The Annotate page's own shortcuts. No label may take one of their keys, so a label key never clashes with
# them: Back and Forward are the arrow keys, which no label key (one letter or digit) can be; Unsure and Skip
# are letters reserved here (a project saved before they were keeps its label keys, and the page then leaves
# that action without a shortcut).
ANNOTATE_SHORTCUTS = {"back": "left", "forward": "right", "unsure": "u", "skip": "s"}
RESERVED_SHORTCUT_KEYS = STREAMLIT_SHORTCUT_KEYS | frozenset(ANNOTATE_SHORTCUTS.values())
# Annotators see only the projects they are members of; the other roles see every project.
MEMBERSHIP_ROLE = "annotator"


@dataclass(frozen=True)
class LabelSpec:
    name: str
    description: str = ""
    key: str = ""


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    description: str
    context_prompt: str
    guidelines: str
    overlap: int
    labels: tuple[LabelSpec, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


def parse_labels(labels: str | list[str], descriptions: str | dict[str, str] | None = None) -> list[LabelSpec]:
    """Labels from ``"a,b,c"`` (or a list) with optional descriptions (a dict or a JSON object string).

    Keys default to 1, 2, 3, …, 9, 0 and then none.
    """
    names = [n.strip() for n in (labels.split(",") if isinstance(labels, str) else labels)]
    names = [n for n in names if n]
    if not names:
        raise SynthloopError("a project needs at least one label: set {labels} to a,b,c", fields=("labels",))
    if len(names) > MAX_LABELS:
        raise SynthloopError(f"{len(names)} labels is too many: at most {MAX_LABELS}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SynthloopError(f"label {duplicates[0]!r} is given twice: each label name must be unique")
    if isinstance(descriptions, str):
        try:
            descriptions = json.loads(descriptions) if descriptions.strip() else {}
        except json.JSONDecodeError as exc:
            raise SynthloopError(
                f'label descriptions are not valid JSON ({exc.msg}): pass an object like {{"spam": "unwanted ads"}}'
            ) from None
    descriptions = descriptions or {}
    if not isinstance(descriptions, dict):
        raise SynthloopError('label descriptions must be a JSON object like {"spam": "unwanted ads"}')
    unknown = sorted(set(descriptions) - set(names))
    if unknown:
        raise SynthloopError(f"label descriptions name {unknown[0]!r}, which is not one of the labels {names}")
    default_keys = [str(k) for k in [*range(1, 10), 0]]
    return [
        LabelSpec(name, str(descriptions.get(name, "")), default_keys[i] if i < len(default_keys) else "")
        for i, name in enumerate(names)
    ]


def _validate_keys(labels: list[LabelSpec]) -> None:
    keys = [label.key for label in labels if label.key]
    for key in keys:
        # One ASCII letter or digit: what a browser shortcut can be, and what the page ignores while the comment
        # box has the focus. Letters count without case (Streamlit binds "A" and "a" alike).
        if len(key) != 1 or not (key.isascii() and key.isalnum()) or key.lower() in RESERVED_SHORTCUT_KEYS:
            reserved = ", ".join(sorted(k for k in RESERVED_SHORTCUT_KEYS if len(k) == 1))
            raise SynthloopError(
                f"keyboard key {key!r} is not usable: use one letter or digit other than {reserved}"
                " (the app and the Annotate page use those)"
            )
    keys = [key.lower() for key in keys]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise SynthloopError(f"keyboard key {duplicated[0]!r} is used by two labels: give each label its own key")


def _validate_fields(name: str, overlap: int) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise SynthloopError("project name must be 1-100 characters")
    if not isinstance(overlap, int) or not 1 <= overlap <= 50:
        raise SynthloopError(f"overlap {overlap!r} is not valid: use a whole number of labels per item from 1 to 50")
    return name


def create_project(
    db: sqlite_utils.Database,
    name: str,
    labels: list[LabelSpec],
    *,
    description: str = "",
    context_prompt: str = "",
    guidelines: str = "",
    overlap: int = 3,
) -> Project:
    name = _validate_fields(name, overlap)
    if not labels:
        raise SynthloopError("a project needs at least one label")
    _validate_keys(labels)
    with transaction(db):
        if projects_db.get_project_by_name(db, name):
            raise SynthloopError(f"project {name!r} already exists: choose another name")
        project_id = projects_db.create_project(
            db, name=name, description=description, context_prompt=context_prompt, guidelines=guidelines,
            overlap=overlap,
        )
        projects_db.replace_labels(db, project_id, [vars(label) for label in labels])
    return get_project(db, project_id)


def update_project(
    db: sqlite_utils.Database,
    project_id: int,
    *,
    labels: list[LabelSpec] | None = None,
    **fields: Any,
) -> Project:
    """Change a project's fields and/or labels. A label still used by an item or annotation cannot be removed."""
    project = get_project(db, project_id)
    name = _validate_fields(fields.get("name", project.name), fields.get("overlap", project.overlap))
    if "name" in fields:
        fields["name"] = name
    with transaction(db):
        if name != project.name and projects_db.get_project_by_name(db, name):
            raise SynthloopError(f"project {name!r} already exists: choose another name")
        if labels is not None:
            if not labels:
                raise SynthloopError("a project needs at least one label")
            _validate_keys(labels)
            removed = set(project.label_names) - {label.name for label in labels}
            usage = projects_db.label_usage(db, project_id)
            in_use = sorted(r for r in removed if usage.get(r))
            if in_use:
                raise SynthloopError(
                    f"label {in_use[0]!r} is used by {usage[in_use[0]]} labels or annotations and cannot be removed"
                )
            projects_db.replace_labels(db, project_id, [vars(label) for label in labels])
        if fields:
            projects_db.update_project(db, project_id, **fields)
    return get_project(db, project_id)


def update_settings(db: sqlite_utils.Database, project_id: int, **settings: Any) -> Project:
    """Merge ``settings`` into the project's settings object (prompts, generation and annotation options)."""
    with transaction(db):
        project = get_project(db, project_id)
        projects_db.update_project(db, project_id, settings={**project.settings, **settings})
    return get_project(db, project_id)


def add_labels(db: sqlite_utils.Database, project_id: int, names: list[str]) -> None:
    projects_db.add_labels(db, project_id, names)


def _to_project(row: dict[str, Any], labels: list[dict[str, Any]]) -> Project:
    return Project(
        id=row["id"], name=row["name"], description=row["description"], context_prompt=row["context_prompt"],
        guidelines=row["guidelines"], overlap=row["overlap"],
        labels=tuple(LabelSpec(lb["name"], lb["description"], lb["key"]) for lb in labels),
        settings=row["settings"],
    )


def get_project(db: sqlite_utils.Database, project: int | str) -> Project:
    """A project by id or by name."""
    if isinstance(project, int) or (isinstance(project, str) and project.isdigit()
                                    and projects_db.get_project_by_name(db, project) is None):
        row = projects_db.get_project(db, int(project))
    else:
        row = projects_db.get_project_by_name(db, project)
    if row is None:
        raise NotFoundError(f"no project {project!r}: create it first or check `python -m core project list`")
    return _to_project(row, projects_db.list_labels(db, row["id"]))


def list_projects(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return projects_db.list_projects(db)


def delete_project(db: sqlite_utils.Database, project_id: int) -> None:
    projects_db.delete_project(db, project_id)


def labels_from_rows(rows: list[dict[str, Any]]) -> list[LabelSpec]:
    """Labels from table rows (``name``, ``description``, ``key``), as the Projects page's label editor gives
    them; rows without a name are ignored, names must be unique."""
    labels = []
    for row in rows:
        name = str(row.get("name") or "").strip()
        if not name:
            continue
        labels.append(LabelSpec(name, str(row.get("description") or "").strip(), str(row.get("key") or "").strip()))
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SynthloopError(f"label {duplicates[0]!r} is given twice: each label name must be unique")
    return labels


def parse_label_lines(text: str) -> list[LabelSpec]:
    """Labels from plain text, one per line: ``name | description | key`` (description and key optional)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) > 3:
            raise SynthloopError(f"label line {line.strip()!r} has more than 3 parts: write name | description | key")
        rows.append(dict(zip(("name", "description", "key"), parts, strict=False)))
    return labels_from_rows(rows)


def format_label_lines(labels: tuple[LabelSpec, ...] | list[LabelSpec]) -> str:
    """The inverse of :func:`parse_label_lines`."""
    return "\n".join(f"{label.name} | {label.description} | {label.key}" for label in labels)


def data_version(db: sqlite_utils.Database, project_id: int) -> int:
    """A number that changes with every write to the project's data (items, annotations, splits, adjudication,
    seeds, review status, labels, settings) by any writer, bumped by triggers: derived tables cached under it
    are exactly as fresh as the database. One indexed read."""
    return versions.project_data_version(db, project_id)


# ------------------------------------------------------------------------------------------- members
# Annotators see only the projects they are members of: the project picker lists only those and the Annotate
# page refuses any other (both through the functions below). Researchers and admins see every project. A
# researcher or admin adds annotators on the Projects page or with `python -m core project member add`; a crowd
# worker becomes a member of their study's project when they arrive by its link.


def add_member(db: sqlite_utils.Database, project_id: int, user_id: int) -> bool:
    """Make the user a member of the project; True when they were not one yet (adding twice is harmless)."""
    with transaction(db):
        get_project(db, project_id)
        if users_db.get_user(db, user_id) is None:
            raise NotFoundError(f"no user with id {user_id}")
        return projects_db.add_member(db, project_id, user_id)


def remove_member(db: sqlite_utils.Database, project_id: int, user_id: int) -> bool:
    """Take the user off the project; True when they were a member. Their labels stay."""
    with transaction(db):
        return projects_db.remove_member(db, project_id, user_id)


def members(db: sqlite_utils.Database, project_id: int) -> list[dict[str, Any]]:
    """The project's members (``id``, ``username``, ``role``, ``added_at``), by username."""
    return projects_db.members(db, project_id)


def set_annotators(db: sqlite_utils.Database, project_id: int, usernames: list[str]) -> tuple[int, int]:
    """Make exactly ``usernames`` the project's annotator members (the Projects page's list); returns how many
    were added and removed. Every name must be a live annotator."""
    with transaction(db):
        wanted = {}
        for username in usernames:
            row = users_db.get_user_by_name(db, username)
            if row is None or row["role"] != MEMBERSHIP_ROLE:
                raise SynthloopError(f"{username!r} is not an annotator: only annotators are assigned to projects"
                                     " (researchers and admins see every project)")
            wanted[row["id"]] = username
        current = {row["id"] for row in projects_db.members(db, project_id) if row["role"] == MEMBERSHIP_ROLE}
        for user_id in set(wanted) - current:
            projects_db.add_member(db, project_id, user_id)
        for user_id in current - set(wanted):
            projects_db.remove_member(db, project_id, user_id)
    return len(set(wanted) - current), len(current - set(wanted))


def visible_projects(db: sqlite_utils.Database, user: User) -> list[dict[str, Any]]:
    """The projects ``user`` may pick: every project, or for an annotator those they are a member of."""
    rows = list_projects(db)
    if user.role != MEMBERSHIP_ROLE:
        return rows
    mine = projects_db.member_projects(db, user.id)
    return [row for row in rows if row["id"] in mine]


def require_access(db: sqlite_utils.Database, project: Project, user: User) -> None:
    """Refuse an annotator a project they are not a member of (whatever the address or the session holds)."""
    if user.role == MEMBERSHIP_ROLE and not projects_db.is_member(db, project.id, user.id):
        raise PermissionDenied(f"you are not assigned to the project {project.name!r}: ask a researcher to add"
                               " you to it")
