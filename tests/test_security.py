"""Security promises, each with a test (the real-browser halves are in tests/e2e/test_security_browser.py):

- every page enforces its role on the server: each page file run on its own (as if opened by URL) with an
  annotator's — or a researcher's, for admin pages — user id in ``session_state`` refuses to render, and forged
  or stale identities (unknown id, deleted user, demoted user, an id that is not an int, a bad invite token) do
  not get in. ``session_state`` lives on the server; a client can only send widget values, the URL path and
  query parameters, so these are the identities a tampering client can end up with;
- an annotator cannot see other people's labels, reference/intended labels or whether an item is real or
  synthetic on the Annotate page;
- passwords are stored as bcrypt hashes (the plaintext is nowhere in the database file bytes) and logins are
  rate-limited (lockout after repeated failures);
- a planted API key used by a real generation job process is found nowhere in the database files (-wal and
  -shm included), the job logs, or any export — even when the server repeats a wrong key in its 401 body;
- exported CSV cannot carry spreadsheet formulas.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
from streamlit.testing.v1 import AppTest

from core import jobs, projects, users, vocab
from core.data import export as exporter
from core.data import importer
from core.errors import SynthloopError
from core.generation import service as generation
from db import connection
from pages._common import PAGES, PROJECT_ID, USER_ID
from tests.fake_llm import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"
APPTEST_TIMEOUT = 90  # pages import pandas/altair on first run; two shared cores


def _page_name(spec) -> str:
    return Path(spec.file).stem


# (page, role) pairs that must be refused; admin pages also refuse researchers.
REFUSED = [(spec, role) for spec in PAGES for role in ("annotator", "researcher") if role not in spec.roles]


@pytest.fixture
def app_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A database with a project and one user per role (invite-only users: no bcrypt cost)."""
    db_path = tmp_path / "sec.db"
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    db = connection.connect(db_path)
    project = projects.create_project(db, "secproj", projects.parse_labels("pos,neg"), overlap=2)
    ids = {
        role: users.add_user(db, f"{role}1", role=role).id for role in ("admin", "researcher", "annotator")
    }
    projects.add_member(db, project.id, ids["annotator"])  # annotators see only the projects they are assigned to
    yield db_path, db, project, ids
    db.conn.close()


def _run_page(spec, user_id, project_id) -> AppTest:
    at = AppTest.from_file(str(ROOT / spec.file), default_timeout=APPTEST_TIMEOUT)
    if user_id is not None:
        at.session_state[USER_ID] = user_id
    at.session_state[PROJECT_ID] = project_id
    at.run()
    return at


def _everything_shown(at: AppTest) -> str:
    """All text the page rendered (markdown, titles, captions, alerts, metrics, widgets' labels and values)."""
    parts = []
    for node in at.main:  # iterating a block walks all its descendants
        parts.append(_node_text(node))
    for node in at.sidebar:
        parts.append(_node_text(node))
    return "\n".join(parts)


def _node_text(node) -> str:
    out = []
    for attr in ("value", "label", "body", "placeholder", "help", "options", "caption"):
        value = getattr(node, attr, None)
        if isinstance(value, str | int | float):
            out.append(str(value))
        elif isinstance(value, list | tuple):
            out.extend(str(v) for v in value)
    proto = getattr(node, "proto", None)
    if proto is not None:
        out.append(str(proto))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- role checks


def test_there_are_pages_to_check() -> None:
    assert len(PAGES) >= 6
    assert any("annotator" not in spec.roles for spec in PAGES)


@pytest.mark.parametrize(("spec", "role"), REFUSED, ids=[f"{_page_name(s)}-as-{r}" for s, r in REFUSED])
def test_each_page_refuses_a_role_that_may_not_see_it(app_db, spec, role) -> None:
    _, _, project, ids = app_db
    at = _run_page(spec, ids[role], project.id)
    assert [e.value for e in at.error] == [f"{spec.title} is not available to the {role} role."]
    # Nothing of the page itself was rendered after the refusal (no title, no widget, no table).
    assert not at.title and not at.button and not at.text_input and not at.dataframe


@pytest.mark.parametrize("spec", PAGES, ids=_page_name)
def test_each_page_renders_for_a_role_that_may_see_it(app_db, spec) -> None:
    """The positive control: the refusal above comes from the role, not from a page that never renders."""
    _, _, project, ids = app_db
    role = "annotator" if "annotator" in spec.roles else ("researcher" if "researcher" in spec.roles else "admin")
    at = _run_page(spec, ids[role], project.id)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("is not available to the" in e.value for e in at.error)
    assert not any("Please log in" in w.value for w in at.warning)


