"""The pure helpers of bench/loop_bench.py on toy input (the bench itself needs the models and minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parent.parent / "bench" / "loop_bench.py"
spec = importlib.util.spec_from_file_location("loop_bench", PATH)
loop_bench = importlib.util.module_from_spec(spec)
sys.modules["loop_bench"] = loop_bench  # dataclasses look their module up there
spec.loader.exec_module(loop_bench)


def test_stratified_split_keeps_label_shares_and_is_disjoint():
    labels = ["a"] * 6 + ["b"] * 4
    splits = loop_bench.stratified_split(labels, {"test": 5, "train": 5}, seed=0)
    for indices in splits.values():
        assert sorted(labels[i] for i in indices) == ["a", "a", "a", "b", "b"]
    assert sorted([*splits["test"], *splits["train"]]) == list(range(10))
    again = loop_bench.stratified_split(labels, {"test": 5, "train": 5}, seed=0)
    assert all((again[k] == splits[k]).all() for k in splits)


def test_real_frame_names_items_and_splits():
    pairs = [(f"text {i}", "spam" if i < 4 else "ham") for i in range(20)]
    frame = loop_bench.real_frame(pairs, n_train=10, n_test=5, n_dev=5, seed=1)
    assert frame.groupby("split")["label"].value_counts().to_dict() == {
        ("dev", "ham"): 4, ("dev", "spam"): 1, ("test", "ham"): 4, ("test", "spam"): 1,
        ("train", "ham"): 8, ("train", "spam"): 2}
    assert frame["id"].is_unique and all(frame["text"] == [pairs[int(i[1:])][0] for i in frame["id"]])


def test_label_fidelity():
    assert loop_bench.label_fidelity(["a", "b", "a", "b"], ["a", "a", "a", "b"]) == 0.75
    with pytest.raises(ValueError):
        loop_bench.label_fidelity(["a"], ["a", "b"])


def test_real_cap_and_common_size():
    assert loop_bench.real_cap_per_label([40, 50, 60, 50], 2) == 25
    assert loop_bench.real_cap_per_label([1], 3) == 1
    assert loop_bench.common_size([3, 12, 8, 20]) == 8  # the set of 3 is too small to compare
    assert loop_bench.common_size([1, 2]) == 5


def test_format_table():
    rows = [{"name": "x", "n": 3, "v": 0.5}, {"name": "longer", "n": None}]
    table = loop_bench.format_table(rows, [("name", "data", "s"), ("n", "n", "d"), ("v", "v", ".2f")])
    assert table.splitlines() == ["data    n     v", "------  -  ----", "x       3  0.50", "longer  -     -"]
