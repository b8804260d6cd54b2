"""Which items a run trains and tests on, per source, label source, agreement threshold and cap (no model)."""

from __future__ import annotations

import pytest

from core import projects
from core.errors import SynthloopError
from core.training.config import TrainConfig
from core.training.data import select_eval_items, select_items
from db import annotation as annotation_db
from db import items as items_db
from db import seeds as seeds_db
from db import transaction
from tests.training_helpers import add_items

ZERO = {"generation_mode": "zero-shot", "generation_job_id": 1}
FEW = {"generation_mode": "few-shot", "generation_job_id": 2}


@pytest.fixture
def items(fresh_db, project):
    rows = [
        {"text": "r1", "label": "pos"},
        {"text": "r2", "label": "neg"},
        {"text": "r3", "votes": ["neg", "neg", "pos"]},                 # no reference; majority neg, a = 2/3
        {"text": "r4", "label": "pos", "votes": ["pos", "pos", "neg"]},  # a = 2/3
        {"text": "r5", "label": "neg", "votes": ["neg", "neg"]},         # a = 1
        {"text": "r6", "label": "pos", "votes": ["pos", "pos", "pos"]},  # a = 1
        {"text": "e1", "split": "test", "label": "pos", "agreement": 0.8},
        {"text": "e2", "split": "test", "votes": ["neu", "neu", "pos"]},  # labelled by its majority
        {"text": "e3", "split": "test", "votes": ["pos", "neg"]},         # a tie and no reference: left out
        {"text": "d1", "split": "dev", "label": "neg"},
        {"text": "s1", "source": "synthetic", "label": "pos", "generation": ZERO},
        {"text": "s2", "source": "synthetic", "label": "neg", "generation": ZERO},
        {"text": "f1", "source": "synthetic", "label": "pos", "generation": FEW},
        {"text": "f2", "source": "synthetic", "label": "neg", "generation": FEW},
        {"text": "f3", "source": "synthetic", "label": "neg", "generation": FEW, "review_status": "rejected"},
    ]
    ids = dict(zip([r["text"] for r in rows], add_items(fresh_db, project.id, rows), strict=True))
    seeds_db.insert_seeds(fresh_db, project.id, [ids["r1"], ids["e1"]])
    return ids


def _texts(ids, item_ids):
    by_id = {v: k for k, v in ids.items()}
    return [by_id[i] for i in item_ids]


def test_real_reference_labels_and_test_fallback_to_majority(fresh_db, project, items):
    selection = select_items(fresh_db, project.id, TrainConfig())
    assert _texts(items, selection.train.item_ids) == ["r1", "r2", "r4", "r5", "r6"]
    assert selection.train.labels == ["pos", "neg", "pos", "neg", "pos"]
    assert selection.report["dropped_no_label"] == 1
    assert _texts(items, selection.test.item_ids) == ["e1", "e2"]
    assert selection.test.labels == ["pos", "neu"]
    assert selection.test.agreement == pytest.approx([0.8, 2 / 3])
    assert selection.report["test_unlabelled"] == 1
    assert _texts(items, selection.dev.item_ids) == ["d1"]
    assert selection.labels == ["pos", "neg", "neu"]
    assert select_eval_items(fresh_db, project.id, TrainConfig())[1] == selection.test


def test_majority_labels_and_agreement_threshold(fresh_db, project, items):
    selection = select_items(fresh_db, project.id, TrainConfig(label_source="majority"))
    assert _texts(items, selection.train.item_ids) == ["r3", "r4", "r5", "r6"]
    assert selection.train.labels == ["neg", "pos", "neg", "pos"]
    strict = select_items(fresh_db, project.id, TrainConfig(min_agreement=0.9))
    assert _texts(items, strict.train.item_ids) == ["r5", "r6"]
    assert strict.report["dropped_agreement"] == 3  # r1, r2 (unrated) and r4 (2/3)
    two_thirds = select_items(fresh_db, project.id, TrainConfig(min_agreement=2 / 3))
    assert _texts(items, two_thirds.train.item_ids) == ["r4", "r5", "r6"]


def test_adjudicated_label_wins_over_majority(fresh_db, project, items):
    annotation_db.set_adjudicated_label(fresh_db, items["r3"], "pos")
    selection = select_items(fresh_db, project.id, TrainConfig(label_source="adjudicated"))
    assert dict(zip(_texts(items, selection.train.item_ids), selection.train.labels, strict=True)) == {
        "r3": "pos", "r4": "pos", "r5": "neg", "r6": "pos"}