def _forged_identities(db, ids) -> dict[str, object]:
    """Identities a session can end up with without a valid login (each must be refused)."""
    gone = users.add_user(db, "gone", role="admin")
    users.delete_user(db, "gone")
    demoted = users.add_user(db, "demoted", role="researcher")
    users.set_role(db, "demoted", "annotator")  # demoted while "logged in": the role is re-read every run
    return {
        "unknown-id": 99_999,
        "deleted-admin": gone.id,
        "demoted-researcher": demoted.id,
        "id-as-string": str(ids["admin"]),
        "id-as-float": float(ids["admin"]),
        "none": None,
    }


def _assert_refused(at: AppTest, spec, what: str) -> None:
    refused = [e.value for e in at.error] + [w.value for w in at.warning]
    assert refused in (["Please log in first."], [f"{spec.title} is not available to the annotator role."]), \
        f"{what}: {refused}"
    assert not at.title, f"{what} saw the page"


RESTRICTED = [s for s in PAGES if "annotator" not in s.roles]


@pytest.mark.parametrize("spec", RESTRICTED, ids=_page_name)
def test_an_unknown_or_demoted_user_id_does_not_get_in(app_db, spec) -> None:
    _, db, project, ids = app_db
    identities = _forged_identities(db, ids)
    for name in ("unknown-id", "demoted-researcher"):
        _assert_refused(_run_page(spec, identities[name], project.id), spec, name)


def test_no_forged_or_stale_identity_gets_in(app_db) -> None:
    """Every kind of forged identity, on one restricted page (the check is the same shared guard)."""
    _, db, project, ids = app_db
    spec = RESTRICTED[0]
    for name, user_id in _forged_identities(db, ids).items():
        _assert_refused(_run_page(spec, user_id, project.id), spec, name)


def test_a_forged_invite_token_does_not_log_in(app_db) -> None:
    db_path, db, _, _ = app_db
    users.create_invite(db, "annotator1")  # a real token exists; the forged one must still fail
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=APPTEST_TIMEOUT)
    at.query_params["invite"] = "forged-token-AAAAAAAAAAAAAAAAAAAAAAAA"
    at.run()
    assert any("this invite link is not valid" in e.value for e in at.error)
    assert USER_ID not in at.session_state


def test_an_expired_invite_token_does_not_log_in(app_db) -> None:
    _, db, _, _ = app_db
    token = users.create_invite(db, "annotator1", days=1)
    assert users.redeem_invite(db, token).username == "annotator1"
    with pytest.raises(SynthloopError, match="this invite link has expired"):
        users.redeem_invite(db, token, at=datetime.now(UTC) + timedelta(days=2))
    users.revoke_invite(db, "annotator1")
    with pytest.raises(SynthloopError, match="this invite link is not valid"):
        users.redeem_invite(db, token)


# ------------------------------------------------------------------------------------ blind annotation


ANNOTATE_PAGES = [s for s in PAGES if "annotator" in s.roles]


@pytest.mark.skipif(not ANNOTATE_PAGES, reason="no page is open to annotators yet (the Annotate page)")
@pytest.mark.parametrize("spec", ANNOTATE_PAGES, ids=_page_name)
def test_an_annotator_sees_no_other_labels_no_reference_and_no_source(app_db, spec) -> None:
    """One synthetic item (intended label 'neg', from model 'leaky-model-x') labelled by another annotator;
    the page must show its text and the label buttons, and nothing that reveals those."""
    from core.annotation.pool import set_pool

    _, db, project, ids = app_db
    # Make the label set distinctive so that a leaked label is recognisable among the buttons' names.
    importer.import_file(
        db, project.id,
        b"id,text,label,who,lab\nS-1,Canary text about a quiet harbour,neg,zed-the-other,pos\n",
        importer.ImportSpec(id_col="id", label_col="label", source="synthetic", annotator_col="who",
                            annotation_col="lab"), filename="synthetic.csv",
    )
    set_pool(db, project.id, add=True)
    at = _run_page(spec, ids["annotator"], project.id)
    assert not at.exception, [e.value for e in at.exception]
    shown = _everything_shown(at)
    assert "Canary text about a quiet harbour" in shown  # the item is there…
    lowered = shown.lower()
    for leak in ("synthetic", "zed-the-other", "import:", "reference", "intended", "majority", "S-1",
                 "agreement", "synthetic.csv"):
        assert leak.lower() not in lowered, f"the Annotate page reveals {leak!r}"


