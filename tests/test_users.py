"""Users and roles: hashed passwords, lockout after repeated failures, invite links, role changes and deletion."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from core import users
from core.errors import NotFoundError, PermissionDenied, SynthloopError
from db import users as users_db

AT = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_password_is_stored_as_a_bcrypt_hash_not_in_clear(fresh_db):
    user = users.add_user(fresh_db, "alice", role="researcher", password="s3cret-password")
    stored = users_db.get_credentials(fresh_db, "alice")["password_hash"]
    assert stored.startswith("$2b$") and "s3cret-password" not in stored
    assert "s3cret-password" not in str(list(fresh_db["user"].rows))
    assert users.authenticate(fresh_db, "alice", "s3cret-password") == users.User(user.id, "alice", "researcher")


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("bad name!", "long-enough", "username 'bad name!' is not valid: use 1-64 letters, digits, '.', '_' or '-'"),
        ("bob", "short", "password is too short: use at least 8 characters"),
    ],
)
def test_invalid_users_are_refused(fresh_db, username, password, message):
    with pytest.raises(SynthloopError, match=re.escape(message)):
        users.add_user(fresh_db, username, role="annotator", password=password)
    assert fresh_db["user"].count == 0


def test_duplicate_username_and_unknown_role(fresh_db):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")
    with pytest.raises(SynthloopError, match=re.escape("user 'ALICE' already exists: choose another name")):
        users.add_user(fresh_db, "ALICE", role="admin", password="password-1")
    with pytest.raises(SynthloopError, match=re.escape("role 'boss' is not one of admin, researcher, annotator")):
        users.add_user(fresh_db, "bob", role="boss", password="password-1")


def test_wrong_password_and_unknown_user_get_the_same_message(fresh_db):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")
    for username, password in (("alice", "wrong-password"), ("nobody", "password-1")):
        with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
            users.authenticate(fresh_db, username, password, at=AT)


def test_lockout_after_five_failures_then_release(fresh_db):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")
    for _ in range(5):
        with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
            users.authenticate(fresh_db, "alice", "wrong-password", at=AT)
    # Even the right password is refused while locked (60 s after the fifth failure).
    with pytest.raises(SynthloopError, match=re.escape(
            "too many failed logins for 'alice': try again after 2026-01-01T12:01:00 UTC")):
        users.authenticate(fresh_db, "alice", "password-1", at=AT + timedelta(seconds=30))
    assert users.authenticate(fresh_db, "alice", "password-1", at=AT + timedelta(seconds=61)).username == "alice"
    assert users_db.get_credentials(fresh_db, "alice")["failed_logins"] == 0


def test_invite_link_logs_in_until_it_expires_or_is_revoked(fresh_db):
    users.add_user(fresh_db, "ann", role="annotator")
    token = users.create_invite(fresh_db, "ann", days=2)
    assert token not in str(list(fresh_db["user"].rows))  # only its hash is stored
    assert users.redeem_invite(fresh_db, token).username == "ann"
    with pytest.raises(SynthloopError, match=re.escape(
            "this invite link has expired: ask the project admin for a new one")):
        users.redeem_invite(fresh_db, token, at=datetime.now(UTC) + timedelta(days=3))
    with pytest.raises(SynthloopError, match=re.escape("user 'ann' has no password yet: log in with the invite link")):
        users.authenticate(fresh_db, "ann", "anything-long")
    users.revoke_invite(fresh_db, "ann")
    with pytest.raises(SynthloopError, match=re.escape(
            "this invite link is not valid: ask the project admin for a new one")):
        users.redeem_invite(fresh_db, token)


def test_a_new_invite_replaces_the_old_one(fresh_db):
    users.add_user(fresh_db, "ann", role="annotator")
    old = users.create_invite(fresh_db, "ann")
    new = users.create_invite(fresh_db, "ann")
    assert users.redeem_invite(fresh_db, new).username == "ann"
    with pytest.raises(SynthloopError, match="this invite link is not valid"):
        users.redeem_invite(fresh_db, old)
    with pytest.raises(NotFoundError, match=re.escape("no user named 'ghost': add the user first")):
        users.create_invite(fresh_db, "ghost")


def test_roles_change_but_the_last_admin_stays(fresh_db):
    users.add_user(fresh_db, "root", role="admin", password="password-1")
    users.add_user(fresh_db, "rita", role="annotator", password="password-1")
    with pytest.raises(SynthloopError, match=re.escape("'root' is the only admin: make another user admin first")):
        users.set_role(fresh_db, "root", "researcher")
    with pytest.raises(SynthloopError, match=re.escape("'root' is the only admin and cannot be deleted")):
        users.delete_user(fresh_db, "root")
    users.set_role(fresh_db, "rita", "admin")
    users.set_role(fresh_db, "root", "researcher")
    assert users.get_user(fresh_db, "root").role == "researcher"
    users.delete_user(fresh_db, "root")
    assert [u["username"] for u in users.list_users(fresh_db)] == ["rita"]


def test_require_role_and_current_user(fresh_db):
    user = users.add_user(fresh_db, "ann", role="annotator", password="password-1")
    assert users.current_user(fresh_db, user.id) == users.User(user.id, "ann", "annotator", "ann")
    assert users.current_user(fresh_db, 999) is None
    with pytest.raises(PermissionDenied, match="this page is for admin, researcher; you are logged in as annotator"):
        users.require_role(user, {"admin", "researcher"})
    assert users.first_run(fresh_db) is False
