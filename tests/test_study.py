"""The study: the up-front ingredients check with its exact messages, the report folder, and (slow) a whole
study on a tiny project."""

from __future__ import annotations

import html
import json
import zipfile
from pathlib import Path

import pytest

from core import cli, projects
from core.analysis import report, study
from core.data.text import text_hash
from core.errors import SynthloopError
from db import items as items_db
from db import seeds as seeds_db
from db.connection import transaction

POSITIVE = ["I loved it, wonderful", "great and fun", "really good value", "a delight from start to end",
            "superb, would buy again", "happy with it", "excellent service", "best day ever"]
NEGATIVE = ["I hated it, awful", "terrible and boring", "a waste of money", "broke after one day",
            "worst purchase ever", "very disappointed", "rude staff, never again", "sad and angry"]

NO_ZERO_SHOT = ("no zero-shot synthetic data: the run 'zero-shot' will be skipped — generate some with"
                " `python -m core generate demo --mode zero-shot --per-label N`")
NO_FEW_SHOT = ("no few-shot synthetic data: the runs 'few-shot' and 'seeds + few-shot' will be skipped — generate"
               " some with `python -m core generate demo --mode few-shot --per-label N`")
NO_SEEDS = ("no seeds: the runs 'seeds' and 'seeds + few-shot' will be skipped — pick seed examples on the Seeds"
            " page or run `python -m core seeds sample demo --per-label N`")
NO_AGREEMENT = ("no test item has an instance agreement: every run is still trained and scored, but Figure 2"
                " (accuracy against γ) will be empty — collect two or more labels per test item on the Annotate"
                " page, or import a published agreement column")
NO_TEST = ("no test split: project 'demo' has no labelled real items with split 'test', so no run can be evaluated"
           " and the study cannot start — import labelled real items into the test split (or with a split column),"
           " then run the study again")


def add(db, project_id: int, texts: list[str], label: str, *, split: str, source: str = "real",
        mode: str | None = None) -> list[int]:
    generation = {"generation_job_id": 1 if mode == "zero-shot" else 2, "generation_mode": mode} if mode else {}
    with transaction(db):
        return items_db.insert_items(db, project_id, [
            {"text": t, "text_hash": text_hash(t), "source": source, "split": split, "reference_label": label,
             **generation} for t in texts])


@pytest.fixture
def binary(fresh_db):
    return projects.create_project(fresh_db, "demo", projects.parse_labels("pos,neg"))


def test_missing_test_split_blocks_the_study(fresh_db, binary) -> None:
    add(fresh_db, binary.id, POSITIVE[:3], "pos", split="train")
    add(fresh_db, binary.id, NEGATIVE[:3], "neg", split="train")
    found = study.check_ingredients(fresh_db, binary.id)
    assert not found.ok and found.runnable == ()
    assert [p.message for p in found.problems] == [NO_TEST, NO_ZERO_SHOT, NO_FEW_SHOT, NO_SEEDS]
    assert found.problems[0].blocking and found.problems[0].skipped == study.ARM_NAMES
    with pytest.raises(SynthloopError, match="no test split: project 'demo'"):
        study.start_study(fresh_db, binary.id, study.StudyConfig(out_dir=study.AUTO_OUT_DIR))


def test_missing_seeds_and_synthetic_data_skip_their_runs(fresh_db, binary) -> None:
    add(fresh_db, binary.id, POSITIVE[:4], "pos", split="train")
    add(fresh_db, binary.id, NEGATIVE[:4], "neg", split="train")
    add(fresh_db, binary.id, POSITIVE[4:6], "pos", split="test")
    add(fresh_db, binary.id, NEGATIVE[4:6], "neg", split="test")
    found = study.check_ingredients(fresh_db, binary.id)
    assert found.ok and found.runnable == ("real",)
    assert [p.message for p in found.problems] == [NO_ZERO_SHOT, NO_FEW_SHOT, NO_SEEDS, NO_AGREEMENT]
    assert not any(p.blocking for p in found.problems)
    assert found.skipped == {"zero-shot": "no zero-shot synthetic data", "few-shot": "no few-shot synthetic data",
                             "seeds": "no seeds", "seeds + few-shot": "no few-shot synthetic data"}
    assert found.counts == {"test": 4, "test_with_agreement": 0, "real_train": 8, "seeds": 0, "zero-shot": 0,
                            "few-shot": 0}


def test_dry_run_catches_seeds_of_one_label(fresh_db, binary) -> None:
    train = add(fresh_db, binary.id, POSITIVE[:4], "pos", split="train")
    add(fresh_db, binary.id, NEGATIVE[:4], "neg", split="train")
    add(fresh_db, binary.id, POSITIVE[4:6] + NEGATIVE[4:6], "pos", split="test")
    add(fresh_db, binary.id, ["zero one", "zero two"], "pos", split="train", source="synthetic", mode="zero-shot")
    add(fresh_db, binary.id, ["zero three"], "neg", split="train", source="synthetic", mode="zero-shot")
    with transaction(fresh_db):
        seeds_db.insert_seeds(fresh_db, binary.id, train[:2])
    found = study.check_ingredients(fresh_db, binary.id, study.StudyConfig(out_dir="x", arms=("seeds", "zero-shot")))
    assert found.runnable == ("zero-shot",)
    assert [p.message for p in found.problems] == [
        "the run 'seeds' will be skipped: the training items all have the label 'pos': a classifier needs at least"
        " two labels; add data of other labels or choose other sources", NO_AGREEMENT]


