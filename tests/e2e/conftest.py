"""Fixtures for the browser tests: Chromium (session-wide), the app started per test on its own database,
a context per user, and numbered screenshots saved under ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e import support


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if support.chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    with support.browser_session() as browser:
        yield browser


@pytest.fixture
def new_page(browser, request) -> Iterator[Callable]:
    """``new_page()`` gives a page in a fresh context (one per simulated user); all are closed after the test.
    When the test fails, every open page is photographed first (``test-artifacts/<test>/FAILED-<n>.png``)."""
    contexts = []

    def make(**kwargs):
        page = support.new_page(browser, **kwargs)
        contexts.append(page.context)
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        folder = support.ARTIFACTS / support.slug(request.node.name)
        folder.mkdir(parents=True, exist_ok=True)
        for n, context in enumerate(contexts):
            for m, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(folder / f"FAILED-{n}-{m}.png"), full_page=True)
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()


def _kill_leftover_jobs(db_path: Path) -> None:
    """Job processes the app started for this test (detached on purpose) must not outlive it."""
    if not db_path.exists():
        return
    from db import connection
    from db import jobs as jobs_db

    with connection.open_db(db_path) as db:
        pids = [job["pid"] for job in jobs_db.active_jobs(db) if job["pid"]]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_app(tmp_path: Path, request) -> Iterator[Callable[..., support.AppServer]]:
    """``start_app(db_path, env=...)`` starts the real app on a free loopback port; stopped after the test.
    When the test fails, the tail of the server's log is printed."""
    servers: list[support.AppServer] = []

    def start(db_path: Path | None = None, *, env: dict[str, str] | None = None,
              extra_args: tuple[str, ...] = ()) -> support.AppServer:
        db_path = db_path or tmp_path / "app.db"
        server = support.AppServer(db_path, env=env, log_path=tmp_path / f"streamlit-{len(servers)}.log",
                                   extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
        _kill_leftover_jobs(server.db_path)
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- streamlit log ({server.url}) ---\n{server.log_tail()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def shots(request) -> support.Shots:
    return support.Shots(request.node.name)
