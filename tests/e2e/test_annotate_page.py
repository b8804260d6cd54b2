"""The Annotate page in a real browser and over the real server's protocol: label keys work wherever the focus is
except in the comment box, Back and Forward have keys of their own, names and descriptions show as plain text
(an image in a label name fetches nothing), and a label click re-runs only the item's fragment while a session
that ended elsewhere still ends at that click."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.load_bench import FINISHED_FRAGMENT_RUN_SUCCESSFULLY, ProtocolAnnotator, run_async
from core import projects, users
from core.annotation.pool import set_pool
from core.data.text import text_hash
from db import connection, transaction
from db import items as items_db
from tests.e2e import support

pytestmark = pytest.mark.browser

EVIL_HOST = "evil.invalid"
LABELS = [projects.LabelSpec("pos", "a happy post", "1"),
          projects.LabelSpec(f"![l](http://{EVIL_HOST}/label.png)", f"*not* ![d](http://{EVIL_HOST}/d.png)", "2")]


def _database(db_path: Path, n_items: int = 6) -> str:
    """A project whose name and second label carry Markdown images, ``n_items`` pool items, and annotator 'ann'
    (a member) with an invite link, which is returned."""
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, f"![p](http://{EVIL_HOST}/project.png) Posts", LABELS, overlap=1)
        with transaction(db):
            items_db.insert_items(db, project.id, [
                {"text": f"post number {i}", "text_hash": text_hash(f"post number {i}"), "source": "real",
                 "split": "test"} for i in range(n_items)])
        set_pool(db, project.id)
        ann = users.add_user(db, "ann", role="annotator")
        projects.add_member(db, project.id, ann.id)
        return users.create_invite(db, "ann")


def _labels(db_path: Path) -> list[tuple[str, str, str]]:
    with connection.open_db(db_path) as db:
        return db.execute("SELECT i.text, a.label, a.comment FROM annotation a JOIN item i ON i.id = a.item_id"
                          " ORDER BY a.id").fetchall()


def test_keys_work_wherever_the_focus_is_except_in_the_comment_box(tmp_path: Path, start_app, new_page,
                                                                    shots) -> None:
    db_path = tmp_path / "keys.db"
    token = _database(db_path)
    app = start_app(db_path)
    page = new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url) if EVIL_HOST in request.url else None)
    support.login_with_invite(page, app.url, token, "ann")
    main = support.main_area(page)
    progress = main.get_by_text("0 of 6 labelled by you")
    expect(progress).to_be_visible()
    # Names and descriptions as the characters they are, the descriptions beside the buttons.
    expect(main.locator("h1").filter(has_text=f"![p](http://{EVIL_HOST}/project.png) Posts")).to_be_visible()
    expect(main.get_by_role("button", name=f"![l](http://{EVIL_HOST}/label.png)")).to_be_visible()
    expect(main.get_by_text(f"*not* ![d](http://{EVIL_HOST}/d.png)", exact=True)).to_be_visible()
    expect(main.get_by_text("a happy post", exact=True)).to_be_visible()
    shots(page, "first item")
    text = main.locator('[data-testid="stText"]').first

    # Unsure by its key, then a label key: the Unsure button keeps the focus after a click, and keys still work.
    first = text.inner_text()
    main.get_by_role("button", name="Unsure").click()
    support.wait_idle(page)
    page.keyboard.press("2")
    expect(main.get_by_text("1 of 6 labelled by you")).to_be_visible()
    support.wait_idle(page)
    # In the comment box a key is a character, not a label.
    second = text.inner_text()
    comment = support.field(main, "Comment (optional)")
    comment.click()
    page.keyboard.type("12 words")
    page.keyboard.press("ArrowLeft")  # moves the caret, not back to the last label
    support.wait_idle(page, settle_ms=500)
    expect(main.get_by_text("1 of 6 labelled by you")).to_be_visible()
    assert text.inner_text() == second
    # Out of the box again (the item's text), the keys label.
    text.click()
    page.keyboard.press("u")
    support.wait_idle(page)
    page.keyboard.press("1")
    expect(main.get_by_text("2 of 6 labelled by you")).to_be_visible()
    support.wait_idle(page)
    # Back (←) to the last label and Forward (→) again, with the keys.
    page.keyboard.press("ArrowLeft")
    expect(main.get_by_text("Reviewing your label 1 back")).to_be_visible()
    expect(text).to_have_text(second)
    page.keyboard.press("ArrowRight")
    expect(main.get_by_text("Reviewing your label")).to_have_count(0)
    shots(page, "after keys")
    assert _labels(db_path) == [(first, LABELS[1].name, ""), (second, "pos", "12 words")]
    with connection.open_db(db_path) as db:
        assert db.execute("SELECT unsure FROM annotation ORDER BY id").fetchall() == [(1,), (1,)]
    assert fetched == [], f"the browser fetched URLs from names: {fetched}"


def test_a_label_rerun_is_the_fragment_alone_and_still_checks_the_session(tmp_path: Path, start_app) -> None:
    db_path = tmp_path / "fragment.db"
    token = _database(db_path)
    app = start_app(db_path)

    async def scenario() -> tuple[list[int], list[str]]:
        client = ProtocolAnnotator(app.url, token, "ann")
        await client.connect()
        finished = []
        for name in ("pos", "pos"):
            await client.label(name)
            finished.append(client.state.finished)
        with connection.open_db(db_path) as db:  # deleted elsewhere (the Users page) between two clicks
            users.delete_user(db, "ann")
        widget, fragment = client.state.buttons["pos"]
        after = await client._rerun(trigger=widget, fragment=fragment)
        await client.close()
        return finished, [after.text or "", str(after.done), *after.buttons]

    finished, after = run_async(scenario())
    assert finished == [FINISHED_FRAGMENT_RUN_SUCCESSFULLY] * 2  # no full run of the router per label
    assert after == ["", "None"]  # the login form: no item, no progress, no label buttons
    assert len(_labels(db_path)) == 2  # the click after the deletion stored nothing
