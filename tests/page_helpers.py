"""Running one page file under AppTest as a logged-in researcher (the router is tested in the browser)."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import users
from pages._common import PROJECT_ID, USER_ID

ROOT = Path(__file__).resolve().parent.parent


def researcher_app(page: str, db_path: Path, fresh_db, project_id: int, monkeypatch) -> AppTest:
    """``pages/<page>`` for a new researcher ``rita`` on the given project, not yet run."""
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    user = users.add_user(fresh_db, "rita", role="researcher", password="a long password")
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=60)
    at.session_state[USER_ID] = user.id
    at.session_state[PROJECT_ID] = project_id
    return at


def shown(markdown: str) -> str:
    """The text a reader sees in a Markdown element whose untrusted parts the page escaped with backslashes."""
    return re.sub(r"\\(.)", r"\1", markdown)
