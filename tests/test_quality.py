"""Quality control, core: gold accuracy, attention checks, qualification score and straight-lining on hand-made
sequences; exclusion and its exact effect on alpha, majority labels, aggregation and training; answers to
checks never counted as data labels; gold items kept out of the pool."""

from __future__ import annotations

import pandas as pd
import pytest

from core import projects
from core.agreement.project import exclusion_effect, final_labels, project_agreement
from core.agreement.report import ReportConfig
from core.annotation import crowd, quality
from core.annotation.pool import set_pool
from core.data.export import raw_view
from core.errors import NotFoundError, SynthloopError
from core.training.config import TrainConfig
from core.training.data import select_items
from db import items as items_db

NO_BOOT = ReportConfig(n_boot=1, model=False)


def _events(rows: list[tuple]) -> pd.DataFrame:
    """(annotator, label, seconds, kind, phase, correct) rows in the order given."""
    return pd.DataFrame(rows, columns=["annotator", "label", "seconds", "kind", "phase", "correct"])


def test_longest_run_of_one_label() -> None:
    assert quality.longest_run([]) == 0
    assert quality.longest_run(["a"]) == 1
    assert quality.longest_run(["a", "a", "b", "b", "b", "a"]) == 3
    # A skipped check (no label) ends a run: b b | b b is two runs of 2.
    assert quality.longest_run(["b", "b", None, "b", "b"]) == 2
    assert quality.longest_run([None, None]) == 0


def test_annotator_quality_exact_values() -> None:
    events = _events([
        # w: 2 qualification checks (1 right), then 3 data labels, 3 gold (1 right), 2 attention (1 passed).
        ("w", "a", 2.0, "gold", "qualification", 1),
        ("w", "b", 4.0, "attention", "qualification", 0),
        ("w", "a", 1.0, "data", None, None),
        ("w", "a", 3.0, "gold", "main", 1),
        ("w", "a", 5.0, "data", None, None),
        ("w", "a", 6.0, "attention", "main", 0),
        ("w", "b", 7.0, "gold", "main", 0),
        ("w", None, None, "gold", "main", 0),  # a skipped gold item: answered with no label, not correct
        ("w", "b", 8.0, "attention", "main", 1),
        ("w", "b", 9.0, "data", None, None),
        # v: data labels only, all the same label.
        ("v", "a", 1.0, "data", None, None), ("v", "a", 1.0, "data", None, None), ("v", "a", None, "data", None, None),
    ])
    table = quality.annotator_quality(events, max_run=3).set_index("annotator")
    w = table.loc["w"]
    assert (w["n_labels"], w["n_gold"], w["gold_correct"]) == (3, 3, 1)
    assert w["gold_accuracy"] == pytest.approx(1 / 3)
    assert (w["n_attention"], w["attention_passed"]) == (2, 1)
    assert (w["n_qualification"], w["qualification_correct"], w["qualification_score"]) == (2, 1, 0.5)
    # Seconds 2, 4, 1, 3, 5, 6, 7, 8, 9 (the skip has none): median 5, sum 45.
    assert (w["median_seconds"], w["time_on_task_s"]) == (5.0, 45.0)
    # Sequence a b a a a a b (skip) b b: the longest run is a×4.
    assert (w["longest_run"], bool(w["straight_lining"])) == (4, True)
    v = table.loc["v"]
    assert (v["n_labels"], v["n_gold"]) == (3, 0)
    assert pd.isna(v["gold_accuracy"]) and pd.isna(v["qualification_score"])  # nothing answered
    assert (v["median_seconds"], v["time_on_task_s"], v["longest_run"], bool(v["straight_lining"])) == \
        (1.0, 2.0, 3, False)  # a run of 3 is not longer than max_run 3
    with pytest.raises(SynthloopError, match=r"'max_run' 0 is not valid: use a whole number ≥ 1"):
        quality.annotator_quality(events, max_run=0)


# ---------------------------------------------------------------------------------------- a labelled project
# Items i1-i4 (train) and two test items; annotators x, y and a straight-liner z who always says "a".
#   without z: i1 a a | i2 b b | i3 a b | i4 b b — n_a = 3, n_b = 5, n = 8, disagreeing pairs 2 (i3, m=2)
#     alpha = 1 − (n−1)·2/(2·n_a·n_b) = 1 − 7·2/30 = 8/15
#   with z:    i1 aaa | i2 abb | i3 aab | i4 abb — n_a = 7, n_b = 5, n = 12; pairs 2·2/2 on i2, i3, i4 = 6
#     alpha = 1 − 11·6/(2·7·5) = 1 − 66/70 = 2/35
LABELS = {"x": ["a", "b", "a", "b"], "y": ["a", "b", "b", "b"], "z": ["a", "a", "a", "a"]}


