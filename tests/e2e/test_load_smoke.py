"""A short run of bench/load_bench.py in CI: a few Streamlit-protocol annotators label through the real server at
once, every label they count is in the database exactly once, and none fails. (The full 30-annotator figures
come from running the benchmark itself; this keeps its client in step with the Annotate page.)"""

from __future__ import annotations

from bench import load_bench as bench


def test_a_few_annotators_label_through_the_running_server() -> None:
    report = bench.run(bench.parse_args(["--annotators", "4", "--seconds", "5", "--flat-seconds", "4",
                                         "--items", "60", "--baseline-seconds", "0.5"]))
    for phase in ("human_pace", "flat_out"):
        assert report[phase]["errors"] == 0, report[phase]["error_examples"]
        assert report[phase]["labels"] > 0
    integrity = report["integrity"]
    assert integrity["labels_in_db"] == integrity["labels_counted_by_clients"] > 0
    assert integrity["duplicate_pairs"] == 0 and integrity["items_above_overlap"] == 0
