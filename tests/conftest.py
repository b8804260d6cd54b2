"""Shared fixtures: a fresh database file per test, the shared datasets, a seeded project."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import projects
from db import connection

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "synthloop.db"


@pytest.fixture
def fresh_db(db_path: Path):
    """A migrated database on a temporary file, closed after the test."""
    db = connection.connect(db_path)
    yield db
    db.conn.close()


@pytest.fixture
def project(fresh_db):
    """A three-label project with default keys."""
    return projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg,neu"), overlap=3)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def launched(monkeypatch) -> list[tuple[str, int]]:
    """Record job launches instead of starting processes: ``[(db_path, job_id), ...]``."""
    from core import jobs

    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(jobs, "launch", lambda db_path, job_id: calls.append((str(db_path), job_id)))
    return calls