@pytest.fixture
def labelled(fresh_db):
    db = fresh_db
    project = projects.create_project(db, "q", projects.parse_labels("a,b"), overlap=2)
    ids = items_db.insert_items(db, project.id, [
        {"text": f"item {n}", "text_hash": f"h{n}", "source": "real", "split": "train", "external_id": f"i{n}"}
        for n in range(1, 5)
    ] + [
        {"text": f"test {n}", "text_hash": f"t{n}", "source": "real", "split": "test", "reference_label": label}
        for n, label in ((1, "a"), (2, "b"))
    ])
    items_db.insert_annotations(db, [{"item_id": ids[n], "annotator": name, "label": labels[n]}
                                     for name, labels in LABELS.items() for n in range(4)])
    return db, project, ids


def test_excluding_an_annotator_changes_alpha_exactly_and_keeps_their_labels(labelled) -> None:
    db, project, ids = labelled
    assert project_agreement(db, project, config=NO_BOOT).krippendorff_alpha == pytest.approx(2 / 35)
    assert exclusion_effect(db, project) is None

    assert quality.set_excluded(db, project, "z", reason="straight-lining") is True
    assert quality.set_excluded(db, project, "z") is False  # already excluded
    report = project_agreement(db, project, config=NO_BOOT)
    assert report.krippendorff_alpha == pytest.approx(8 / 15)
    assert (report.n_annotations, report.n_annotators) == (8, 2)
    effect = exclusion_effect(db, project)
    assert effect.to_dict() == {"excluded": ["z"], "n_annotations_excluded": 4,
                                "krippendorff_alpha_without_excluded": pytest.approx(8 / 15),
                                "krippendorff_alpha_with_excluded": pytest.approx(2 / 35)}
    # Their labels stay in the database and in the raw export …
    assert len(items_db.annotations_frame(db, project.id, include_excluded=True)) == 12
    assert (raw_view(db, project.id)["annotator"] == "z").sum() == 4
    # … but leave majority labels: i3 was a (a a b) with z and is a tie (a b) without.
    finals = final_labels(db, project.id)
    assert finals.loc[ids[2], "majority_label"] is None and bool(finals.loc[ids[2], "tie"])
    assert set(items_db.annotations_frame(db, project.id)["annotator"]) == {"x", "y"}

    assert quality.set_excluded(db, project, "z", excluded=False) is True
    assert project_agreement(db, project, config=NO_BOOT).krippendorff_alpha == pytest.approx(2 / 35)
    assert final_labels(db, project.id).loc[ids[2], "majority_label"] == "a"


def test_exclusion_leaves_training_and_aggregation(labelled) -> None:
    db, project, ids = labelled
    config = TrainConfig(sources=("real",), label_source="majority")
    assert select_items(db, project.id, config).train.item_ids == ids[:4]
    quality.set_excluded(db, project, "z")
    # i3 ties without z: it has no majority label, so training leaves it out.
    assert select_items(db, project.id, config).train.item_ids == [ids[0], ids[1], ids[3]]
    aggregate = select_items(db, project.id, TrainConfig(sources=("real",), label_source="aggregate"))
    assert aggregate.report["n_train"] >= 1
    assert "z" not in set(items_db.annotations_frame(db, project.id)["annotator"])  # what Dawid–Skene reads


def test_exclude_names_an_annotator_of_the_project(labelled) -> None:
    db, project, _ids = labelled
    with pytest.raises(NotFoundError, match=r"no annotator 'nobody' in project 'q'"):
        quality.set_excluded(db, project, "nobody")