def test_study_config_is_validated_up_front() -> None:
    with pytest.raises(SynthloopError, match="study run 'everything' is not known"):
        study.StudyConfig(out_dir="x", arms=("everything",))
    with pytest.raises(SynthloopError, match="training setting epochs=0 is not valid"):
        study.StudyConfig(out_dir="x", epochs=0)
    config = study.StudyConfig(out_dir="x", epochs=2, arms="real,seeds")
    assert config.arms == ("real", "seeds")
    assert study.StudyConfig.from_dict(config.to_dict()) == config


def test_cli_study_check_and_blocking_error(db_path, fresh_db, binary, tmp_path, capsys) -> None:
    add(fresh_db, binary.id, POSITIVE[:3], "pos", split="train")
    assert cli.main(["study", "demo", "--out", str(tmp_path / "r"), "--db", str(db_path)]) == 2
    assert capsys.readouterr().err.startswith("error: cannot run the study of 'demo'; runs: none   - no test split")
    add(fresh_db, binary.id, NEGATIVE[:3], "neg", split="train")
    add(fresh_db, binary.id, POSITIVE[4:6] + NEGATIVE[4:6], "pos", split="test")
    assert cli.main(["study", "demo", "--out", str(tmp_path / "r"), "--check", "--json", "--db", str(db_path)]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["runnable"] == ["real"] and output["ok"] is True
    assert not (tmp_path / "r").exists()


def _hand_made_study() -> dict:
    sweep = [{"gamma": 0.6, "n_items": 4, "accuracy": 0.5, "macro_f1": 0.4},
             {"gamma": 1.0, "n_items": 2, "accuracy": 1.0, "macro_f1": 1.0}]
    run = {"run_id": 1, "accuracy": 0.75, "macro_f1": 0.7, "n_train": 8, "n_test": 4, "sweep": sweep,
           "sweep_r2": 1.0, "sweep_spearman_rho": 1.0, "per_class": {"pos": {"precision": 1, "recall": 0.5,
                                                                              "f1": 0.667, "support": 2}},
           "history": {"steps": [{"step": 1, "epoch": 1, "loss": 0.9}, {"step": 2, "epoch": 1, "loss": 0.7}],
                       "epochs": [{"epoch": 1, "train_loss": 0.8, "dev_accuracy": 0.75, "dev_set": "test"}]}}
    analysis_result = {
        "sources": ["real", "synthetic"], "n_subsample": 3, "generation_jobs": {},
        "real": {"n": 3, "n_subsample": 3, "remote_clique": 0.9, "remote_clique_std": 0.0, "chamfer": 0.5,
                 "chamfer_std": 0.0},
        "synthetic": {"n": 3, "n_subsample": 3, "remote_clique": 0.6, "remote_clique_std": 0.1, "chamfer": 0.3,
                      "chamfer_std": 0.05},
        "similarity": {"synthetic": {"mean": 0.4, "std": 0.02, "n_synthetic": 3, "n_subsample": 3}},
        "map": {"item_id": [1, 2], "x": [0.0, 1.0], "y": [1.0, 0.0], "group": ["real", "zero-shot"],
                "label": ["pos", None]},
        "embedding": {"model": "m"}}
    return {"project": "<script>alert(1)</script>", "config": {"arms": ["real", "seeds"]},
            "runs": {"real": run}, "skipped": {"seeds": "no seeds"}, "failed": {},
            "ingredients": {"problems": [{"message": "no seeds: <b>fix</b>"}]},
            "subjectivity": {"mean_test_instance_agreement": 0.8, "test_items_with_agreement": 4},
            "analysis": analysis_result, "seconds": 1.5}


def test_report_folder_from_a_hand_made_study(tmp_path: Path) -> None:
    folder = tmp_path / "report"
    files = report.write_report(folder, _hand_made_study())
    for stem in ("figure1_diversity", "figure2_accuracy_vs_gamma", "figureB1_training_curves", "figureB2_similarity",
                 "figure_map"):
        assert (folder / f"{stem}.svg").read_text().startswith("<svg")
        assert (folder / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table1 = (folder / "table1.csv").read_text().splitlines()
    assert table1[0] == "training data,label_source,n_train,n_test,accuracy,macro_f1,sweep_r2,sweep_spearman_rho," \
                        "sweep_fit,mean_test_agreement,run_id,note"
    assert table1[1] == "real,,8,4,0.75,0.7,1.0,1.0,not meaningful,0.8,1,"  # 2 γ levels: R² and ρ say nothing
    assert table1[2] == "seeds,,,,,,,,,0.8,,no seeds"
    assert (folder / "sweep.csv").read_text().splitlines()[1] == \
        "real,\"real: R² = 1.00, ρ = 1.00 (not meaningful)\",0.6,4,0.5,0.4"
    index = (folder / "index.html").read_text()
    assert "<script>" not in index and html.escape("<script>alert(1)</script>") in index
    assert "no seeds: &lt;b&gt;fix&lt;/b&gt;" in index
    assert "<img src='figure1_diversity.svg'" in index
    assert "<tr><td>real</td><td>—</td><td>8</td><td>4</td><td>0.750</td>" in index  # counts stay whole numbers
    with zipfile.ZipFile(files["zip"]) as archive:
        names = set(archive.namelist())
    assert {"report/index.html", "report/table1.csv", "report/figure2_accuracy_vs_gamma.png"} <= names
    no_sweep = _hand_made_study()
    no_sweep["runs"]["real"]["sweep"] = []
    report.write_report(tmp_path / "no-sweep", no_sweep)
    assert not (tmp_path / "no-sweep" / "figure2_accuracy_vs_gamma.svg").exists()
    assert "no test item has a known instance agreement" in (tmp_path / "no-sweep" / "index.html").read_text()
    shown = report.read_tables(folder)
    assert list(shown["tables"]["table1"]["training data"]) == ["real", "seeds"]
    assert set(shown["figures"]) == {"figure1_diversity", "figure2_accuracy_vs_gamma", "figureB1_training_curves",
                                     "figureB2_similarity", "figure_map"}


@pytest.mark.slow
def test_study_on_a_tiny_project(db_path, fresh_db, binary, tmp_path, monkeypatch) -> None:
    from tests.test_analysis import FakeEmbedder

    # Diversity on real embeddings is covered in test_analysis; here the training runs are what is slow.
    monkeypatch.setattr("core.analysis.service.load_embedder", lambda model, batch_size: FakeEmbedder())
    train_pos = add(fresh_db, binary.id, POSITIVE[:4], "pos", split="train")
    train_neg = add(fresh_db, binary.id, NEGATIVE[:4], "neg", split="train")
    test_ids = add(fresh_db, binary.id, POSITIVE[4:], "pos", split="test") + add(
        fresh_db, binary.id, NEGATIVE[4:], "neg", split="test")
    add(fresh_db, binary.id, ["so good", "lovely"], "pos", split="train", source="synthetic", mode="zero-shot")
    add(fresh_db, binary.id, ["so bad", "awful"], "neg", split="train", source="synthetic", mode="zero-shot")
    add(fresh_db, binary.id, ["loved the fun", "wonderful value"], "pos", split="train", source="synthetic",
        mode="few-shot")
    add(fresh_db, binary.id, ["hated the staff", "boring waste"], "neg", split="train", source="synthetic",
        mode="few-shot")
    with transaction(fresh_db):
        seeds_db.insert_seeds(fresh_db, binary.id, [train_pos[0], train_neg[0]])
        # Three annotators per test item, agreeing 3/3 on half of them and 2/3 on the rest.
        votes = []
        for n, item_id in enumerate(test_ids):
            gold = "pos" if n < 4 else "neg"
            other = "neg" if gold == "pos" else "pos"
            for a, annotator in enumerate(("ann1", "ann2", "ann3")):
                label = other if (n % 2 and a == 2) else gold
                votes.append({"item_id": item_id, "annotator": annotator, "label": label})
        items_db.insert_annotations(fresh_db, votes)

    out = tmp_path / "study"
    result = study.run_study_foreground(str(db_path), binary.id, study.StudyConfig(
        out_dir=str(out), epochs=1, batch_size=8, max_length=32, analysis_min_size=4))
    assert list(result["runs"]) == list(study.ARM_NAMES)
    assert result["failed"] == {} and result["skipped"] == {}
    for run in result["runs"].values():
        assert run["n_test"] == 8 and 0 <= run["accuracy"] <= 1
        assert [p["gamma"] for p in run["sweep"]] == pytest.approx([2 / 3, 1.0])
    assert result["runs"]["seeds"]["n_train"] == 2 and result["runs"]["seeds + few-shot"]["n_train"] == 6
    for name in ("index.html", "table1.csv", "sweep.csv", "diversity.csv", "similarity.csv", "training_curves.csv",
                 "figure1_diversity.svg", "figure2_accuracy_vs_gamma.png", "figureB1_training_curves.svg",
                 "figureB2_similarity.svg", "report.zip", "study.json"):
        assert (out / name).is_file(), name
    table1 = (out / "table1.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table1[1:]] == ["real", "zero-shot", "few-shot", "seeds",
                                                           "seeds + few-shot"]
    assert result["message"].startswith(f"study of 'demo': report in {out / 'index.html'}")
    latest = study.latest_study(fresh_db, binary.id)
    assert latest["job_id"] == result["job_id"] and "figure2_accuracy_vs_gamma" in latest["tables"]["figures"]