def test_synthetic_sources_jobs_and_seeds(fresh_db, project, items):
    assert _texts(items, select_items(fresh_db, project.id, TrainConfig(sources=("zero-shot",))).train.item_ids) \
        == ["s1", "s2"]
    few = select_items(fresh_db, project.id, TrainConfig(sources=("few-shot",)))
    assert _texts(items, few.train.item_ids) == ["f1", "f2"]  # the rejected f3 never trains
    by_job = select_items(fresh_db, project.id, TrainConfig(sources=(), generation_job_ids=(1,)))
    assert _texts(items, by_job.train.item_ids) == ["s1", "s2"]
    mixed = select_items(fresh_db, project.id, TrainConfig(sources=("seeds", "few-shot")))
    # The seed e1 is a test item: it is held out, never trained on.
    assert _texts(items, mixed.train.item_ids) == ["r1", "f1", "f2"]
    assert mixed.report["dropped_held_out"] == 1
    assert mixed.report["candidates_per_source"] == {"seeds": 2, "few-shot": 2}


def test_cap_per_label_is_a_seeded_sample(fresh_db, project, items):
    first = select_items(fresh_db, project.id, TrainConfig(cap_per_label=1, seed=5))
    again = select_items(fresh_db, project.id, TrainConfig(cap_per_label=1, seed=5))
    assert first.train == again.train
    assert sorted(first.train.labels) == ["neg", "pos"]
    assert first.report["dropped_cap"] == 3


def test_one_label_only_is_refused(fresh_db, project, items):
    with pytest.raises(SynthloopError, match=r"the training items all have the label 'pos'"):
        select_items(fresh_db, project.id, TrainConfig(sources=("seeds",)))


def test_empty_selection_says_why(fresh_db, project, items):
    with pytest.raises(SynthloopError, match=r"no training items left for sources 'zero-shot'.*below the agreement"):
        select_items(fresh_db, project.id, TrainConfig(sources=("zero-shot",), min_agreement=0.5))


def test_no_test_items_is_refused(fresh_db):
    other = projects.create_project(fresh_db, "empty", projects.parse_labels("a,b"))
    add_items(fresh_db, other.id, [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])
    with pytest.raises(SynthloopError, match=r"project 'empty' has no labelled real test items to evaluate on"):
        select_items(fresh_db, other.id, TrainConfig())


def test_aggregate_labels_come_from_the_annotation_model(fresh_db, project, items):
    selection = select_items(fresh_db, project.id, TrainConfig(label_source="aggregate"))
    labels = dict(zip(_texts(items, selection.train.item_ids), selection.train.labels, strict=True))
    assert set(labels) == {"r3", "r4", "r5", "r6"}  # only annotated training items have an aggregate
    assert (labels["r5"], labels["r6"]) == ("neg", "pos")


def test_min_panel_agreement_drops_synthetic_items_the_llm_panel_does_not_back(fresh_db, project, items):
    panel = [("s1", "llm:a", "pos"), ("s1", "llm:b", "pos"),  # intended pos: agreement 1
             ("s2", "llm:a", "neg"), ("s2", "llm:b", "pos"),  # intended neg: 1/2
             ("f1", "llm:a", "neg"),                          # intended pos: 0
             ("r1", "llm:a", "neg")]                          # real items are never filtered by the panel
    # f2 (intended neg) has no panel label: left out whenever the filter is on.
    with transaction(fresh_db):
        items_db.insert_annotations(fresh_db, [{"item_id": items[text], "annotator": annotator, "label": label}
                                               for text, annotator, label in panel])
    sources = ("real", "zero-shot", "few-shot")
    off = select_items(fresh_db, project.id, TrainConfig(sources=sources))
    assert _texts(items, off.train.item_ids) == ["r1", "r2", "r4", "r5", "r6", "s1", "s2", "f1", "f2"]
    assert off.report["dropped_panel"] == 0
    expected = {0.0: (["s1", "s2", "f1"], 1), 0.5: (["s1", "s2"], 2), 0.6: (["s1"], 3), 1.0: (["s1"], 3)}
    for threshold, (synthetic, dropped) in expected.items():
        selection = select_items(fresh_db, project.id, TrainConfig(sources=sources, min_panel_agreement=threshold))
        assert _texts(items, selection.train.item_ids) == ["r1", "r2", "r4", "r5", "r6", *synthetic], threshold
        assert selection.report["dropped_panel"] == dropped, threshold
    with pytest.raises(SynthloopError, match=r"no training items left .*2 synthetic items below the panel agreement"):
        select_items(fresh_db, project.id, TrainConfig(sources=("few-shot",), min_panel_agreement=0.5))
    with pytest.raises(SynthloopError, match=r"min_panel_agreement=1.5 is not valid: use a number from 0 to 1"):
        TrainConfig(min_panel_agreement=1.5)


def test_train_command_passes_min_panel_agreement(db_path, project, monkeypatch) -> None:
    from core import cli
    from core.training import service

    configs = []

    def capture(db_file, project_id, config):
        configs.append(config)
        raise SynthloopError("captured")

    monkeypatch.setattr(service, "train_foreground", capture)
    for extra in (["--min-panel-agreement", "0.75"], []):
        assert cli.main(["train", "demo", *extra, "--db", str(db_path)]) == 2
    assert [c.min_panel_agreement for c in configs] == [0.75, None]
