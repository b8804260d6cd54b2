"""A short run of bench/load_bench.py in CI: a few Streamlit-protocol annotators label through the real server at
once, every label they saw accepted is in the database exactly once, and none fails. (The full figures come
from running the benchmark itself; this keeps its client in step with the Annotate page.)"""

from __future__ import annotations

from bench import load_bench as bench


def test_a_few_annotators_label_through_the_running_server() -> None:
    report = bench.run(bench.parse_args(["--annotators", "2,4", "--think", "0.5,1", "--seconds", "4",
                                         "--flat-annotators", "4", "--flat-seconds", "3", "--items", "600",
                                         "--baseline-seconds", "0.5"]))
    assert [phase["annotators"] for phase in report["phases"]] == [2, 4, 4]
    for phase in report["phases"]:
        assert phase["errors"] == 0, phase["error_examples"]
        assert phase["labels"] > 0
        assert set(bench.JSON_PHASE_KEYS) <= set(phase)
        # A label click re-runs only the Annotate page's fragment, never the router or the sidebar.
        assert phase["fragment_runs"] == phase["labels"]
    integrity = report["integrity"]
    assert integrity["labels_in_db"] == integrity["labels_counted_by_clients"] > 0
    assert integrity["lost"] == integrity["duplicate_pairs"] == integrity["items_above_overlap"] == 0
    assert "integrity: lost 0, duplicate pairs 0, items above overlap 0" in bench.table(report)
