"""``init``, ``user``, ``project``: the database, users and projects."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from core import projects, users, vocab
from core.data import splits
from core.errors import SynthloopError
from core.store import db_file
from db.migrations import applied_migrations


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    init = subparsers.add_parser("init", parents=[common], help="create or migrate the database")
    init.set_defaults(handler=_init)

    user = subparsers.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", parents=[common], help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=vocab.ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--display-name", default="")
    add.add_argument("--invite", action="store_true", help="print an invite token instead of setting a password")
    add.set_defaults(handler=_user_add)
    lst = user.add_parser("list", parents=[common], help="list users")
    lst.set_defaults(handler=_user_list)

    project = subparsers.add_parser("project", help="manage projects").add_subparsers(
        dest="project_command", required=True
    )
    create = project.add_parser("create", parents=[common], help="create a project")
    create.add_argument("name")
    create.add_argument("--labels", required=True, help="comma-separated label names, e.g. ham,spam")
    create.add_argument("--label-descriptions", default="", help='JSON object, e.g. {"spam": "unwanted ads"}')
    create.add_argument("--description", default="")
    create.add_argument("--context-prompt", default="")
    create.add_argument("--guidelines", default="")
    create.add_argument("--overlap", type=int, default=3, help="labels required per item (default 3)")
    create.set_defaults(handler=_project_create)
    plist = project.add_parser("list", parents=[common], help="list projects")
    plist.set_defaults(handler=_project_list)
    member = project.add_parser(
        "member", help="who may annotate a project (annotators see only the projects they are members of)"
    ).add_subparsers(dest="member_command", required=True)
    for action, text in (("add", "assign users to the project"), ("remove", "take users off the project")):
        change = member.add_parser(action, parents=[common], help=text)
        change.add_argument("project")
        change.add_argument("users", nargs="+", metavar="USER")
        change.set_defaults(handler=_member_change, adding=action == "add")
    mlist = member.add_parser("list", parents=[common], help="list the project's members")
    mlist.add_argument("project")
    mlist.set_defaults(handler=_member_list)

    split = subparsers.add_parser(
        "split", parents=[common], help="split real items into train/dev/test (stratified by label, seeded)"
    )
    split.add_argument("project")
    split.add_argument("--test", type=float, default=0.2, help="share of items for the test split (default 0.2)")
    split.add_argument("--dev", type=float, default=0.0, help="share of items for the dev split (default 0)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--redraw", action="store_true", help="draw every real item afresh (moves test items)")
    split.set_defaults(handler=_split)


def _init(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    migrations = applied_migrations(db)
    return {"db": db_file(db), "migrations": migrations,
            "message": f"database ready ({len(migrations)} migrations applied)"}


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise SynthloopError("no password on standard input: pipe one in, e.g. `echo '…' | … --password-stdin`")
    return password


def _user_add(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    if args.password_stdin and args.invite:
        raise SynthloopError("use either --password-stdin or --invite, not both")
    if not args.password_stdin and not args.invite:
        raise SynthloopError("give the new user a password (--password-stdin) or an invite link (--invite)")
    password = _read_password() if args.password_stdin else None
    user = users.add_user(db, args.name, role=args.role, password=password, display_name=args.display_name)
    result: dict[str, Any] = {"id": user.id, "username": user.username, "role": user.role}
    if args.invite:
        token = users.create_invite(db, user.username)
        result["invite_token"] = token
        result["message"] = f"added {user.role} {user.username!r}; invite link: <app url>/?invite={token}"
    else:
        result["message"] = f"added {user.role} {user.username!r}"
    return result


def _user_list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    rows = users.list_users(db)
    lines = [f"{u['username']}\t{u['role']}" for u in rows]
    return {"users": rows, "message": "\n".join(lines) or "no users"}


def _project_create(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    labels = projects.parse_labels(args.labels, args.label_descriptions)
    project = projects.create_project(
        db, args.name, labels, description=args.description, context_prompt=args.context_prompt,
        guidelines=args.guidelines, overlap=args.overlap,
    )
    return {"id": project.id, "name": project.name, "labels": project.label_names,
            "message": f"created project {project.name!r} (id {project.id}) with labels {', '.join(project.label_names)}"}


def _member_change(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    change = projects.add_member if args.adding else projects.remove_member
    changed = [name for name in args.users if change(db, project.id, users.get_user(db, name).id)]
    verb = "added to" if args.adding else "removed from"
    return {"project": project.name, "changed": changed,
            "message": f"{', '.join(changed) or 'nobody'} {verb} project {project.name!r}"}


def _member_list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    rows = projects.members(db, project.id)
    return {"project": project.name, "members": [{k: r[k] for k in ("username", "role", "added_at")} for r in rows],
            "message": "\n".join(f"{r['username']} ({r['role']})" for r in rows) or "no members"}


def _project_list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    rows = projects.list_projects(db)
    lines = [f"{p['id']}\t{p['name']}\t{p['n_items']} items\t{p['n_labels']} labels" for p in rows]
    return {"projects": [{k: p[k] for k in ("id", "name", "n_items", "n_labels", "overlap")} for p in rows],
            "message": "\n".join(lines) or "no projects"}


def _split(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project = projects.get_project(db, args.project)
    report = splits.split_real_items(db, project.id, test=args.test, dev=args.dev, seed=args.seed, redraw=args.redraw)
    return {"counts": report.counts, "message": report.message}
