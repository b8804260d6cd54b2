"""Logged-in browsers: a session row per login, held by the browser as a signed, expiring, HttpOnly cookie.

Streamlit keeps its own session in server memory and talks over a websocket, so a refresh starts afresh and a
script cannot set an HttpOnly cookie. Every way in (password, invite, first admin, crowd link) therefore ends in
:func:`start`: it records the session and returns a one-time *handoff* token; the browser is sent to the app's
``START_PATH`` route (``app.py``), which trades the handoff for the cookie (:func:`cookie_for`) and sends the
browser back to the page it was on. A new Streamlit session (a refresh, a new tab) resumes from the cookie
(:func:`from_cookie`), and every run re-checks its session (:func:`user_of`).

The cookie is ``token.signature``: a random token and its HMAC under a secret kept in a file beside the database
(:func:`secret`; never in the database, logs or pages). The database stores only the token's hash, so neither a
copy of the database nor a row written into it yields a cookie. A session ends when it expires
(``SESSION_HOURS`` after the login), and every session of a user ends at logout (:func:`end_all`), a password
change, a role change or deletion (a trigger on the user row, migration 0560, so no writer can forget).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from core.errors import SynthloopError
from core.store import files_dir
from core.users import User
from db import sessions as sessions_db
from db import transaction

SESSION_HOURS = 12  # a working day; a crowd task takes far less
COOKIE_MAX_AGE = SESSION_HOURS * 3600
HANDOFF_SECONDS = 60  # the browser follows the handoff at once; a minute covers a slow, busy server
COOKIE_NAME = "synthloop_session"
START_PATH = "/auth/session"  # ?token=HANDOFF&next=/page: sets the cookie, then back to the page
END_PATH = "/auth/session/end"  # clears the cookie, then to the login form
SECRET_FILE = "session.key"
_SECRET_BYTES = 32
_MAX_COOKIE = 200  # a real cookie has 87 characters; anything much longer is not ours


@dataclass(frozen=True)
class Login:
    session_id: int
    handoff: str  # one-time token for START_PATH; only its hash is stored


@dataclass(frozen=True)
class Resumed:
    session_id: int
    user: User


def _stamp(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _sign(key: bytes, token: str) -> str:
    digest = hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _user(row: dict) -> User:
    return User(row["id"], row["username"], row["role"], row["display_name"])


def start(db: sqlite_utils.Database, user: User, *, at: datetime | None = None) -> Login:
    """Record a new session of ``user``; its cookie is handed over by :func:`cookie_for`."""
    moment = at or datetime.now(UTC)
    handoff = secrets.token_urlsafe(32)
    session_id = sessions_db.create(
        db, user_id=user.id, handoff_hash=_hash(handoff),
        handoff_expires_at=_stamp(moment + timedelta(seconds=HANDOFF_SECONDS)), created_at=_stamp(moment),
        expires_at=_stamp(moment + timedelta(hours=SESSION_HOURS)),
    )
    return Login(session_id, handoff)


def cookie_for(db: sqlite_utils.Database, key: bytes, handoff: str, *, at: datetime | None = None) -> str | None:
    """The cookie value for the session behind ``handoff``, once; None for an unknown, used or expired one."""
    token = secrets.token_urlsafe(32)
    with transaction(db):
        claimed = sessions_db.claim_handoff(db, handoff_hash=_hash(handoff), token_hash=_hash(token), at=_stamp(at))
    return f"{token}.{_sign(key, token)}" if claimed else None


def from_cookie(db: sqlite_utils.Database, key: bytes, cookie: str | None, *,
                at: datetime | None = None) -> Resumed | None:
    """The live session a cookie names; None for no cookie, a forged or damaged one, or an ended session."""
    if not isinstance(cookie, str) or not cookie or len(cookie) > _MAX_COOKIE:
        return None
    token, _, signature = cookie.rpartition(".")
    expected = _sign(key, token)
    if not token or not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
        return None
    row = sessions_db.user_by_token(db, _hash(token), _stamp(at))
    return Resumed(row["session_id"], _user(row)) if row else None


def user_of(db: sqlite_utils.Database, session_id: int, *, at: datetime | None = None) -> User | None:
    """The user of a live session (re-read: a changed role, a deletion or a logout elsewhere counts at once)."""
    row = sessions_db.user_by_session(db, session_id, _stamp(at))
    return _user(row) if row else None


def end_all(db: sqlite_utils.Database, user_id: int, *, at: datetime | None = None) -> int:
    """Log the user out everywhere (their logout); returns how many sessions ended."""
    return sessions_db.revoke_all(db, user_id, _stamp(at))


def secret(db_path: str | os.PathLike[str]) -> bytes:
    """The signing key of the database's session cookies: a file of the database's files folder, readable by
    its owner only, created on first use. Several server processes over one database start at once, so it is
    written to a temporary file and linked into place: the first link wins, the others read it. Delete the file
    to log everyone out."""
    key_file = files_dir(db_path, SECRET_FILE)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=".session-key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(_SECRET_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key_file)
        finally:
            Path(temporary).unlink()
    key = key_file.read_bytes()
    if len(key) != _SECRET_BYTES:
        raise SynthloopError(f"the session key {key_file} is damaged: delete it (everyone will log in again)")
    return key
