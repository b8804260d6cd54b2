"""Users and roles: bcrypt password hashes, login with a lockout after repeated failures, invite links.

Identities are never reused: a deleted user stays as a tombstone row with its id, and its labels keep pointing
at it (see :func:`delete_user`). Sessions of logged-in browsers live in :mod:`core.sessions`.

Roles are closed: ``admin`` (everything, including users), ``researcher`` (projects, data, generation,
agreement, training, analysis, export) and ``annotator`` (the Annotate page only).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bcrypt
import sqlite_utils

from core.errors import NotFoundError, PermissionDenied, SynthloopError
from core.vocab import DELETED_USER_PREFIX, ROLES, Role
from db import transaction
from db import users as users_db

MIN_PASSWORD_LENGTH = 8
FREE_LOGIN_ATTEMPTS = 5
LOCKOUT_SECONDS = 60
INVITE_DAYS = 14


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    display_name: str = ""


def _validate_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
        raise SynthloopError(
            f"username {username!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'"
        )
    if ":" in username:
        raise SynthloopError(f"username {username!r} may not contain ':' (reserved for imported annotators)")
    return username


def _validate_role(role: str) -> None:
    if role not in ROLES:
        raise SynthloopError(f"role {role!r} is not one of {', '.join(ROLES)}")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SynthloopError(f"password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > 72:
        raise SynthloopError("password is too long: bcrypt uses at most 72 bytes; choose a shorter one")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(
    db: sqlite_utils.Database, username: str, *, role: str, password: str | None = None, display_name: str = ""
) -> User:
    """Create a user; without a password the user can only log in through an invite link."""
    username = _validate_username(username)
    _validate_role(role)
    password_hash = hash_password(password) if password is not None else None
    with transaction(db):
        if users_db.get_user_by_name(db, username):
            raise SynthloopError(f"user {username!r} already exists: choose another name")
        user_id = users_db.create_user(
            db, username=username, role=role, display_name=display_name, password_hash=password_hash
        )
    return User(user_id, username, role, display_name or username)  # type: ignore[arg-type]


def first_run(db: sqlite_utils.Database) -> bool:
    """True while the database has no user: the app then offers to create the first admin."""
    return users_db.count_users(db) == 0


# Checked against when a login names no user with a password, so that every login costs one bcrypt check of
# the same work factor as a stored hash (12, bcrypt's default, which hash_password uses) and the time taken does
# not tell which usernames exist.
_NO_SUCH_HASH = b"$2b$12$Fw1lCpxmDJDRwIUyaRH8Verepe4DxDUuVPVYG5kD8F0daQt7/ljty"


def _password_matches(password: str, stored_hash: str | None) -> bool:
    """One bcrypt check, whatever the input: an over-long password (bcrypt refuses more than 72 bytes) or a
    missing hash is checked against the dummy and fails, instead of answering faster or raising."""
    candidate = password.encode("utf-8")
    usable = stored_hash is not None and len(candidate) <= 72
    matched = bcrypt.checkpw(candidate[:72], stored_hash.encode("ascii") if usable else _NO_SUCH_HASH)
    return usable and matched


def authenticate(db: sqlite_utils.Database, username: str, password: str, *, at: datetime | None = None) -> User:
    """Check a login. After ``FREE_LOGIN_ATTEMPTS`` failures the account is locked for a growing period.

    Each attempt is counted as a failure before the password is checked, in one write transaction, and the
    count is reset when the password was right: parallel attempts are counted one after another, so no more
    than ``FREE_LOGIN_ATTEMPTS`` passwords are ever tried before the lock."""
    at = at or datetime.now(UTC)
    with transaction(db):
        row = users_db.get_credentials(db, username.strip())
        if row is not None and row["locked_until"] and datetime.fromisoformat(row["locked_until"]) > at:
            raise SynthloopError(
                f"too many failed logins for {row['username']!r}: try again after {row['locked_until'][:19]} UTC"
            )
        if row is not None and row["password_hash"]:
            failures = row["failed_logins"] + 1
            locked_until = None
            if failures >= FREE_LOGIN_ATTEMPTS:
                seconds = LOCKOUT_SECONDS * 2 ** (failures - FREE_LOGIN_ATTEMPTS)
                locked_until = (at + timedelta(seconds=min(seconds, 86_400))).isoformat()
            users_db.record_login_attempt(db, row["id"], locked_until)
    if not _password_matches(password, row["password_hash"] if row else None):
        if row is not None and not row["password_hash"]:
            raise SynthloopError(f"user {row['username']!r} has no password yet: log in with the invite link")
        raise SynthloopError("unknown user or wrong password")
    users_db.record_login_success(db, row["id"])
    return User(row["id"], row["username"], row["role"])


def create_invite(db: sqlite_utils.Database, username: str, *, days: int = INVITE_DAYS) -> str:
    """A new invite token for the user (replacing any earlier one); only its hash is stored."""
    row = users_db.get_user_by_name(db, username)
    if row is None:
        raise NotFoundError(f"no user named {username!r}: add the user first")
    token = secrets.token_urlsafe(24)
    expires = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    users_db.set_invite(db, row["id"], _hash_token(token), expires)
    return token


def redeem_invite(db: sqlite_utils.Database, token: str, *, at: datetime | None = None) -> User:
    """The user an invite token logs in (the link stays valid until it expires or is revoked)."""
    at = at or datetime.now(UTC)
    row = users_db.get_by_invite_hash(db, _hash_token(token.strip()))
    if row is None:
        raise SynthloopError("this invite link is not valid: ask the project admin for a new one")
    if row["invite_expires_at"] and datetime.fromisoformat(row["invite_expires_at"]) < at:
        raise SynthloopError("this invite link has expired: ask the project admin for a new one")
    return User(row["id"], row["username"], row["role"], row["display_name"])


def revoke_invite(db: sqlite_utils.Database, username: str) -> None:
    row = get_user(db, username)
    users_db.set_invite(db, row.id, None, None)


def set_password(db: sqlite_utils.Database, username: str, password: str) -> None:
    user = get_user(db, username)
    users_db.set_password_hash(db, user.id, hash_password(password))


def set_role(db: sqlite_utils.Database, username: str, role: str) -> None:
    _validate_role(role)
    user = get_user(db, username)
    with transaction(db):
        if user.role == "admin" and role != "admin" and _admin_count(db) == 1:
            raise SynthloopError(f"{username!r} is the only admin: make another user admin first")
        users_db.set_role(db, user.id, role)


def _admin_count(db: sqlite_utils.Database) -> int:
    return sum(1 for u in users_db.list_users(db) if u["role"] == "admin")


def tombstone_name(user: User) -> str:
    """The name a deleted user's row and labels keep: never a valid username (it has ':'), never reused."""
    return f"{DELETED_USER_PREFIX}{user.id}:{user.username}"


