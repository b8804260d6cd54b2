"""Crowd studies: study links per platform, a worker's arrival (identity, platform ids, polite refusals), their
queue (qualification, quality checks at a rate, quota, completion and screened-out codes), confinement to the
study's project, the workers table and export; the ``crowd`` CLI by subprocess; the Crowd study and Annotate pages."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import projects, users
from core.annotation import crowd, quality
from core.annotation.assignment import next_item
from core.annotation.pool import set_pool
from core.errors import PermissionDenied, SynthloopError
from db import connection
from db import crowd as crowd_db
from db import items as items_db
from pages._common import PROJECT_ID, USER_ID
from tests.page_helpers import researcher_app, shown

ROOT = Path(__file__).resolve().parent.parent
PID = "5f3c9a0e1d2b4c6a8e0f1a2b"
PROLIFIC = {"PROLIFIC_PID": PID, "STUDY_ID": "st-1", "SESSION_ID": "se-1"}
COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"


def _project(db, name: str = "crowd", n_items: int = 6):
    project = projects.create_project(db, name, projects.parse_labels("pos,neg"), overlap=2)
    ids = items_db.insert_items(db, project.id, [
        {"text": f"{name} text {n}", "text_hash": f"{name}{n}", "source": "real", "split": "train",
         "external_id": f"{name}{n}"} for n in range(n_items)])
    set_pool(db, project.id, add=True)
    return project, ids


def _study(db, project, platform: str = "prolific", **settings) -> crowd.Study:
    return crowd.create_study(db, project, platform, crowd.StudySettings(**settings))


def _label_all(db, project, name: str, label: str = "pos", limit: int = 100) -> list[str]:
    """Label every item the worker is shown with ``label``; returns the texts shown, in order."""
    texts = []
    while (item := crowd.next_item(db, project, name)) is not None and len(texts) < limit:
        texts.append(item.text)
        crowd.submit_label(db, project, name, item.item_id, label, seconds=2.0)
    return texts


# ------------------------------------------------------------------------------------------ links


def test_study_links_carry_the_token_and_the_platforms_placeholders(fresh_db, monkeypatch) -> None:
    project, _ids = _project(fresh_db)
    monkeypatch.delenv(crowd.PUBLIC_URL_ENV, raising=False)
    prolific, mturk, generic = (_study(fresh_db, project, p) for p in ("prolific", "mturk", "generic"))
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", prolific.token) and prolific.token != mturk.token
    assert crowd.study_url(prolific) == (
        f"http://localhost:8501/?study={prolific.token}&PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    assert crowd.study_url(mturk, "https://label.example.org/") == f"https://label.example.org/?study={mturk.token}"
    monkeypatch.setenv(crowd.PUBLIC_URL_ENV, "https://crowd.example.org")
    assert crowd.study_url(generic) == f"https://crowd.example.org/?study={generic.token}&worker={{WORKER_ID}}"
    with pytest.raises(SynthloopError, match=r"'base_url' 'ftp://x' is not valid"):
        crowd.study_url(generic, "ftp://x")


@pytest.mark.parametrize(("settings", "message"), [
    ({"quota": 0}, r"'quota' 0 is not valid: use a whole number from 1 to 100000, or none"),
    ({"completion_code": "AB CD"}, r"'completion_code' 'AB CD' is not valid: use 1-64 letters, digits"),
    ({"completion_url": "javascript:alert(1)"}, r"'completion_url' 'javascript:alert\(1\)' is not valid"),
    ({"gold_rate": 0.6}, r"'gold_rate' 0.6 is not valid: use a number from 0 to 0.5"),
    ({"qualification_threshold": 1.5}, r"'qualification_threshold' 1.5 is not valid"),
])
def test_study_settings_are_validated(settings, message) -> None:
    with pytest.raises(SynthloopError, match=message):
        crowd.StudySettings(**settings)


# ------------------------------------------------------------------------------------------ arrival


def test_arrival_creates_then_resumes_the_workers_identity(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project)
    first = crowd.arrive(fresh_db, study.token, PROLIFIC)
    assert (first.user.username, first.user.role, first.project_id, first.study_id) == \
        (f"prolific:{PID}", "annotator", project.id, study.id)
    with pytest.raises(SynthloopError, match="has no password yet"):  # only a crowd link logs a worker in
        users.authenticate(fresh_db, f"prolific:{PID}", "")
    again = crowd.arrive(fresh_db, study.token, {**PROLIFIC, "SESSION_ID": "se-2"})
    assert again.user == first.user
    (row,) = crowd_db.workers_frame(fresh_db, project.id).to_dict("records")
    assert (row["worker_id"], row["platform_study_id"], row["platform_session_id"], row["status"]) == \
        (PID, "st-1", "se-2", "working")
    assert row["first_seen"] <= row["last_seen"]
    mturk = _study(fresh_db, project, "mturk")
    assert crowd.arrive(fresh_db, mturk.token, {"workerId": "A1B2C3D4E5", "assignmentId": "3XYZ",
                                                "hitId": "H1"}).user.username == "mturk:A1B2C3D4E5"


@pytest.mark.parametrize(("token", "params", "message"), [
    ("not-a-token", PROLIFIC, "This study link is not valid. Please open the study again"),
    (None, {}, "This link does not carry your worker ID. Please open the study from Prolific again"),
    (None, {"PROLIFIC_PID": "{{%PROLIFIC_PID%}}"}, "The worker ID in this link is not valid. Please open the study"
                                                   " from Prolific again"),
    (None, {"PROLIFIC_PID": "x" * 65}, "The worker ID in this link is not valid"),
])
def test_arrival_refuses_politely(fresh_db, token, params, message) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project)
    with pytest.raises(SynthloopError, match=re.escape(message)):
        crowd.arrive(fresh_db, token or study.token, params)
    assert crowd_db.workers_frame(fresh_db, project.id).empty


def test_mturk_preview_and_promoted_identities_are_refused(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project, "mturk")
    with pytest.raises(SynthloopError, match="Please accept the HIT to start"):
        crowd.arrive(fresh_db, study.token, {"workerId": "A1", "assignmentId": crowd.MTURK_PREVIEW})
    crowd.arrive(fresh_db, study.token, {"workerId": "A1"})
    users.set_role(fresh_db, "mturk:A1", "researcher")
    with pytest.raises(PermissionDenied, match="This account cannot start a study from a link"):
        crowd.arrive(fresh_db, study.token, {"workerId": "A1"})


# ------------------------------------------------------------------------------------------ the queue


def test_quota_then_the_completion_code_and_url(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project, quota=3, completion_code="C0DE-1", completion_url=COMPLETE)
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    assert crowd.progress(fresh_db, project, name).total == 3
    assert crowd.ending(fresh_db, project, name) is None
    assert len(_label_all(fresh_db, project, name)) == 3
    progress = crowd.progress(fresh_db, project, name)
    assert (progress.done, progress.remaining) == (3, 0)
    end = crowd.ending(fresh_db, project, name)
    assert end == crowd.Ending(status="completed", message="Thank you: you have finished this study.",
                               code="C0DE-1", url="https://app.prolific.com/submissions/complete?cc=C0DE-1",
                               platform="Prolific")
    assert crowd.next_item(fresh_db, project, name) is None  # ended: nothing more, even with items left
    (row,) = crowd.workers_table(fresh_db, project).to_dict("records")
    assert (row["status"], row["items_done"], row["n_labels"], row["time_on_task_s"]) == ("completed", 3, 3, 6.0)


def test_the_queue_ending_completes_the_study(fresh_db) -> None:
    project, _ids = _project(fresh_db, n_items=2)
    study = _study(fresh_db, project, "generic", completion_code="END")
    name = crowd.arrive(fresh_db, study.token, {"worker": "w.1"}).user.username
    assert name == "generic:w.1"
    assert len(_label_all(fresh_db, project, name)) == 2
    end = crowd.ending(fresh_db, project, name)
    assert (end.status, end.code, end.url, end.platform) == ("completed", "END", "", "")


def test_a_failed_qualification_screens_out_with_its_code(fresh_db) -> None:
    project, ids = _project(fresh_db)
    quality.add_gold(fresh_db, project, ids[0], ["pos"], qualification=True)
    quality.add_attention_check(fresh_db, project, "neg", qualification=True)
    study = _study(fresh_db, project, quota=4, completion_code="DONE", screened_out_code="SCREEN",
                   completion_url=COMPLETE, qualification_threshold=1.0)
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    assert crowd.progress(fresh_db, project, name).total == 6  # the quota plus the two qualification items
    texts = _label_all(fresh_db, project, name, label="pos")  # right on the gold item, wrong on the attention check
    assert sorted(texts) == sorted(["crowd text 0", "Please choose “neg” for this item."])
    end = crowd.ending(fresh_db, project, name)
    assert (end.status, end.code, end.url) == \
        ("screened_out", "SCREEN", "https://app.prolific.com/submissions/complete?cc=SCREEN")
    assert end.message.startswith("Thank you for your time.")
    assert crowd.progress(fresh_db, project, name).done == 2
    assert items_db.annotations_frame(fresh_db, project.id).empty  # no data label at all


def test_a_passed_qualification_goes_on_to_real_items(fresh_db) -> None:
    project, ids = _project(fresh_db)
    quality.add_gold(fresh_db, project, ids[0], ["pos", "neg"], qualification=True)
    study = _study(fresh_db, project, quota=2, completion_code="DONE")
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    texts = _label_all(fresh_db, project, name)
    assert texts[0] == "crowd text 0" and len(texts) == 3  # the qualification item, then the quota of 2
    assert crowd.ending(fresh_db, project, name).code == "DONE"
    figures = quality.quality_report(fresh_db, project).set_index("annotator").loc[name]
    assert (figures["n_qualification"], figures["qualification_score"], figures["n_labels"]) == (1, 1.0, 2)


def test_checks_come_at_the_gold_rate_look_like_items_and_are_kept_until_answered(fresh_db, monkeypatch) -> None:
    tokens = iter(["fixed-token-1", "fixed-token-2"])  # fixed tokens: the checks' places in the queue are fixed
    monkeypatch.setattr(crowd.secrets, "token_urlsafe", lambda n: next(tokens))
    project, ids = _project(fresh_db, n_items=30)
    gold = [quality.add_gold(fresh_db, project, item_id, ["neg"]) for item_id in ids[:3]]
    quality.add_attention_check(fresh_db, project, "pos")
    none = _study(fresh_db, project, "generic")
    some = _study(fresh_db, project, "generic", gold_rate=0.5)
    plain = crowd.arrive(fresh_db, none.token, {"worker": "plain"}).user.username
    assert len(_label_all(fresh_db, project, plain, limit=10)) == 10
    assert quality.quality_report(fresh_db, project).set_index("annotator").loc[plain, "n_gold"] == 0

    name = crowd.arrive(fresh_db, some.token, {"worker": "mixed"}).user.username
    shown_items = []
    while (item := crowd.next_item(fresh_db, project, name)) is not None:
        assert set(vars(item)) == {"item_id", "text", "label", "unsure", "comment"}  # nothing tells a check
        assert crowd.next_item(fresh_db, project, name) == item  # a reload shows the same item
        shown_items.append(item)
        label = "neg" if item.text in {"crowd text 0", "crowd text 1"} else "pos"  # gold 2 wrong
        crowd.submit_label(fresh_db, project, name, item.item_id, label, seconds=1.0)
        assert crowd.submit_label(fresh_db, project, name, item.item_id, label) is False  # a second click
    texts = [item.text for item in shown_items]
    # All four checks among 27 data items (30 minus the gold items): at rate 0.5, all are served.
    assert len(texts) == 31 and set(texts) >= {"crowd text 0", "crowd text 1", "crowd text 2",
                                                "Please choose “pos” for this item."}
    figures = quality.quality_report(fresh_db, project).set_index("annotator").loc[name]
    assert (figures["n_gold"], figures["gold_correct"], figures["n_attention"], figures["attention_passed"]) == \
        (3, 2, 1, 1)
    assert figures["gold_accuracy"] == pytest.approx(2 / 3)
    assert figures["n_labels"] == 27 and figures["longest_run"] >= 1
    assert gold[0].item_id not in set(items_db.annotations_frame(fresh_db, project.id)["item_id"])


def test_a_skipped_check_counts_as_not_correct_and_does_not_come_back(fresh_db) -> None:
    project, ids = _project(fresh_db, n_items=2)
    quality.add_gold(fresh_db, project, ids[0], ["pos"], qualification=True)
    study = _study(fresh_db, project, "generic", screened_out_code="NOPE")
    name = crowd.arrive(fresh_db, study.token, {"worker": "skipper"}).user.username
    item = crowd.next_item(fresh_db, project, name)
    assert item.text == "crowd text 0"
    crowd.skip_item(fresh_db, project, name, item.item_id)
    assert crowd.next_item(fresh_db, project, name) is None
    assert crowd.ending(fresh_db, project, name).code == "NOPE"


def test_a_worker_sees_only_the_studys_project(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    other, other_ids = _project(fresh_db, "other")
    study = _study(fresh_db, project)
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    assert crowd.confined_project(fresh_db, name) == project.id
    assert crowd.confined_project(fresh_db, "ann") is None
    for call in (lambda: crowd.next_item(fresh_db, other, name), lambda: crowd.progress(fresh_db, other, name),
                 lambda: crowd.submit_label(fresh_db, other, name, other_ids[0], "pos"),
                 lambda: crowd.skip_item(fresh_db, other, name, other_ids[0])):
        with pytest.raises(PermissionDenied, match="This project is not part of your study"):
            call()
    assert items_db.annotations_frame(fresh_db, other.id).empty


def test_annotators_who_are_no_workers_get_the_plain_queue(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    assert crowd.next_item(fresh_db, project, "ann") == next_item(fresh_db, project, "ann")
    item = crowd.next_item(fresh_db, project, "ann")
    assert crowd.submit_label(fresh_db, project, "ann", item.item_id, "neg") is True
    assert crowd.ending(fresh_db, project, "ann") is None
    assert crowd.progress(fresh_db, project, "ann").done == 1


def test_a_deleted_worker_keeps_their_rows_under_the_tombstone(fresh_db) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project, "generic", quota=1)
    user = crowd.arrive(fresh_db, study.token, {"worker": "gone"}).user
    _label_all(fresh_db, project, user.username)
    quality.set_excluded(fresh_db, project, user.username)
    users.delete_user(fresh_db, user.username)
    tombstone = users.tombstone_name(user)
    assert crowd_db.workers_frame(fresh_db, project.id)["annotator"].tolist() == [tombstone]
    assert quality.excluded_annotators(fresh_db, project) == [tombstone]
    again = crowd.arrive(fresh_db, study.token, {"worker": "gone"}).user
    assert again.id != user.id and crowd.ending(fresh_db, project, again.username) is None  # a new person


def test_workers_table_and_export(fresh_db, tmp_path) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project, quota=2, completion_code="DONE")
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    _label_all(fresh_db, project, name)
    crowd.arrive(fresh_db, study.token, {"PROLIFIC_PID": "aaaa"})
    quality.set_excluded(fresh_db, project, "aaaa")  # by the platform id alone
    path = tmp_path / "workers.csv"
    assert crowd.export_workers(fresh_db, project, path) == {"rows": 2, "path": str(path)}
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert list(rows[0]) == list(crowd.WORKER_COLUMNS)
    assert [(r["worker_id"], r["status"], r["items_done"], r["platform_session_id"]) for r in rows] == \
        [(PID, "completed", "2", "se-1"), ("aaaa", "excluded", "0", "")]
    studies = crowd.studies_table(fresh_db, project, base="https://x.org")
    assert studies[["study_id", "workers", "working", "completed", "excluded", "items_done"]].to_dict("records") == \
        [{"study_id": study.id, "workers": 2, "working": 0, "completed": 1, "excluded": 1, "items_done": 2}]
    assert studies.loc[0, "url"].startswith(f"https://x.org/?study={study.token}&PROLIFIC_PID=")


# ------------------------------------------------------------------------------------------ the CLI


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db)], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, env={**os.environ, crowd.PUBLIC_URL_ENV: ""})


def test_cli_link_gold_report_exclude_export(db_path, tmp_path) -> None:
    with connection.open_db(db_path) as db:
        project, _ids = _project(db)
        items_db.insert_annotations(db, [{"item_id": _ids[1], "annotator": "x", "label": "pos"}])
    made = _cli(db_path, "crowd", "link", "crowd", "--platform", "prolific", "--quota", "2", "--completion-code",
                "DONE", "--completion-url", COMPLETE, "--base-url", "https://lab.example.org/", "--json")
    assert made.returncode == 0, made.stderr
    link = json.loads(made.stdout)
    assert re.fullmatch(r"https://lab\.example\.org/\?study=[A-Za-z0-9_-]{24}&PROLIFIC_PID=\{\{%PROLIFIC_PID%\}\}"
                        r"&STUDY_ID=\{\{%STUDY_ID%\}\}&SESSION_ID=\{\{%SESSION_ID%\}\}", link["url"])
    assert link["settings"]["quota"] == 2 and link["platform"] == "prolific"
    plain = _cli(db_path, "crowd", "link", "crowd", "--platform", "mturk")
    assert plain.returncode == 0 and plain.stdout.startswith("http://localhost:8501/?study=")
    assert "MTurk adds workerId, assignmentId and hitId" in plain.stdout

    bad = _cli(db_path, "crowd", "link", "crowd", "--platform", "generic", "--quota", "0")
    assert (bad.returncode, bad.stderr) == (2, "error: --quota 0 is not valid: use a whole number from 1 to 100000,"
                                               " or none\n")
    bad = _cli(db_path, "crowd", "gold", "add", "crowd", "crowd0", "maybe")
    assert (bad.returncode, bad.stderr) == (2, "error: label 'maybe' is not one of the project's labels"
                                               " ['pos', 'neg']\n")

    gold = _cli(db_path, "crowd", "gold", "add", "crowd", "crowd0", "pos", "--json")
    assert gold.returncode == 0 and json.loads(gold.stdout)["labels"] == ["pos"]
    attention = _cli(db_path, "crowd", "attention", "add", "crowd", "neg")
    assert attention.stdout == "attention check 2: 'Please choose “neg” for this item.', correct: neg\n"
    listed = json.loads(_cli(db_path, "crowd", "gold", "list", "crowd", "--json").stdout)["checks"]
    assert [(c["check_id"], c["kind"], c["item_id"], c["labels"]) for c in listed] == \
        [(1, "gold", "crowd0", "pos"), (2, "attention", None, "neg")]

    with connection.open_db(db_path) as db:
        study = crowd.get_study(db, project, link["study_id"])
        name = crowd.arrive(db, study.token, PROLIFIC).user.username
        _label_all(db, project, name, label="neg")
    report = json.loads(_cli(db_path, "crowd", "report", "crowd", "--max-run", "1", "--json").stdout)
    rows = {row["annotator"]: row for row in report["annotators"]}
    assert set(rows) == {"x", name}
    assert (rows[name]["status"], rows[name]["n_labels"], rows[name]["longest_run"], rows[name]["straight_lining"]) \
        == ("completed", 2, 2, True)
    assert rows["x"]["status"] is None and rows["x"]["gold_accuracy"] is None

    excluded = _cli(db_path, "crowd", "exclude", "crowd", PID, "--reason", "too fast")
    assert excluded.returncode == 0, excluded.stderr
    assert excluded.stdout == (f"{name} excluded from the agreement, aggregation and training of 'crowd' (their"
                               " labels stay in the database and the raw export)\n")
    agreement = json.loads(_cli(db_path, "agreement", "crowd", "--json", "--n-boot", "10").stdout)
    assert agreement["exclusion"]["excluded"] == [name] and agreement["n_annotations"] == 1
    missing = _cli(db_path, "crowd", "exclude", "crowd", "nobody")
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)
    assert missing.stderr.startswith("error: no annotator 'nobody' in project 'crowd'")

    out = tmp_path / "workers.csv"
    exported = _cli(db_path, "crowd", "export", "crowd", "--out", str(out))
    assert exported.stdout == f"wrote 1 workers to {out}\n"
    assert list(csv.DictReader(out.open(encoding="utf-8")))[0]["status"] == "excluded"


# ------------------------------------------------------------------------------------------ pages


def test_crowd_page_creates_a_study_and_shows_its_link(db_path, fresh_db, monkeypatch) -> None:
    project, _ids = _project(fresh_db)
    monkeypatch.setenv(crowd.PUBLIC_URL_ENV, "https://lab.example.org")
    at = researcher_app("crowd.py", db_path, fresh_db, project.id, monkeypatch).run()
    assert not at.exception
    assert at.title[0].value == shown("Crowd study · crowd")
    assert "No study yet" in at.info[0].value
    at.selectbox[0].set_value("prolific")
    at.number_input[0].set_value(5)
    at.text_input[0].input("DONE-5")
    at.button[0].click().run()  # Create study
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("Study 1 created")
    (study,) = crowd.studies_table(fresh_db, project, base="https://lab.example.org").to_dict("records")
    assert (study["quota"], study["completion_code"], study["gold_rate"]) == (5, "DONE-5", 0.1)
    assert study["url"] in [code.value for code in at.code]


def _worker_page(db_path, user_id: int, project_id: int, monkeypatch) -> AppTest:
    monkeypatch.setenv("SYNTHLOOP_DB", str(db_path))
    at = AppTest.from_file(str(ROOT / "pages" / "annotate.py"), default_timeout=60)
    at.session_state[USER_ID] = user_id
    at.session_state[PROJECT_ID] = project_id
    return at.run()


def test_annotate_page_ends_a_workers_study_with_the_code(db_path, fresh_db, monkeypatch) -> None:
    project, _ids = _project(fresh_db)
    study = _study(fresh_db, project, quota=1, completion_code="THANKS1", completion_url=COMPLETE)
    user = crowd.arrive(fresh_db, study.token, PROLIFIC).user
    at = _worker_page(db_path, user.id, project.id, monkeypatch)
    assert not at.exception
    assert [t.value for t in at.text] == ["crowd text 5"]
    label_buttons = [b for b in at.button if b.key and b.key.startswith("label_")]
    label_buttons[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Thank you"
    assert [code.value for code in at.code] == ["THANKS1"]
    (button,) = at.get("link_button")
    assert button.proto.url == "https://app.prolific.com/submissions/complete?cc=THANKS1"
    assert button.proto.label == "Return to Prolific"


def test_annotate_page_refuses_another_project_to_a_worker(db_path, fresh_db, monkeypatch) -> None:
    project, _ids = _project(fresh_db)
    other, _other_ids = _project(fresh_db, "other")
    user = crowd.arrive(fresh_db, _study(fresh_db, project).token, PROLIFIC).user
    at = _worker_page(db_path, user.id, other.id, monkeypatch)
    assert not at.exception
    assert shown(at.error[0].value) == "This project is not part of your study: reload the page to return to your task."
    assert not at.text  # no item of the other project


def test_crowd_page_lists_workers_checks_quality_and_excludes(db_path, fresh_db, monkeypatch) -> None:
    project, ids = _project(fresh_db)
    study = _study(fresh_db, project, quota=2, completion_code="DONE")
    name = crowd.arrive(fresh_db, study.token, PROLIFIC).user.username
    _label_all(fresh_db, project, name)
    at = researcher_app("crowd.py", db_path, fresh_db, project.id, monkeypatch).run()
    assert not at.exception
    frames = {tuple(df.value.columns)[:3]: df.value for df in at.dataframe}
    workers = frames[crowd.WORKER_COLUMNS[:3]]
    assert workers[["annotator", "status", "items_done"]].to_dict("records") == \
        [{"annotator": name, "status": "completed", "items_done": 2}]
    assert [b.label for b in at.get("download_button")] == ["Download workers (CSV)"]

    [gold_ref] = [t for t in at.text_input if t.label == "Item id"]
    gold_ref.input("crowd0")
    [labels] = [m for m in at.multiselect if m.label == "Correct label(s)"]
    labels.select("neg")
    [add] = [b for b in at.button if b.label == "Add gold item"]
    add.click().run()
    assert not at.exception
    assert quality.checks_table(fresh_db, project)[["kind", "item_id", "labels"]].to_dict("records") == \
        [{"kind": "gold", "item_id": "crowd0", "labels": "neg"}]

    [who] = [s for s in at.selectbox if s.label == "Annotator"]
    who.set_value(name)
    [exclude] = [b for b in at.button if b.label == "Exclude"]
    exclude.click().run()
    assert not at.exception
    assert quality.excluded_annotators(fresh_db, project) == [name]
    report = next(df.value for df in at.dataframe if "straight_lining" in df.value.columns)
    assert report.set_index("annotator").loc[name, "status"] == "excluded"
