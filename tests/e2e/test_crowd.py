"""Crowd studies in a real browser, through the server the README's run command starts: a Prolific link logs its
worker in with no password, they label their quota with the label keys alone (quality checks mixed in at rate
0.5, answered like items) and see the completion code and the way back to Prolific; a failed qualification ends politely with the
screened-out code; a link without a valid worker id says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from core import projects
from core.annotation import crowd, quality
from core.annotation.pool import set_pool
from core.data.text import text_hash
from db import connection, transaction
from db import items as items_db
from tests.e2e import support

pytestmark = pytest.mark.browser

PID = "5f3c9a0e1d2b4c6a8e0f1a2b"
COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"
TEXTS = [f"crowd item number {n}" for n in range(8)]


def _database(db_path: Path) -> tuple[str, str, dict[str, str]]:
    """Two projects: 'Crowd project' (labels pos/neg on keys 1/2, 8 pool items, a gold item and an attention
    check) with a quota-3 Prolific study; 'Screening project' with a qualification gold item and its own study.
    Returns the two study tokens and the label each text should get."""
    with connection.open_db(db_path) as db:
        project = projects.create_project(db, "Crowd project", projects.parse_labels("pos,neg"), overlap=2)
        screening = projects.create_project(db, "Screening project", projects.parse_labels("pos,neg"), overlap=2)
        with transaction(db):
            ids = items_db.insert_items(db, project.id, [
                {"text": text, "text_hash": text_hash(text), "source": "real", "split": "train"} for text in TEXTS])
            screen_ids = items_db.insert_items(db, screening.id, [
                {"text": f"screening item {n}", "text_hash": f"s{n}", "source": "real", "split": "train"}
                for n in range(3)])
        set_pool(db, project.id)
        set_pool(db, screening.id)
        quality.add_gold(db, project, ids[0], ["neg"])
        quality.add_attention_check(db, project, "pos")
        quality.add_gold(db, screening, screen_ids[0], ["neg"], qualification=True)
        study = crowd.create_study(db, project, "prolific", crowd.StudySettings(
            quota=3, completion_code="C0MPLETE", completion_url=COMPLETE, gold_rate=0.5))
        screen = crowd.create_study(db, screening, "prolific", crowd.StudySettings(
            quota=2, completion_code="C0MPLETE", screened_out_code="SCREENED", completion_url=COMPLETE,
            qualification_threshold=1.0))
    answers = {text: "pos" for text in TEXTS} | {"Please choose “pos” for this item.": "pos"}
    return study.token, screen.token, answers


def _open_link(page, url: str) -> None:
    """Open a study link: the app logs the worker in and sends the tab through the session route and back."""
    with page.expect_navigation(url=lambda u: "/auth/" not in u and "study=" not in u, wait_until="load"):
        page.goto(url)
    support.wait_idle(page)


def _link(app, token: str, pid: str = PID) -> str:
    return f"{app.url}/?study={token}&PROLIFIC_PID={pid}&STUDY_ID=study-1&SESSION_ID=session-1"


def test_a_prolific_worker_labels_the_quota_by_keyboard_and_gets_the_code(tmp_path: Path, start_app, new_page,
                                                                          shots) -> None:
    db_path = tmp_path / "crowd.db"
    token, _screen_token, answers = _database(db_path)
    app = start_app(db_path)
    page = new_page()
    _open_link(page, _link(app, token))
    shots(page, "arrived")
    expect(support.sidebar(page).get_by_text("Prolific worker")).to_be_visible()
    main = support.main_area(page)
    seen = []
    for n in range(3):
        text_box = main.locator('[data-testid="stText"]').first
        expect(main.get_by_text(f"{n} of 3 labelled by you")).to_be_visible()
        # Label keys act once the run that drew the buttons has settled: a key pressed in the same instant is lost.
        support.wait_idle(page, settle_ms=500)
        text = text_box.inner_text().strip()
        seen.append(text)
        page.keyboard.press({"pos": "1", "neg": "2"}[answers.get(text, "neg")])
        if n < 2:
            expect(text_box).not_to_have_text(text)
    expect(main.get_by_text("Thank you: you have finished this study.")).to_be_visible()
    expect(main.get_by_text("C0MPLETE", exact=True)).to_be_visible()
    back = main.get_by_role("link", name="Return to Prolific")
    expect(back).to_have_attribute("href", "https://app.prolific.com/submissions/complete?cc=C0MPLETE")
    shots(page, "completed")
    # Only the study's project in the picker.
    support.sidebar(page).locator('[data-testid="stSelectbox"]').get_by_role("combobox").click()
    options = page.get_by_role("listbox").get_by_role("option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_text("Crowd project")
    page.keyboard.press("Escape")

    with connection.open_db(db_path) as db:
        project = projects.get_project(db, "Crowd project")
        (worker,) = crowd.workers_table(db, project).to_dict("records")
        labels = items_db.annotations_frame(db, project.id)
    assert (worker["annotator"], worker["status"], worker["items_done"]) == (f"prolific:{PID}", "completed", 3)
    assert (worker["platform_study_id"], worker["platform_session_id"]) == ("study-1", "session-1")
    checks = [text for text in seen if text in (TEXTS[0], "Please choose “pos” for this item.")]
    assert len(labels) == 3 - len(checks)  # a check's answer is never a data label
    assert set(labels["label"]) <= {"pos"}


def test_a_failed_qualification_ends_politely_with_the_screened_out_code(tmp_path: Path, start_app,
                                                                        new_page, shots) -> None:
    db_path = tmp_path / "crowd.db"
    _token, screen_token, _answers = _database(db_path)
    app = start_app(db_path)
    page = new_page()
    _open_link(page, _link(app, screen_token, pid="aa11bb22cc33dd44ee55ff66"))
    main = support.main_area(page)
    expect(main.locator('[data-testid="stText"]').first).to_have_text("screening item 0")
    support.wait_idle(page, settle_ms=500)
    page.keyboard.press("1")  # pos: the qualification item's correct label is neg
    expect(main.get_by_text("Your answers to the first items did not match what this study needs")).to_be_visible()
    expect(main.get_by_text("SCREENED", exact=True)).to_be_visible()
    expect(main.get_by_role("link", name="Return to Prolific")).to_have_attribute(
        "href", "https://app.prolific.com/submissions/complete?cc=SCREENED")
    assert main.get_by_text("C0MPLETE").count() == 0
    shots(page, "screened out")

    bad = new_page()
    bad.goto(f"{app.url}/?study={screen_token}&PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}")
    expect(support.main_area(bad).get_by_text("The worker ID in this link is not valid.")).to_be_visible()
    assert bad.locator('[data-testid="stException"]').count() == 0
    shots(bad, "invalid worker id")