def delete_user(db: sqlite_utils.Database, username: str) -> None:
    """Delete a user, keeping the identity: the row stays as a tombstone (so the id is never given to anyone
    else) and everything recorded under the name — labels, repeated ratings, seeds — moves to
    :func:`tombstone_name`. A user added later under the same name starts with no labels, and the old labels
    stay attributed to the old person in agreement and exports. Every session of the user ends."""
    user = get_user(db, username)
    with transaction(db):
        if user.role == "admin" and _admin_count(db) == 1:
            raise SynthloopError(f"{username!r} is the only admin and cannot be deleted")
        users_db.mark_deleted(db, user.id, user.username, tombstone_name(user))


def get_user(db: sqlite_utils.Database, username: str) -> User:
    row = users_db.get_user_by_name(db, username)
    if row is None:
        raise NotFoundError(f"no user named {username!r}")
    return User(row["id"], row["username"], row["role"], row["display_name"])


def current_user(db: sqlite_utils.Database, user_id: int) -> User | None:
    """Re-read a logged-in user from the database, so a changed role or a deleted user takes effect at once."""
    row = users_db.get_user(db, user_id)
    return User(row["id"], row["username"], row["role"], row["display_name"]) if row else None


def list_users(db: sqlite_utils.Database) -> list[dict]:
    return users_db.list_users(db)


def require_role(user: User | None, roles: set[str] | frozenset[str]) -> User:
    if user is None:
        raise PermissionDenied("please log in")
    if user.role not in roles:
        raise PermissionDenied(f"this page is for {', '.join(sorted(roles))}; you are logged in as {user.role}")
    return user
