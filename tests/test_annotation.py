"""Assignment: overlap, nobody twice, reservations that expire, the skip rule, strategies with dynamic overlap,
back/edit, progress, the pool, adjudication, the label-count triggers, and 20 annotators labelling at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import projects
from core.agreement.project import final_labels
from core.annotation.adjudication import adjudicate, adjudication_queue
from core.annotation.assignment import Progress, my_earlier_item, next_item, progress, skip_item, submit_label
from core.annotation.pool import (
    AssignmentSettings,
    generation_jobs_in_project,
    pool_status,
    save_assignment_settings,
    set_pool,
)
from core.data.text import text_hash
from core.errors import NotFoundError, SynthloopError
from db import connection, transaction
from db import items as items_db

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _add_items(db, project_id: int, n: int, *, source: str = "real", split: str = "test",
               generation_job_id: int | None = None, prefix: str = "text") -> list[int]:
    with transaction(db):
        return items_db.insert_items(db, project_id, [
            {"text": f"{prefix} {i}", "text_hash": text_hash(f"{prefix} {i}"), "source": source, "split": split,
             "generation_job_id": generation_job_id}
            for i in range(n)
        ])


def _label(db, item_id: int, annotator: str, label: str = "pos") -> None:
    with transaction(db):
        items_db.insert_annotations(db, [{"item_id": item_id, "annotator": annotator, "label": label}])


def _counts(db, project_id: int) -> dict[int, int]:
    rows = db.execute(
        "SELECT i.id, COUNT(a.id) FROM item i LEFT JOIN annotation a ON a.item_id = i.id"
        " WHERE i.project_id = ? AND i.in_pool = 1 GROUP BY i.id", [project_id]
    ).fetchall()
    return dict(rows)


def _with_settings(db, project, **settings):
    save_assignment_settings(db, project.id, AssignmentSettings(**settings))
    return projects.get_project(db, project.id)


@pytest.fixture
def pooled(fresh_db, project):
    ids = _add_items(fresh_db, project.id, 5)
    assert set_pool(fresh_db, project.id, source="real") == 5
    return fresh_db, projects.get_project(fresh_db, project.id), ids


def test_closest_to_completion_first_and_nobody_twice(pooled) -> None:
    db, project, ids = pooled
    _label(db, ids[3], "x")
    _label(db, ids[3], "y")
    _label(db, ids[1], "x")
    item = next_item(db, project, "me", at=T0)
    assert item.item_id == ids[3]  # 2 of 3 labels: closest to completion
    assert submit_label(db, project, "me", ids[3], "neg") is True
    # complete now (3 labels): nobody gets it any more, and I never get it again
    assert next_item(db, project, "me", at=T0).item_id == ids[1]
    assert next_item(db, project, "z", at=T0).item_id != ids[3]
    # a second submit by me edits my label instead of adding one
    assert submit_label(db, project, "me", ids[3], "pos") is False
    assert _counts(db, project.id)[ids[3]] == 3


def test_an_item_leaves_my_queue_when_i_label_it(pooled) -> None:
    db, project, ids = pooled
    seen = []
    while (item := next_item(db, project, "me", at=T0)) is not None:
        seen.append(item.item_id)
        submit_label(db, project, "me", item.item_id, "neu")
    assert sorted(seen) == sorted(ids)
    assert progress(db, project, "me", at=T0) == Progress(done=5, remaining=0, skipped=0)
    assert progress(db, project, "other", at=T0).remaining == 5


def test_reservation_keeps_the_last_slot_and_expires(pooled) -> None:
    db, project, ids = pooled
    set_pool(db, project.id, add=False)
    set_pool(db, project.id, item_ids=[ids[0]])
    _label(db, ids[0], "x")
    _label(db, ids[0], "y")  # one slot left
    first = next_item(db, project, "a", at=T0)
    assert first.item_id == ids[0]
    assert next_item(db, project, "a", at=T0 + timedelta(seconds=30)).item_id == ids[0]  # reload
    assert next_item(db, project, "b", at=T0 + timedelta(seconds=60)) is None  # a holds the slot
    # a's reservation (renewed at +30 s) lapses at +150 s; then the slot is b's
    assert next_item(db, project, "b", at=T0 + timedelta(seconds=149)) is None
    assert next_item(db, project, "b", at=T0 + timedelta(seconds=151)).item_id == ids[0]


def test_submit_frees_the_reservation_and_rejects_bad_input(pooled) -> None:
    db, project, ids = pooled
    item = next_item(db, project, "a", at=T0)
    with pytest.raises(SynthloopError, match="label 'spam' is not one of the project's labels"):
        submit_label(db, project, "a", item.item_id, "spam")
    with pytest.raises(NotFoundError, match="item 999 is not in project 'demo'"):
        submit_label(db, project, "a", 999, "pos")
    submit_label(db, project, "a", item.item_id, "pos", unsure=True, comment=" hm ")
    assert db.execute("SELECT COUNT(*) FROM reservation").fetchone()[0] == 0
    row = db.execute("SELECT unsure, comment FROM annotation WHERE annotator = 'a'").fetchone()
    assert row == (1, "hm")


def test_skip_rule_later_or_when_nothing_else_is_left(pooled) -> None:
    db, project, ids = pooled
    project = _with_settings(db, project, strategy="least", skip_minutes=10)
    first = next_item(db, project, "me", at=T0)
    assert first.item_id == ids[0]
    skip_item(db, project, "me", first.item_id, at=T0)
    assert next_item(db, project, "me", at=T0).item_id == ids[1]
    assert progress(db, project, "me", at=T0).skipped == 1
    # after the skip window it is back in its normal place
    assert next_item(db, project, "other", at=T0).item_id == ids[0]  # others are not affected
    skip_item(db, project, "me", ids[1], at=T0)
    assert next_item(db, project, "me", at=T0 + timedelta(minutes=11)).item_id == ids[0]
    # when everything else is labelled, skipped items come back at once
    for item_id in ids[2:]:
        submit_label(db, project, "me", item_id, "pos")
    skip_item(db, project, "me", ids[0], at=T0 + timedelta(minutes=11))
    skip_item(db, project, "me", ids[1], at=T0 + timedelta(minutes=11))
    back = next_item(db, project, "me", at=T0 + timedelta(minutes=12))
    assert back is not None and back.item_id in (ids[0], ids[1])


def test_least_annotated_and_random_strategies(pooled) -> None:
    db, project, ids = pooled
    for item_id in ids[:4]:
        _label(db, item_id, "x")
    least = _with_settings(db, project, strategy="least")
    assert next_item(db, least, "me", at=T0).item_id == ids[4]
    shuffled = _with_settings(db, project, strategy="random", seed=3)
    orders = {}
    for annotator in ("a", "b", "c", "d"):
        order = []
        while (item := next_item(db, shuffled, annotator, at=T0)) is not None:
            order.append(item.item_id)
            submit_label(db, shuffled, annotator, item.item_id, "pos")
            if len(order) == 2:
                break
        orders[annotator] = order
    assert len({tuple(o) for o in orders.values()}) > 1  # not everyone gets the same order


def test_random_order_is_seeded_per_annotator(tmp_path) -> None:
    def order(path, annotator: str, seed: int) -> list[int]:
        db = connection.connect(path)
        if not projects.list_projects(db):
            project = projects.create_project(db, "demo", projects.parse_labels("pos,neg"), overlap=3)
            _add_items(db, project.id, 30)
            set_pool(db, project.id)
        project = _with_settings(db, projects.get_project(db, "demo"), strategy="random", seed=seed)
        got = []
        for _ in range(6):
            item = next_item(db, project, annotator, at=T0)
            submit_label(db, project, annotator, item.item_id, "pos")
            got.append(item.item_id)
        db.conn.close()
        return got

    first = order(tmp_path / "one.db", "ann", seed=1)
    assert order(tmp_path / "two.db", "ann", seed=1) == first  # same seed, same annotator: same order
    assert order(tmp_path / "three.db", "ann", seed=2) != first
    assert order(tmp_path / "one.db", "other", seed=1) != first
    assert first != sorted(first)


def test_disagreement_first_with_dynamic_overlap(pooled) -> None:
    db, project, ids = pooled
    project = _with_settings(db, project, strategy="disagreement", max_overlap=5, agreement_threshold=0.75)
    for annotator, label in (("x", "pos"), ("y", "neg"), ("z", "neu")):  # a_i = 1/3 after k = 3
        _label(db, ids[2], annotator, label)
    for annotator in ("x", "y", "z"):  # unanimous: complete
        _label(db, ids[0], annotator, "pos")
    _label(db, ids[4], "x", "pos")
    assert next_item(db, project, "u", at=T0).item_id == ids[2]
    submit_label(db, project, "u", ids[2], "pos")  # 4 labels, a_i = 0.5 still < 0.75
    assert next_item(db, project, "v", at=T0).item_id == ids[2]
    submit_label(db, project, "v", ids[2], "pos")  # 5 labels = the maximum
    assert next_item(db, project, "w", at=T0).item_id == ids[4]  # then closest to completion
    assert _counts(db, project.id)[ids[0]] == 3  # the unanimous item never got more
    assert progress(db, project, "w", at=T0).remaining == 3  # ids 1, 3, 4


def test_back_and_edit_my_earlier_labels(pooled) -> None:
    db, project, ids = pooled
    submit_label(db, project, "me", ids[0], "pos")
    submit_label(db, project, "me", ids[1], "neg", comment="unclear")
    last = my_earlier_item(db, project, "me", 1)
    assert (last.item_id, last.label, last.comment) == (ids[1], "neg", "unclear")
    assert my_earlier_item(db, project, "me", 2).item_id == ids[0]
    assert my_earlier_item(db, project, "me", 3) is None
    submit_label(db, project, "me", ids[0], "neu")
    edited = my_earlier_item(db, project, "me", 2)  # edits keep their place in my history
    assert (edited.item_id, edited.label) == (ids[0], "neu")
    assert progress(db, project, "me", at=T0).done == 2


def test_assigned_item_is_blind(pooled) -> None:
    db, project, _ids = pooled
    item = next_item(db, project, "me", at=T0)
    assert set(vars(item)) == {"item_id", "text", "label", "unsure", "comment"}


def test_pool_by_source_split_and_generation_job(fresh_db, project) -> None:
    _add_items(fresh_db, project.id, 3, source="real", split="test")
    _add_items(fresh_db, project.id, 2, source="real", split="train", prefix="train")
    _add_items(fresh_db, project.id, 4, source="synthetic", split="train", generation_job_id=7,
               prefix="syn7")
    _add_items(fresh_db, project.id, 1, source="synthetic", split="train", generation_job_id=8,
               prefix="syn8")
    assert set_pool(fresh_db, project.id, source="real", split="test") == 3
    assert set_pool(fresh_db, project.id, generation_job_id=7) == 4
    status = pool_status(fresh_db, project)
    assert (status.n_items, status.n_slots, status.n_complete) == (7, 21, 0)
    assert set_pool(fresh_db, project.id, add=False, source="synthetic") == 4
    assert pool_status(fresh_db, project).n_items == 3
    with pytest.raises(SynthloopError, match="split 'holdout' is not one of"):
        set_pool(fresh_db, project.id, split="holdout")
    jobs = generation_jobs_in_project(fresh_db, project.id)
    assert [(j["generation_job_id"], j["n_items"]) for j in jobs] == [(7, 4), (8, 1)]


def test_label_statistics_follow_every_writer(pooled) -> None:
    db, project, ids = pooled
    _label(db, ids[0], "a", "pos")
    _label(db, ids[0], "b", "neg")
    _label(db, ids[0], "c", "neg")
    _label(db, ids[0], "llm:model", "pos")  # the LLM annotator does not use up the overlap
    row = db.execute("SELECT annotation_count, annotation_top, annotation_agreement FROM item WHERE id = ?",
                     [ids[0]]).fetchone()
    assert row == (3, 2, pytest.approx(2 / 3))
    _label(db, ids[0], "a", "neg")  # an edit through the import path (ON CONFLICT DO UPDATE)
    assert db.execute("SELECT annotation_top, annotation_agreement FROM item WHERE id = ?",
                      [ids[0]]).fetchone() == (3, 1.0)
    with transaction(db):
        db.execute("DELETE FROM annotation WHERE item_id = ? AND annotator = 'c'", [ids[0]])
    assert db.execute("SELECT annotation_count, annotation_top FROM item WHERE id = ?",
                      [ids[0]]).fetchone() == (2, 2)


def test_items_entering_the_pool_are_recounted(fresh_db, project) -> None:
    ids = _add_items(fresh_db, project.id, 2)
    for annotator, label in (("a", "pos"), ("b", "pos"), ("c", "neg"), ("llm:m", "neg")):
        _label(fresh_db, ids[0], annotator, label)  # imported before pooling: the triggers skip it (cheap import)
    assert fresh_db.execute("SELECT annotation_count FROM item WHERE id = ?", [ids[0]]).fetchone() == (0,)
    assert set_pool(fresh_db, project.id, source="real") == 2
    rows = fresh_db.execute("SELECT annotation_count, annotation_top, annotation_agreement FROM item ORDER BY id"
                            ).fetchall()
    assert rows == [(3, 2, pytest.approx(2 / 3)), (0, 0, None)]
    # three human labels = k: complete, so the next annotator gets the other item
    assert next_item(fresh_db, project, "d", at=T0).item_id == ids[1]
    # out of the pool, labelled, back in by another writer's plain UPDATE (the generation review does that)
    set_pool(fresh_db, project.id, add=False, item_ids=[ids[1]])
    _label(fresh_db, ids[1], "a", "neu")
    with transaction(fresh_db):
        fresh_db.execute("UPDATE item SET in_pool = 1 WHERE id = ?", [ids[1]])
    assert fresh_db.execute("SELECT annotation_count, annotation_top FROM item WHERE id = ?",
                            [ids[1]]).fetchone() == (1, 1)


def test_adjudication_queue_and_final_labels(pooled) -> None:
    db, project, ids = pooled
    for annotator, label in (("a", "pos"), ("b", "pos"), ("c", "neg")):
        _label(db, ids[0], annotator, label)
    for annotator, label in (("a", "pos"), ("b", "neg")):
        _label(db, ids[1], annotator, label)
    for annotator in ("a", "b"):
        _label(db, ids[2], annotator, "neu")
    queue = adjudication_queue(db, project)
    assert queue["id"].tolist() == [ids[1], ids[0], ids[2]]  # 0.5 (tie), 2/3, 1.0
    adjudicate(db, project, ids[1], "neg")
    assert adjudication_queue(db, project)["id"].tolist() == [ids[0], ids[2]]
    labels = final_labels(db, project.id, model=True)
    assert labels.loc[ids[1], "final_label"] == "neg"  # adjudicated tie
    assert labels.loc[ids[0], "final_label"] == "pos"  # majority
    assert labels.loc[ids[3], "final_label"] is None  # no labels
    assert {"aggregate_label", "aggregate_confidence"} <= set(labels.columns)
    with pytest.raises(SynthloopError, match="label 'maybe' is not one of"):
        adjudicate(db, project, ids[0], "maybe")
    with pytest.raises(NotFoundError, match="no item 'nope'"):
        adjudicate(db, project, "nope", "pos")
    adjudicate(db, project, str(ids[1]), None)
    assert final_labels(db, project.id).loc[ids[1], "final_label"] is None


def test_settings_validate() -> None:
    with pytest.raises(SynthloopError, match="strategy 'fastest' is not one of"):
        AssignmentSettings(strategy="fastest")
    with pytest.raises(SynthloopError, match="agreement_threshold 1.5 must lie in"):
        AssignmentSettings(agreement_threshold=1.5)
    settings = AssignmentSettings(strategy="disagreement", max_overlap=6)
    assert AssignmentSettings.from_dict(settings.to_dict()) == settings
    assert settings.max_target(3) == 6 and AssignmentSettings().max_target(3) == 5


def _annotate_until_empty(db_path: str, name: str, barrier, results) -> None:
    """One annotator session in its own process: next item, label, repeat; reports what it submitted."""
    import random

    from db import connection

    rng = random.Random(name)
    done = []
    barrier.wait(timeout=60)  # everyone starts at once
    while True:
        with connection.open_db(db_path) as db:
            project = projects.get_project(db, "demo")
            item = next_item(db, project, name)
            if item is None:
                break
            label = rng.choice(project.label_names)
            submit_label(db, project, name, item.item_id, label)
            done.append((item.item_id, label))
    results.put((name, done))


def test_twenty_annotators_at_once_label_every_item_exactly_k_times(fresh_db, project, db_path) -> None:
    import multiprocessing

    from db import connection

    ids = _add_items(fresh_db, project.id, 40)
    set_pool(fresh_db, project.id, source="real")
    fresh_db.conn.close()
    # fork: 20 real processes without 20 interpreter start-ups (each would import pandas again)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(20), context.Queue()
    processes = [context.Process(target=_annotate_until_empty, args=(str(db_path), f"ann{n:02d}", barrier, results))
                 for n in range(20)]
    for process in processes:
        process.start()
    submitted = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    with connection.open_db(db_path) as db:
        rows = db.execute("SELECT item_id, annotator, label FROM annotation").fetchall()
        counts = _counts(db, project.id)
        stored = db.execute("SELECT id, annotation_count FROM item").fetchall()
    assert counts == {item_id: 3 for item_id in ids}  # every item exactly k = 3 times
    assert len({(item, annotator) for item, annotator, _ in rows}) == len(rows)  # nobody twice
    expected = sorted((item, name, label) for name, done in submitted.items() for item, label in done)
    assert sorted(rows) == expected  # every submitted label is there, nothing else: no lost label
    assert dict(stored) == counts  # the trigger-kept counts are right under concurrency
    assert sum(1 for done in submitted.values() if done) >= 10  # the work was really shared
