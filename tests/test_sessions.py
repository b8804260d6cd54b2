"""Sessions: a login becomes a server-side session row and a signed, expiring cookie that a refresh or a new tab
resumes; logout, a password change, a role change or deletion ends every session of the user. Also the HTTP
routes of ``app.py`` that hand the cookie to the browser and clear it."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.requests import Request

from core import sessions, users
from db import connection

AT = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SECRET = b"k" * 32


@pytest.fixture
def ann(fresh_db) -> users.User:
    return users.add_user(fresh_db, "ann", role="annotator")


def _cookie(db, user: users.User, *, at: datetime = AT) -> tuple[int, str]:
    """Log ``user`` in and trade the handoff for the cookie, as the browser does."""
    login = sessions.start(db, user, at=at)
    cookie = sessions.cookie_for(db, SECRET, login.handoff, at=at + timedelta(seconds=1))
    assert cookie is not None
    return login.session_id, cookie


def test_a_cookie_resumes_its_session_until_it_expires(fresh_db, ann):
    session_id, cookie = _cookie(fresh_db, ann)
    assert sessions.from_cookie(fresh_db, SECRET, cookie, at=AT + timedelta(hours=1)) == sessions.Resumed(
        session_id, users.User(ann.id, "ann", "annotator", "ann"))
    assert sessions.user_of(fresh_db, session_id, at=AT + timedelta(hours=1)) == users.User(
        ann.id, "ann", "annotator", "ann")
    # Expired: 12 hours after the login, whatever the tab does.
    expired = AT + timedelta(hours=sessions.SESSION_HOURS, seconds=1)
    assert sessions.from_cookie(fresh_db, SECRET, cookie, at=expired) is None
    assert sessions.user_of(fresh_db, session_id, at=expired) is None
    assert sessions.COOKIE_MAX_AGE == 12 * 3600


def test_the_database_keeps_the_session_record_but_no_token(fresh_db, ann):
    session_id, cookie = _cookie(fresh_db, ann)
    row = fresh_db.execute(
        "SELECT id, user_id, created_at, expires_at, revoked_at, token_hash, handoff_hash FROM session").fetchall()
    assert row == [(session_id, ann.id, "2026-01-01T12:00:00.000+00:00", "2026-01-02T00:00:00.000+00:00", None,
                    row[0][5], None)]
    token, signature = cookie.split(".")
    assert len(row[0][5]) == 64 and token not in row[0][5] and signature not in str(row)


def test_a_handoff_gives_the_cookie_once_and_only_within_a_minute(fresh_db, ann):
    login = sessions.start(fresh_db, ann, at=AT)
    assert sessions.cookie_for(fresh_db, SECRET, login.handoff, at=AT + timedelta(seconds=61)) is None
    login = sessions.start(fresh_db, ann, at=AT)
    assert sessions.cookie_for(fresh_db, SECRET, login.handoff, at=AT + timedelta(seconds=5)) is not None
    assert sessions.cookie_for(fresh_db, SECRET, login.handoff, at=AT + timedelta(seconds=6)) is None  # used
    assert sessions.cookie_for(fresh_db, SECRET, "made-up", at=AT) is None


@pytest.mark.parametrize("forged", [
    None, "", "no-dot", ".", "a.b", "é.ü", "x" * 5000,
])
def test_a_malformed_cookie_is_no_session_and_no_error(fresh_db, ann, forged):
    _cookie(fresh_db, ann)
    assert sessions.from_cookie(fresh_db, SECRET, forged, at=AT) is None


def test_a_cookie_signed_with_another_secret_is_refused(fresh_db, ann):
    _, cookie = _cookie(fresh_db, ann)
    assert sessions.from_cookie(fresh_db, b"other" * 8, cookie, at=AT) is None
    token, signature = cookie.split(".")
    assert sessions.from_cookie(fresh_db, SECRET, f"{token}x.{signature}", at=AT) is None


@pytest.mark.parametrize("change", ["log out", "password", "role", "delete"])
def test_every_session_of_the_user_ends(fresh_db, ann, change):
    users.add_user(fresh_db, "root", role="admin")
    bea = users.add_user(fresh_db, "bea", role="annotator")
    first, cookie = _cookie(fresh_db, ann)
    second, _ = _cookie(fresh_db, ann)  # another browser
    other, other_cookie = _cookie(fresh_db, bea)
    if change == "log out":
        assert sessions.end_all(fresh_db, ann.id) == 2
    elif change == "password":
        users.set_password(fresh_db, "ann", "a-new-password")
    elif change == "role":
        users.set_role(fresh_db, "ann", "researcher")
    else:
        users.delete_user(fresh_db, "ann")
    later = AT + timedelta(minutes=5)
    assert sessions.user_of(fresh_db, first, at=later) is None
    assert sessions.user_of(fresh_db, second, at=later) is None
    assert sessions.from_cookie(fresh_db, SECRET, cookie, at=later) is None
    revoked = fresh_db.execute("SELECT COUNT(*) FROM session WHERE user_id = ? AND revoked_at IS NOT NULL",
                               [ann.id]).fetchone()[0]
    assert revoked == 2
    # Another user's session goes on.
    assert sessions.user_of(fresh_db, other, at=later) == users.User(bea.id, "bea", "annotator", "bea")
    assert sessions.from_cookie(fresh_db, SECRET, other_cookie, at=later).session_id == other


def test_setting_the_same_role_again_or_a_new_invite_keeps_the_sessions(fresh_db, ann):
    session_id, _ = _cookie(fresh_db, ann)
    users.set_role(fresh_db, "ann", "annotator")
    users.create_invite(fresh_db, "ann")
    assert sessions.user_of(fresh_db, session_id, at=AT) is not None


def test_a_deleted_users_session_never_becomes_the_next_user(fresh_db, ann):
    """The deleted user had the highest id: a user added afterwards must not take it over (ids are kept)."""
    users.add_user(fresh_db, "root", role="admin")
    bob = users.add_user(fresh_db, "bob", role="annotator")
    session_id, cookie = _cookie(fresh_db, bob)
    users.delete_user(fresh_db, "bob")
    admin = users.add_user(fresh_db, "eve", role="admin")
    assert admin.id == bob.id + 1
    assert sessions.user_of(fresh_db, session_id, at=AT) is None
    assert sessions.from_cookie(fresh_db, SECRET, cookie, at=AT) is None


def test_the_secret_lives_beside_the_database_readable_by_its_owner_only(tmp_path: Path):
    db_path = tmp_path / "s.db"
    connection.connect(db_path).conn.close()
    secret = sessions.secret(db_path)
    key_file = connection.files_dir(db_path, sessions.SECRET_FILE)
    assert key_file.read_bytes() == secret and len(secret) == 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert sessions.secret(db_path) == secret  # created once, then read
    assert secret not in (tmp_path / "s.db").read_bytes()


def test_two_processes_creating_the_secret_agree(tmp_path: Path):
    """Several server processes over one database start at once: they must share one secret."""
    import subprocess
    import sys

    db_path = tmp_path / "race.db"
    code = "import sys; from core import sessions; sys.stdout.write(sessions.secret(sys.argv[1]).hex())"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdout=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parent.parent) for _ in range(4)]
    outputs = {proc.communicate(timeout=60)[0] for proc in procs}
    assert len(outputs) == 1 and len(outputs.pop()) == 64


# --------------------------------------------------------------------------------------------- HTTP routes


def _get(handler, path: str, query: str, cookie: str = ""):
    headers = [(b"cookie", cookie.encode())] if cookie else []
    request = Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
                       "headers": headers, "scheme": "http", "server": ("127.0.0.1", 8501)})
    response = handler(request)
    return asyncio.run(response) if asyncio.iscoroutine(response) else response


@pytest.fixture
def app_module(db_path, monkeypatch):
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    import app

    return app


def test_the_route_sets_an_httponly_lax_cookie_and_returns_to_the_page(fresh_db, db_path, ann, app_module):
    login = sessions.start(fresh_db, ann)
    response = _get(app_module.start_session, "/auth/session", f"token={login.handoff}&next=/annotate")
    assert response.status_code == 303 and response.headers["location"] == "/annotate"
    set_cookie = response.headers["set-cookie"]
    name, value = set_cookie.split(";")[0].split("=", 1)
    assert name == sessions.COOKIE_NAME
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert attributes == {"httponly", "samesite=lax", "path=/", f"max-age={12 * 3600}"}
    assert response.headers["cache-control"] == "no-store"
    assert sessions.from_cookie(fresh_db, sessions.secret(db_path), value).user.username == "ann"


@pytest.mark.parametrize("next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "annotate",
                                       ""])
def test_the_route_never_redirects_off_the_app(fresh_db, ann, app_module, next_path):
    login = sessions.start(fresh_db, ann)
    response = _get(app_module.start_session, "/auth/session", f"token={login.handoff}&next={next_path}")
    assert response.headers["location"] == "/"


def test_a_used_or_forged_handoff_sets_no_cookie(fresh_db, ann, app_module):
    login = sessions.start(fresh_db, ann)
    _get(app_module.start_session, "/auth/session", f"token={login.handoff}")
    for query in (f"token={login.handoff}", "token=forged", "", "token=%ff%00"):
        response = _get(app_module.start_session, "/auth/session", query)
        assert response.status_code == 303 and "set-cookie" not in response.headers


def test_the_end_route_clears_the_cookie(app_module):
    response = _get(app_module.end_session, "/auth/session/end", "", cookie=f"{sessions.COOKIE_NAME}=x.y")
    assert response.status_code == 303 and response.headers["location"] == "/"
    set_cookie = response.headers["set-cookie"].lower()
    assert set_cookie.startswith(f'{sessions.COOKIE_NAME}=""') and "max-age=0" in set_cookie
    assert "httponly" in set_cookie and "path=/" in set_cookie


# --------------------------------------------------------------------------------------------- pages


def _projects_page(db_path, monkeypatch, **state):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "pages" / "projects.py"), default_timeout=90)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_a_tab_whose_session_ended_is_logged_out_at_its_next_run(fresh_db, db_path, monkeypatch):
    from pages._common import SESSION_ID, USER_ID

    rita = users.add_user(fresh_db, "rita", role="researcher")
    live = sessions.start(fresh_db, rita).session_id
    at = _projects_page(db_path, monkeypatch, **{USER_ID: rita.id, SESSION_ID: live})
    assert not at.exception and at.title[0].value == "Projects"  # the positive control

    users.set_password(fresh_db, "rita", "a-new-password")  # ends the session
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please log in first."] and not at.title
    assert USER_ID not in at.session_state and SESSION_ID not in at.session_state  # nothing of it lingers


@pytest.mark.parametrize("stale", [999_999, "12", None])
def test_a_stale_or_odd_session_id_is_no_login_and_no_stack_trace(fresh_db, db_path, monkeypatch, stale):
    from pages._common import SESSION_ID

    at = _projects_page(db_path, monkeypatch, **{SESSION_ID: stale})
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please log in first."] and not at.title