# -------------------------------------------------------------------------------- passwords and logins


def test_passwords_are_bcrypt_hashes_and_never_stored_in_clear(tmp_path: Path) -> None:
    db_path = tmp_path / "pw.db"
    secret = "Plaintext-Canary-7731"
    with connection.open_db(db_path) as db:
        users.add_user(db, "alice", role="admin", password=secret)
        users.add_user(db, "bob", role="annotator", password=secret)  # same password → different salts
        users.set_password(db, "bob", secret + "x")
        rows = list(db.query("SELECT username, password_hash FROM user ORDER BY username"))
    hashes = [row["password_hash"] for row in rows]
    assert all(h.startswith("$2b$") and len(h) == 60 for h in hashes)
    assert all(int(h.split("$")[2]) >= 12 for h in hashes), "bcrypt work factor below 12"
    assert hashes[0] != hashes[1]
    assert bcrypt.checkpw(secret.encode(), hashes[0].encode())
    assert bcrypt.checkpw((secret + "x").encode(), hashes[1].encode())
    for path in tmp_path.iterdir():  # the database file, and its -wal / -shm
        assert secret.encode() not in path.read_bytes(), path.name
        assert secret.encode("utf-16-le") not in path.read_bytes(), path.name


def test_the_cli_reads_the_password_from_stdin_and_stores_only_a_hash(tmp_path: Path) -> None:
    from core import cli

    db_path = tmp_path / "cli.db"
    secret = "Cli-Canary-Password-99"
    stdin, sys_stdin = io.StringIO(secret + "\n"), None
    import sys

    sys_stdin, sys.stdin = sys.stdin, stdin
    try:
        assert cli.main(["user", "add", "root", "--role", "admin", "--password-stdin", "--db", str(db_path)]) == 0
    finally:
        sys.stdin = sys_stdin
    with connection.open_db(db_path) as db:
        assert users.authenticate(db, "root", secret).role == "admin"
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name


