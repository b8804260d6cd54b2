"""Users and roles: hashed passwords, lockout after repeated failures, invite links, role changes and deletion."""

from __future__ import annotations

import collections
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import bcrypt
import pytest

from core import users
from core.errors import NotFoundError, PermissionDenied, SynthloopError
from db import connection
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


# ------------------------------------------------------------------------------------------ identities


def test_user_ids_are_never_reused_and_the_deleted_user_stays_as_a_tombstone(fresh_db):
    users.add_user(fresh_db, "root", role="admin", password="password-1")
    bob = users.add_user(fresh_db, "bob", role="annotator", password="password-1")
    users.delete_user(fresh_db, "bob")  # bob had the highest id
    eve = users.add_user(fresh_db, "eve", role="admin")
    assert eve.id == bob.id + 1
    tombstone = fresh_db.execute("SELECT username, role, password_hash, deleted_at IS NOT NULL FROM user"
                                 " WHERE id = ?", [bob.id]).fetchone()
    assert tombstone == (f"deleted:{bob.id}:bob", "annotator", None, 1)
    assert [u["username"] for u in users.list_users(fresh_db)] == ["eve", "root"]
    assert users.current_user(fresh_db, bob.id) is None
    with pytest.raises(NotFoundError, match=re.escape(f"no user named 'deleted:{bob.id}:bob'")):
        users.get_user(fresh_db, f"deleted:{bob.id}:bob")
    with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
        users.authenticate(fresh_db, f"deleted:{bob.id}:bob", "password-1")
    # Not even a hand-written DELETE can free an id for reuse.
    with pytest.raises(sqlite3.IntegrityError, match="user rows are never deleted"):
        fresh_db.execute("DELETE FROM user WHERE id = ?", [eve.id])


def test_a_re_added_username_does_not_inherit_the_old_labels(fresh_db, project):
    from core.annotation.assignment import my_earlier_item, next_item, progress, submit_label
    from core.annotation.pool import set_pool
    from core.data.export import raw_view
    from core.data.text import text_hash
    from db import items as items_db
    from db import transaction

    with transaction(fresh_db):
        items_db.insert_items(fresh_db, project.id, [
            {"text": f"t{i}", "text_hash": text_hash(f"t{i}"), "source": "real", "split": "test"} for i in range(3)])
    set_pool(fresh_db, project.id, source="real")
    users.add_user(fresh_db, "root", role="admin")
    old = users.add_user(fresh_db, "ann", role="annotator")
    first = next_item(fresh_db, project, "ann")
    submit_label(fresh_db, project, "ann", first.item_id, "pos")
    held = next_item(fresh_db, project, "ann")  # reserved, not labelled: freed by the deletion
    users.delete_user(fresh_db, "ann")
    new = users.add_user(fresh_db, "ann", role="annotator")
    assert new.id != old.id
    assert progress(fresh_db, project, "ann") == progress(fresh_db, project, "nobody-yet")
    assert progress(fresh_db, project, "ann").done == 0
    assert my_earlier_item(fresh_db, project, "ann", 1) is None
    # The new ann may label the item the old ann labelled: two people, two labels.
    assert submit_label(fresh_db, project, "ann", first.item_id, "neg") is True
    raw = raw_view(fresh_db, project.id)
    assert sorted(zip(raw["annotator"], raw["label"], strict=True)) == [
        ("ann", "neg"), (f"deleted:{old.id}:ann", "pos")]
    assert fresh_db.execute("SELECT COUNT(*) FROM reservation WHERE item_id = ?", [held.item_id]).fetchone()[0] == 0


def test_every_annotator_column_follows_the_deleted_identity(fresh_db):
    """Tables keyed by the annotator's name (today and those added later) must not hand the old rows to a new user
    of the same name: a deletion renames them all, or frees the queue state that is no data."""
    from db import users as users_db_module

    columns = users_db_module.annotator_columns(fresh_db)
    assert {("annotation", "annotator"), ("repeat_pair", "annotator"), ("seed", "added_by")} <= set(columns)
    every = {(table, "annotator") for (table,) in fresh_db.execute(
        "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p"
        " WHERE m.type = 'table' AND p.name = 'annotator'")}
    assert every <= set(columns) | {(t, "annotator") for t in users_db_module.QUEUE_TABLES}


# ------------------------------------------------------------------------------------------ login hardening


def test_parallel_wrong_passwords_are_counted_one_by_one(db_path):
    """Twenty wrong passwords at once: exactly five are checked, the rest meet the lock (no lost update)."""
    with connection.open_db(db_path) as db:
        users.add_user(db, "carol", role="researcher", password="password-1")
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        with connection.open_db(db_path) as db:
            barrier.wait()
            try:
                users.authenticate(db, "carol", f"wrong-{n}")
            except SynthloopError as exc:
                outcomes.append(str(exc).split(":")[0])

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(collections.Counter(outcomes).items()) == [
        ("too many failed logins for 'carol'", 15), ("unknown user or wrong password", 5)]
    with connection.open_db(db_path) as db:
        assert users_db.get_credentials(db, "carol")["failed_logins"] == 5


def test_a_login_for_an_unknown_user_costs_a_full_bcrypt_check(fresh_db, monkeypatch):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")
    users.add_user(fresh_db, "ann", role="annotator")  # invite only: no password hash
    checked: list[int] = []
    real_check = bcrypt.checkpw
    monkeypatch.setattr(users.bcrypt, "checkpw",
                        lambda password, hashed: checked.append(int(hashed.split(b"$")[2])) or real_check(
                            password, hashed))
    for username in ("alice", "nobody", "ann"):
        with pytest.raises(SynthloopError):
            users.authenticate(fresh_db, username, "wrong-password")
    assert checked == [12, 12, 12]


def test_a_login_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(fresh_db):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")

    def seconds(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
            users.authenticate(fresh_db, username, "wrong-password")
        return time.perf_counter() - start

    known = sorted(seconds("alice") for _ in range(3))[1]
    unknown = sorted(seconds("nobody") for _ in range(3))[1]
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_an_over_long_password_at_login_is_a_wrong_password_not_a_crash(fresh_db):
    users.add_user(fresh_db, "alice", role="admin", password="password-1")
    for username in ("alice", "nobody"):
        with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
            users.authenticate(fresh_db, username, "é" * 100)
