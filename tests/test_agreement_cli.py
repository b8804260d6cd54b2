"""``python -m core agreement | pool | adjudicate``: the JSON contract through a real subprocess (as scripts and
outside checks run it), the other commands in-process through the same ``main`` (each interpreter start-up
imports every command module, which costs seconds)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent

# Long form, external ids. a: x x x; b: x x y; c: y y; d: x y (tie); e: z (one label); f: no labels, an imported
# agreement of 0.9. Alpha over a-d is 0.25 (hand computation in test_agreement.py).
ROWS = [
    ("a", "first text", "u1", "x", ""), ("a", "first text", "u2", "x", ""), ("a", "first text", "u3", "x", ""),
    ("b", "second text", "u1", "x", ""), ("b", "second text", "u2", "x", ""), ("b", "second text", "u3", "y", ""),
    ("c", "third text", "u1", "y", ""), ("c", "third text", "u2", "y", ""),
    ("d", "=fourth text", "u1", "x", ""), ("d", "=fourth text", "u2", "y", ""),
    ("e", "fifth text", "u1", "z", ""),
    ("f", "sixth text", "", "", "0.9"),
]


def _cli(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "core", *args, "--db", str(db)], cwd=ROOT, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _main(db: Path, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--db", str(db)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli_db(tmp_path: Path, capsys) -> Path:
    db = tmp_path / "cli.db"
    data = tmp_path / "labels.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "annotator", "label", "agreement"])
        writer.writerows(ROWS)
    assert _main(db, capsys, "project", "create", "demo", "--labels", "x,y,z", "--overlap", "2")[0] == 0
    assert _main(db, capsys, "import", "demo", str(data), "--id-col", "id", "--annotator-col", "annotator",
                 "--annotation-col", "label", "--agreement-col", "agreement", "--split", "test")[0] == 0
    return db


def test_agreement_json_keys_and_values(cli_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "items.csv"
    result = json.loads(_cli(cli_db, "agreement", "demo", "--json", "--items-out", str(out)).stdout)
    for key in ("krippendorff_alpha", "alpha_ci", "mean_instance_agreement", "n_items", "n_annotations",
                "n_annotators", "per_annotator"):
        assert key in result, key
    assert result["krippendorff_alpha"] == pytest.approx(0.25)
    assert len(result["alpha_ci"]) == 2 and result["alpha_ci"][0] <= 0.25 <= result["alpha_ci"][1]
    assert (result["n_items"], result["n_annotations"], result["n_annotators"]) == (4, 11, 3)
    assert result["n_items_excluded"] == 2  # e (one label) and f (none)
    # f's imported 0.9 stands in for the missing labels, as in the CSV below
    assert result["mean_instance_agreement"] == pytest.approx((1 + 2 / 3 + 1 + 0.5 + 0.9) / 5)
    per_annotator = {row["annotator"]: row for row in result["per_annotator"]}
    assert per_annotator["import:u1"]["agreement_with_others"] == pytest.approx(0.625)
    assert per_annotator["import:u3"]["n"] == 2

    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["item_id", "text", "n_labels", "majority_label", "instance_agreement", "tie"]
    by_id = {row[0]: row for row in rows[1:]}
    assert sorted(by_id) == ["a", "b", "c", "d", "e", "f"]
    assert by_id["b"][2:] == ["3", "x", str(2 / 3), "False"]
    assert by_id["d"][1:] == ["'=fourth text", "2", "", "0.5", "True"]  # tie; formula neutralised
    assert by_id["e"][2:] == ["1", "z", "", "False"]
    assert by_id["f"][2:] == ["0", "", "0.9", "False"]


def test_agreement_human_output(cli_db: Path, capsys) -> None:
    code, text, _ = _main(cli_db, capsys, "agreement", "demo", "--no-model")
    assert code == 0
    assert "Krippendorff's alpha: 0.250" in text
    assert "4 items with ≥ 2 labels (2 excluded with fewer)" in text


def test_pool_and_adjudicate_commands(cli_db: Path, capsys) -> None:
    def run_json(*args: str) -> dict:
        code, out, err = _main(cli_db, capsys, *args, "--json")
        assert code == 0, err
        return json.loads(out)

    added = run_json("pool", "add", "demo", "--source", "real", "--split", "test")
    assert added["changed"] == 6 and added["n_items"] == 6 and added["n_complete"] == 4
    assert run_json("pool", "show", "demo")["settings"]["strategy"] == "closest"
    strategy = run_json("pool", "strategy", "demo", "disagreement", "--max-overlap", "4")
    assert strategy["settings"]["max_overlap"] == 4
    assert run_json("adjudicate", "demo", "d", "y")["adjudicated_label"] == "y"
    code, _, err = _main(cli_db, capsys, "adjudicate", "demo", "d", "w")
    assert code == 2 and "label 'w' is not one of the project's labels" in err
    code, _, err = _main(cli_db, capsys, "pool", "add", "demo")
    assert code == 2 and "say which items" in err
    missing = _cli(cli_db, "adjudicate", "demo", "nope", "y", check=False)  # a real exit status
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "error: no item 'nope' in project 'demo': use an item_id of the agreement items table")