def test_logins_are_rate_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lockout logic does not depend on bcrypt's work factor: use the cheapest one to keep the test fast.
    cheap_salt = bcrypt.gensalt
    monkeypatch.setattr(users.bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": cheap_salt(4, prefix))
    with connection.open_db(tmp_path / "rl.db") as db:
        users.add_user(db, "carol", role="researcher", password=PASSWORD)
        start = datetime.now(UTC)
        for attempt in range(users.FREE_LOGIN_ATTEMPTS):
            with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
                users.authenticate(db, "carol", f"wrong-guess-{attempt}", at=start)
        # Locked now: even the right password is refused, with a message that says until when.
        with pytest.raises(SynthloopError, match="too many failed logins for 'carol': try again after"):
            users.authenticate(db, "carol", PASSWORD, at=start + timedelta(seconds=1))
        # After the lockout the right password works again and resets the counter.
        later = start + timedelta(seconds=users.LOCKOUT_SECONDS + 1)
        assert users.authenticate(db, "carol", PASSWORD, at=later).username == "carol"
        # Lockouts grow: five more failures lock for 60 s, a sixth for 120 s.
        for attempt in range(users.FREE_LOGIN_ATTEMPTS + 1):
            with pytest.raises(SynthloopError):
                users.authenticate(db, "carol", f"again-{attempt}", at=later + timedelta(seconds=200 * attempt))
        locked = datetime.fromisoformat(db.execute("SELECT locked_until FROM user").fetchone()[0])
        last_failure = later + timedelta(seconds=200 * users.FREE_LOGIN_ATTEMPTS)
        assert locked - last_failure == timedelta(seconds=2 * users.LOCKOUT_SECONDS)
        # Unknown users get the same message as a wrong password (no username enumeration).
        with pytest.raises(SynthloopError, match="^unknown user or wrong password$"):
            users.authenticate(db, "nobody", PASSWORD)


# --------------------------------------------------------------------------------------------- secrets


def _wait_for_job(db_path: Path, job_id: int, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with connection.open_db(db_path) as db:
            job = jobs.get(db, job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")


def _kill_leftover_jobs(db_path: Path) -> None:
    """The detached job processes this test started must not outlive it when it fails."""
    import signal

    with connection.open_db(db_path) as db:
        pids = [j["pid"] for j in jobs.list_jobs(db) if j["status"] in ("queued", "running") and j["pid"]]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_planted_api_key_is_found_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real job processes use the key (one accepted, one refused with 401 for a wrong key); afterwards no
    file in the database's folder (database, -wal, -shm, job logs) and no export contains either key."""
    planted = "sk-planted-4f9a1c7e2b8d4e6f"
    wrong = "sk-planted-wrong-0c3e5a7b9d"
    folder = tmp_path / "data"
    folder.mkdir()  # a database is only created in an existing folder
    db_path = folder / "keys.db"
    try:
        exports = _run_two_jobs_with_keys(db_path, planted, wrong, monkeypatch)
    finally:
        _kill_leftover_jobs(db_path)
    logs = [p for p in _files_under(folder) if p.parent.name == "logs"]
    assert logs, "the job processes wrote no logs"
    for key in (planted, wrong):
        for blob_name, blob in [*((p.name, p.read_bytes()) for p in _files_under(folder)),
                                *((f"export {i}", data) for i, data in enumerate(exports))]:
            assert key.encode() not in blob, f"{key} found in {blob_name}"
            assert key[-12:].encode() not in blob, f"the key's tail found in {blob_name}"


def _run_two_jobs_with_keys(db_path: Path, planted: str, wrong: str, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    # The server repeats a wrong key in its 401 body, as some servers do: the job's error must not carry it on.
    with FakeLLMServer(api_key=planted, echo_key_in_errors=True) as server, connection.open_db(db_path) as db:
        project = projects.create_project(db, "keys", projects.parse_labels("pos,neg"), overlap=1)
        options = dict(backend="openai", model="fake-model", base_url=server.base_url, mode="zero-shot",
                       per_label=2, concurrency=2, max_retries=0)
        monkeypatch.setenv("OPENAI_API_KEY", planted)
        good = generation.start_generation(db, project.id, **options)  # launches a detached process
        monkeypatch.setenv("OPENAI_API_KEY", wrong)
        bad = generation.start_generation(db, project.id, **options)
        monkeypatch.delenv("OPENAI_API_KEY")
        good_job, bad_job = _wait_for_job(db_path, good), _wait_for_job(db_path, bad)
        assert good_job["status"] == "done", good_job["error"]
        assert bad_job["status"] == "failed"
        assert bad_job["error"].endswith("Incorrect API key provided: [redacted]. Your key starts with [redacted].")
        # The key really reached the server (so the test can fail): both as Bearer tokens.
        sent = {v for r in server.completion_requests() for k, v in r.headers.items() if k.lower() == "authorization"}
        assert f"Bearer {planted}" in sent and f"Bearer {wrong}" in sent
        exports = [exporter.export_data(db, project.id, view=view, fmt=fmt).data
                   for view in vocab.EXPORT_VIEWS for fmt in vocab.EXPORT_FORMATS]
        assert generation.job_summary(db, good).accepted == 4
    return exports


# ------------------------------------------------------------------------------------------ CSV export


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+9)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def test_exported_csv_cannot_carry_formulas(tmp_path: Path) -> None:
    with connection.open_db(tmp_path / "csv.db") as db:
        project = projects.create_project(db, "csvproj", projects.parse_labels("ok,=bad"), overlap=2)
        rows = [{"id": f"=ID{i}", "text": text, "label": "=bad", "who": "@mallory", "lab": "ok"}
                for i, text in enumerate(FORMULAS)]
        rows.append({"id": "n1", "text": "-42", "label": "ok", "who": "bob", "lab": "ok"})  # a plain number
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        importer.import_file(db, project.id, buffer.getvalue().encode(), importer.ImportSpec(
            id_col="id", label_col="label", annotator_col="who", annotation_col="lab"), filename="evil.csv")
        for view in vocab.EXPORT_VIEWS:
            data = exporter.export_data(db, project.id, view=view, fmt="csv").data.decode("utf-8")
            cells = [cell for row in csv.reader(io.StringIO(data)) for cell in row]
            risky = [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r")) or
                     (c.startswith("-") and not c.lstrip("-").replace(".", "", 1).isdigit())]
            assert not risky, f"{view}: formula cells {risky}"
            for text in FORMULAS:
                text = text.strip()  # the importer trims texts; a leading tab or CR does not survive it
                assert "'" + text in cells, f"{view}: {text!r} not kept (neutralised) in the CSV"
            assert "-42" in cells  # a plain number stays a number
        # JSONL keeps every value exactly (lossless): the neutralising is for spreadsheets only.
        jsonl = exporter.export_data(db, project.id, view="aggregated", fmt="jsonl").data.decode("utf-8")
        texts = {json.loads(line)["text"] for line in jsonl.splitlines()}
        assert {t.strip() for t in FORMULAS} <= texts
    assert os.path.exists(tmp_path / "csv.db")
