"""Project membership: annotators see and label only the projects they are assigned to (core, CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import projects, users
from core.errors import NotFoundError, PermissionDenied, SynthloopError

ROOT = Path(__file__).resolve().parent.parent


def _cli(db_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db_path)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_members_decide_which_projects_an_annotator_sees(fresh_db) -> None:
    demo = projects.create_project(fresh_db, "demo", projects.parse_labels("a,b"))
    other = projects.create_project(fresh_db, "other", projects.parse_labels("a,b"))
    ann = users.add_user(fresh_db, "ann", role="annotator", password="a long password")
    rex = users.add_user(fresh_db, "rex", role="researcher", password="a long password")
    assert projects.visible_projects(fresh_db, ann) == []
    assert projects.add_member(fresh_db, demo.id, ann.id) is True
    assert projects.add_member(fresh_db, demo.id, ann.id) is False  # twice is harmless
    assert [p["name"] for p in projects.visible_projects(fresh_db, ann)] == ["demo"]
    assert [p["name"] for p in projects.visible_projects(fresh_db, rex)] == ["demo", "other"]
    projects.require_access(fresh_db, demo, ann)
    projects.require_access(fresh_db, other, rex)  # researchers and admins see every project
    with pytest.raises(PermissionDenied, match=r"^you are not assigned to the project 'other': ask a researcher"
                                               r" to add you to it$"):
        projects.require_access(fresh_db, other, ann)
    with pytest.raises(NotFoundError, match=r"^no user with id 999$"):
        projects.add_member(fresh_db, demo.id, 999)
    # The Projects page's list: exactly these annotators; a researcher is never "assigned".
    users.add_user(fresh_db, "bea", role="annotator", password="a long password")
    assert projects.set_annotators(fresh_db, demo.id, ["bea"]) == (1, 1)
    assert [m["username"] for m in projects.members(fresh_db, demo.id)] == ["bea"]
    with pytest.raises(SynthloopError, match=r"^'rex' is not an annotator: only annotators are assigned"):
        projects.set_annotators(fresh_db, demo.id, ["bea", "rex"])
    # A deleted user's membership never passes to a newcomer of the same name (ids are never reused).
    users.delete_user(fresh_db, "bea")
    newcomer = users.add_user(fresh_db, "bea", role="annotator", password="a long password")
    assert projects.visible_projects(fresh_db, newcomer) == []
    assert projects.members(fresh_db, demo.id) == []
    assert projects.remove_member(fresh_db, demo.id, ann.id) is False


def test_the_cli_assigns_lists_and_removes_members(db_path, fresh_db) -> None:
    projects.create_project(fresh_db, "demo", projects.parse_labels("a,b"))
    users.add_user(fresh_db, "ann", role="annotator", password="a long password")
    users.add_user(fresh_db, "bea", role="annotator", password="a long password")
    added = _cli(db_path, "project", "member", "add", "demo", "ann", "bea")
    assert (added.returncode, added.stdout) == (0, "ann, bea added to project 'demo'\n")
    listed = _cli(db_path, "project", "member", "list", "demo", "--json")
    assert [m["username"] for m in json.loads(listed.stdout)["members"]] == ["ann", "bea"]
    removed = _cli(db_path, "project", "member", "remove", "demo", "bea")
    assert (removed.returncode, removed.stdout) == (0, "bea removed from project 'demo'\n")
    unknown = _cli(db_path, "project", "member", "add", "demo", "zed")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (2, "", "error: no user named 'zed'\n")


def test_serve_refuses_a_bad_number_of_workers_in_one_line(db_path) -> None:
    done = _cli(db_path, "serve", "--workers", "0")
    assert (done.returncode, done.stderr) == (2, "error: --workers 0 is not valid: use 1 to 64 app processes\n")
