"""Sessions in a real browser: a refresh or a new tab keeps the user and the page, a logout or a deletion ends
it, a page's address without a session shows the login form (never "Page not found" or a stack trace).

The cookie is set by the app's ``/auth/session`` route (app.py); these tests go through the real server that
the README's run command starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core import projects, sessions, users
from core.annotation.pool import set_pool
from core.data.text import text_hash
from db import connection, transaction
from db import items as items_db
from tests.e2e import support

pytestmark = pytest.mark.browser

PASSWORD = "session-pass-2024"


def _database(db_path: Path) -> str:
    """Two projects (the second has pool items), an admin, a researcher and an annotator; returns an invite
    token of the annotator."""
    with connection.open_db(db_path) as db:
        projects.create_project(db, "First project", projects.parse_labels("pos,neg"))
        second = projects.create_project(db, "Second project", projects.parse_labels("pos,neg"), overlap=1)
        with transaction(db):
            items_db.insert_items(db, second.id, [
                {"text": f"text number {i}", "text_hash": text_hash(f"text number {i}"), "source": "real",
                 "split": "test"} for i in range(4)])
        set_pool(db, second.id, source="real")
        users.add_user(db, "root", role="admin", password=PASSWORD)
        users.add_user(db, "rex", role="researcher", password=PASSWORD)
        ann = users.add_user(db, "ann", role="annotator")
        projects.add_member(db, second.id, ann.id)
        return users.create_invite(db, "ann")


def _session_cookie(page) -> dict | None:
    return next((c for c in page.context.cookies() if c["name"] == sessions.COOKIE_NAME), None)


def _heading(page) -> list[str]:
    return [h.strip() for h in support.main_area(page).locator("h1").all_inner_texts()]


def _expect_login_form(page) -> None:
    """The login form, and nothing of a logged-in session: no sidebar user, no error dialog, no traceback."""
    support.wait_idle(page, settle_ms=400)
    expect(support.main_area(page).get_by_role("button", name="Log in")).to_be_visible()
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Traceback").count() == 0
    assert support.sidebar(page).get_by_role("button", name="Log out").count() == 0


def test_a_refresh_and_a_new_tab_keep_the_researcher_on_their_page(tmp_path: Path, start_app, new_page,
                                                                    shots) -> None:
    db_path = tmp_path / "refresh.db"
    _database(db_path)
    app = start_app(db_path)
    page = new_page()
    support.login(page, app.url, "rex", PASSWORD)
    cookie = _session_cookie(page)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find(sessions.COOKIE_NAME) == -1  # invisible to page scripts
    # No developer menu and no "Deploy" for anyone, even on localhost (.streamlit/config.toml).
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    page.locator('[data-testid="stMainMenu"]').click()
    menu = page.locator('[data-testid="stMainMenuPopover"]')
    expect(menu).to_be_visible()
    assert menu.get_by_text(re.compile("Rerun|Clear cache")).count() == 0, menu.inner_text()
    page.keyboard.press("Escape")

    support.select_option(page, "Project", "Second project", scope=support.sidebar(page))
    support.goto(page, "Agreement")
    address = page.url
    assert re.search(r"/agreement\?project=\d+$", address), address

    page.reload()
    support.wait_idle(page, settle_ms=400)
    expect(support.sidebar(page).get_by_text("rex · researcher")).to_be_visible()
    assert _heading(page)[0] == "Agreement" and page.url == address
    expect(support.sidebar(page).get_by_role("combobox", name="Project")).to_have_value("Second project")
    shots(page, "after a refresh")

    tab = page.context.new_page()  # a new tab of the same browser: the same cookie, a new Streamlit session
    support.open_app(tab, address)
    expect(support.sidebar(tab).get_by_text("rex · researcher")).to_be_visible()
    assert _heading(tab)[0] == "Agreement"
    shots(tab, "a new tab")


def test_a_refresh_after_a_server_restart_keeps_the_page(tmp_path: Path, start_app, new_page, shots) -> None:
    """A restarted server's first request is special in Streamlit (it may run the page file without the router,
    listing every file of pages/ as a page): the session and the page must still come back whole."""
    db_path = tmp_path / "restart.db"
    _database(db_path)
    app = start_app(db_path)
    page = new_page()
    support.login(page, app.url, "rex", PASSWORD)
    support.goto(page, "Agreement")
    address = page.url
    app.stop()
    app.start()  # the same port: the browser's cookie and address stay valid
    page.reload()
    support.wait_idle(page, settle_ms=1000)
    expect(support.sidebar(page).get_by_text("rex · researcher")).to_be_visible()
    assert _heading(page)[0] == "Agreement" and page.url == address
    assert "common" not in [link.lower() for link in support.nav_links(page)]
    shots(page, "after a restart and a refresh")


def test_a_refresh_keeps_the_annotator_on_annotate(tmp_path: Path, start_app, new_page, shots) -> None:
    db_path = tmp_path / "annotator.db"
    token = _database(db_path)
    app = start_app(db_path)
    page = new_page()
    support.login_with_invite(page, app.url, token, "ann")
    assert _session_cookie(page) is not None
    assert "invite=" not in page.url  # the one-time link is gone from the address
    expect(support.main_area(page).get_by_text("0 of 4 labelled by you")).to_be_visible()
    item = support.main_area(page).get_by_text(re.compile(r"^text number \d$")).first.inner_text()

    page.reload()
    support.wait_idle(page, settle_ms=400)
    expect(support.sidebar(page).get_by_text("ann · annotator")).to_be_visible()
    expect(support.main_area(page).get_by_text("0 of 4 labelled by you")).to_be_visible()
    assert _heading(page)[0] == "Second project"
    expect(support.main_area(page).get_by_text(item, exact=True)).to_be_visible()  # the same item, reserved
    shots(page, "annotator after a refresh")


def test_logout_ends_the_session_everywhere(tmp_path: Path, start_app, new_page, shots) -> None:
    db_path = tmp_path / "logout.db"
    _database(db_path)
    app = start_app(db_path)
    page = new_page()
    support.login(page, app.url, "rex", PASSWORD)
    stolen = _session_cookie(page)
    other_tab = page.context.new_page()
    support.open_app(other_tab, f"{app.url}/data")
    expect(support.sidebar(other_tab).get_by_text("rex · researcher")).to_be_visible()

    with page.expect_navigation(url=lambda url: "/auth/" not in url):
        support.sidebar(page).get_by_role("button", name="Log out").click()
    _expect_login_form(page)
    assert _session_cookie(page) is None
    page.reload()
    _expect_login_form(page)

    # The other tab, still showing Data, is logged out at its next action.
    support.sidebar(other_tab).get_by_role("link", name="Seeds").click()
    _expect_login_form(other_tab)
    shots(other_tab, "the other tab after the logout")

    # The old cookie, replayed in another browser, opens nothing: the session ended on the server.
    replay = new_page()
    replay.context.add_cookies([{key: stolen[key] for key in ("name", "value", "domain", "path")}])
    support.open_app(replay, f"{app.url}/data")
    _expect_login_form(replay)


def test_a_deleted_users_tab_is_logged_out_even_after_a_new_admin_is_added(tmp_path: Path, start_app, new_page,
                                                                           shots) -> None:
    db_path = tmp_path / "deleted.db"
    _database(db_path)
    with connection.open_db(db_path) as db:
        users.add_user(db, "bob", role="researcher", password=PASSWORD)  # the highest id
    app = start_app(db_path)
    page = new_page()
    support.login(page, app.url, "bob", PASSWORD)
    support.goto(page, "Data")

    with connection.open_db(db_path) as db:
        users.delete_user(db, "bob")
        # A new admin in between: with ids reused it would get bob's id, and bob's tab would become the admin.
        users.add_user(db, "mallory", role="admin")

    support.sidebar(page).get_by_role("link", name="Seeds").click()  # the tab's next action
    _expect_login_form(page)
    for name in ("bob", "mallory"):
        assert support.sidebar(page).get_by_text(name).count() == 0
    shots(page, "the deleted user's tab")
    page.reload()
    _expect_login_form(page)


def test_a_page_address_without_a_live_session_shows_the_login_form_then_the_page(
        tmp_path: Path, start_app, new_page, shots) -> None:
    db_path = tmp_path / "deep.db"
    _database(db_path)
    app = start_app(db_path)
    support.open_app(new_page(), app.url)  # warm the server (a cold server's first deep link is another matter)
    for cookie in ("", "garbage", "a.b", "x" * 300):
        page = new_page()
        if cookie:
            page.context.add_cookies([{"name": sessions.COOKIE_NAME, "value": cookie, "url": app.url}])
        support.open_app(page, f"{app.url}/agreement")
        _expect_login_form(page)
    shots(page, "a deep link with a forged cookie")
    form = page.locator('[data-testid="stForm"]')
    form.get_by_label("Username").fill("rex")
    form.get_by_label("Password", exact=True).fill(PASSWORD)
    with support.logging_in(page):
        form.get_by_role("button", name="Log in").click()
    support.wait_idle(page, settle_ms=400)
    expect(support.sidebar(page).get_by_text("rex · researcher")).to_be_visible()
    assert _heading(page)[0] == "Agreement" and "/agreement" in page.url


def test_the_first_admin_is_logged_in_by_a_session_too(tmp_path: Path, start_app, new_page) -> None:
    app = start_app(tmp_path / "empty.db")
    page = new_page()
    support.open_app(page, app.url)
    form = page.locator('[data-testid="stForm"]')
    support.fill(form, "Username", "first")
    support.fill(form, "Password", PASSWORD)
    support.fill(form, "Password again", PASSWORD)
    with support.logging_in(page):
        form.get_by_role("button", name="Create admin").click()
    assert _session_cookie(page) is not None
    page.reload()
    support.wait_idle(page, settle_ms=400)
    expect(support.sidebar(page).get_by_text("first · admin")).to_be_visible()