def test_a_check_answer_is_never_a_data_label(labelled, monkeypatch) -> None:
    """A worker answers a gold item that x and y labelled as data, an attention check and a qualification
    check: agreement, majority labels, aggregation input, training and the raw export stay exactly as they were."""
    db, project, ids = labelled
    quality.set_excluded(db, project, "z")  # keep the figures of the two data annotators
    # 20 items to label (split "pool"), and a fixed study token: the checks' places in the queue are then fixed.
    pool_ids = items_db.insert_items(db, project.id, [
        {"text": f"pool {n}", "text_hash": f"p{n}", "source": "real", "split": "pool"} for n in range(20)])
    monkeypatch.setattr(crowd.secrets, "token_urlsafe", lambda n: "a-fixed-study-token")
    before = (project_agreement(db, project, config=NO_BOOT).to_dict(), final_labels(db, project.id),
              raw_view(db, project.id), select_items(db, project.id, TrainConfig(sources=("real",), label_source="majority")).train)
    set_pool(db, project.id, add=True, split="pool")
    quality.add_gold(db, project, "i1", ["a"])
    quality.add_gold(db, project, "i2", ["b"], qualification=True)
    quality.add_attention_check(db, project, "b")
    study = crowd.create_study(db, project, "generic", crowd.StudySettings(gold_rate=0.5))
    name = crowd.arrive(db, study.token, {"worker": "w1"}).user.username
    texts = []
    while (item := crowd.next_item(db, project, name)) is not None:
        crowd.submit_label(db, project, name, item.item_id, "b")
        texts.append(item.text)
    # i2 (qualification) first, then the 20 pool items with i1 and the attention check among them.
    assert texts[0] == "item 2" and len(texts) == 23
    assert {"item 1", "Please choose “b” for this item."} < set(texts[1:])
    # The worker's data labels on the pool items do count: compare with them taken out.
    quality.set_excluded(db, project, name)
    after = (project_agreement(db, project, config=NO_BOOT).to_dict(), final_labels(db, project.id),
             raw_view(db, project.id).query("annotator != @name").reset_index(drop=True),
             select_items(db, project.id, TrainConfig(sources=("real",), label_source="majority")).train)
    assert after[0] == before[0]
    pd.testing.assert_frame_equal(after[1], before[1])
    pd.testing.assert_frame_equal(after[2], before[2])
    assert after[3] == before[3]
    # The answers are kept apart: i1 a gold answer, i2 a qualification answer, none in ``annotation``.
    labelled_items = set(items_db.annotations_frame(db, project.id, include_excluded=True)
                         .query("annotator == @name")["item_id"])
    assert labelled_items == set(pool_ids)
    figures = quality.quality_report(db, project).set_index("annotator").loc[name]
    assert (figures["n_labels"], figures["n_gold"], figures["gold_correct"]) == (20, 1, 0)
    assert (figures["n_attention"], figures["attention_passed"]) == (1, 1)
    assert (figures["n_qualification"], figures["qualification_score"]) == (1, 1.0)
    assert figures["status"] == "excluded"


def test_a_gold_item_leaves_the_pool_and_stays_out(labelled) -> None:
    db, project, ids = labelled
    assert set_pool(db, project.id, add=True) == 6
    check = quality.add_gold(db, project, "i1", ["a", "b"])
    assert (check.kind, check.item_id, check.labels, check.text) == ("gold", ids[0], ("a", "b"), "item 1")
    in_pool = set(items_db.items_frame(db, project.id).query("in_pool == 1")["id"])
    assert ids[0] not in in_pool and len(in_pool) == 5
    set_pool(db, project.id, add=False)
    assert set_pool(db, project.id, add=True) == 5  # every writer: a trigger keeps the gold item out
    assert ids[0] not in set(items_db.items_frame(db, project.id).query("in_pool == 1")["id"])
    quality.remove_check(db, project, check.id)
    assert set_pool(db, project.id, add=True) == 1


def test_check_input_is_validated(labelled) -> None:
    db, project, _ids = labelled
    with pytest.raises(SynthloopError, match=r"label 'c' is not one of the project's labels \['a', 'b'\]"):
        quality.add_gold(db, project, "i1", ["c"])
    with pytest.raises(SynthloopError, match=r"a check needs its correct label"):
        quality.add_gold(db, project, "i1", [])
    with pytest.raises(NotFoundError, match=r"no item 'i9' in project 'q'"):
        quality.add_gold(db, project, "i9", ["a"])
    with pytest.raises(NotFoundError, match=r"no check 99 in project 'q'"):
        quality.remove_check(db, project, 99)
    attention = quality.add_attention_check(db, project, "b")
    assert (attention.text, attention.labels, attention.item_id) == ("Please choose “b” for this item.", ("b",), None)
    table = quality.checks_table(db, project)
    assert table.to_dict("records") == [{"check_id": attention.id, "kind": "attention", "item_id": None,
                                         "text": "Please choose “b” for this item.", "labels": "b",
                                         "qualification": False, "answers": 0, "correct": 0}]


def test_agreement_page_shows_alpha_with_and_without_the_excluded(labelled, db_path, monkeypatch) -> None:
    from tests.page_helpers import researcher_app, shown

    db, project, _ids = labelled
    at = researcher_app("agreement.py", db_path, db, project.id, monkeypatch).run()
    assert not at.exception
    assert not [w for w in at.warning if "excluded" in w.value]
    assert at.metric[0].value == "0.057"
    quality.set_excluded(db, project, "z")
    at.run()
    assert not at.exception
    assert at.metric[0].value == "0.533"
    (note,) = [shown(w.value) for w in at.warning if "excluded" in w.value]
    assert note == ("1 excluded annotators (4 labels) are left out of every figure here: alpha without them 0.533,"
                    " with them 0.057.")
