"""Seeds: browsing real items by label and agreement, pinning by imported or internal id, sampling per label
(highest agreement first), counts and warnings."""

from __future__ import annotations

import pytest

from core import projects
from core.annotation.adjudication import adjudicate
from core.data.text import text_hash
from core.errors import NotFoundError, SynthloopError
from core.generation import seeds
from db import items as items_db
from db import transaction


def add(db, project_id, rows):
    defaults = {"source": "real", "split": "train", "reference_label": None}
    full = [{**defaults, **row, "text_hash": text_hash(row["text"])} for row in rows]
    with transaction(db):
        return items_db.insert_items(db, project_id, full)


@pytest.fixture
def items(fresh_db, project):
    ids = add(fresh_db, project.id, [
        {"external_id": "a", "text": "pos high", "reference_label": "pos", "imported_agreement": 1.0},
        {"external_id": "b", "text": "pos mid", "reference_label": "pos", "imported_agreement": 0.6},
        {"external_id": "c", "text": "pos unknown", "reference_label": "pos"},
        {"external_id": "d", "text": "pos low", "reference_label": "pos", "imported_agreement": 0.4},
        {"external_id": "e", "text": "neg only", "reference_label": "neg", "imported_agreement": 0.9},
        {"external_id": "t", "text": "neg test", "reference_label": "neg", "split": "test"},
        {"external_id": "s", "text": "synthetic pos", "reference_label": "pos", "source": "synthetic"},
        {"external_id": "u", "text": "unlabelled"},
        {"external_id": "v", "text": "voted neu"},
    ])
    # 'v' gets its label from annotators (2 of 3 say neu); 'b' is adjudicated to neg.
    items_db.insert_annotations(fresh_db, [
        {"item_id": ids[8], "annotator": name, "label": label}
        for name, label in (("x", "neu"), ("y", "neu"), ("z", "pos"))])
    adjudicate(fresh_db, project, ids[1], "neg")
    return dict(zip("abcdetsuv", ids, strict=True))


def test_browse_lists_real_non_test_items_with_effective_label_best_agreement_first(fresh_db, project, items) -> None:
    table = seeds.browse(fresh_db, project.id)
    assert list(table["external_id"]) == ["a", "e", "v", "b", "d", "c", "u"]
    assert dict(zip(table["external_id"], table["label"], strict=True)) == {
        "a": "pos", "e": "neg", "v": "neu", "b": "neg", "d": "pos", "c": "pos", "u": None}
    assert table.loc[table["external_id"] == "v", "instance_agreement"].item() == pytest.approx(2 / 3)
    assert list(seeds.browse(fresh_db, project.id, label="pos")["external_id"]) == ["a", "d", "c"]
    assert list(seeds.browse(fresh_db, project.id, min_agreement=0.65)["external_id"]) == ["a", "e", "v"]
    assert list(seeds.browse(fresh_db, project.id, search="UNKNOWN")["external_id"]) == ["c"]


def test_pin_by_imported_or_internal_id_and_unpin(fresh_db, project, items) -> None:
    pinned = seeds.pin(fresh_db, project.id, ["a", str(items["e"]), "a"], added_by="ann")
    assert pinned == [items["a"], items["e"]]
    assert seeds.seed_counts(fresh_db, project.id) == {"pos": 1, "neg": 1, "neu": 0}
    assert [s.text for s in seeds.seed_examples(fresh_db, project.id)] == ["pos high", "neg only"]
    assert list(seeds.list_seeds(fresh_db, project.id)["external_id"]) == ["a", "e"]
    assert seeds.unpin(fresh_db, project.id, [items["a"]]) == 1
    assert seeds.unpin_refs(fresh_db, project.id, ["e", "nope"]) == 1
    assert seeds.seed_counts(fresh_db, project.id) == {"pos": 0, "neg": 0, "neu": 0}


@pytest.mark.parametrize(("ref", "error", "message"), [
    ("zzz", NotFoundError, "no item 'zzz' in this project: use an imported id or an internal item id"),
    ("t", SynthloopError, "item 't' is in the test split: seeds must be real items outside the test split"),
    ("s", SynthloopError, "item 's' is synthetic: seeds must be real items"),
    ("u", SynthloopError, "item 'u' has no label"),
])
def test_pin_refuses_bad_items_and_writes_nothing(fresh_db, project, items, ref, error, message) -> None:
    with pytest.raises(error, match=message):
        seeds.pin(fresh_db, project.id, ["a", ref])
    assert seeds.seed_counts(fresh_db, project.id)["pos"] == 0


def test_sample_prefers_high_agreement_tops_up_and_warns(fresh_db, project, items) -> None:
    result = seeds.sample_seeds(fresh_db, project.id, 2, seed=0, examples_per_prompt=2)
    assert result.added == {"pos": [items["a"], items["d"]], "neg": [items["e"], items["b"]], "neu": [items["v"]]}
    assert result.counts == {"pos": 2, "neg": 2, "neu": 1}
    assert result.warnings == [
        "label 'neu' has only 1 usable real items outside the test split (asked for 2): import or label more",
        "label 'neu' has 1 seed, fewer than the 2 examples per prompt of the few-shot setting: pin more or lower "
        "the examples per prompt",
    ]
    again = seeds.sample_seeds(fresh_db, project.id, 3, seed=0)
    assert again.added == {"pos": [items["c"]], "neg": [], "neu": []}  # only the unknown-agreement item is left
    with pytest.raises(SynthloopError, match="'per_label' 0 is not valid"):
        seeds.sample_seeds(fresh_db, project.id, 0)


def test_sampling_breaks_ties_reproducibly(fresh_db) -> None:
    project = projects.create_project(fresh_db, "ties", projects.parse_labels("x"))
    add(fresh_db, project.id, [{"text": f"tie {i}", "reference_label": "x", "imported_agreement": 0.5}
                               for i in range(10)])
    first = seeds.sample_seeds(fresh_db, project.id, 3, seed=7).added["x"]
    seeds.unpin(fresh_db, project.id, first)
    assert seeds.sample_seeds(fresh_db, project.id, 3, seed=7).added["x"] == first


def test_seed_warnings() -> None:
    assert seeds.seed_warnings({"a": 3, "b": 0}, 3) == [
        "label 'b' has 0 seeds, fewer than the 3 examples per prompt of the few-shot setting: pin more or lower the "
        "examples per prompt"]
