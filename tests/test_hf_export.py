"""``export --format hf``: a Hugging Face DatasetDict folder with its card, and ``import --format hf`` back."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk

from core import projects
from core.annotation.adjudication import adjudicate
from core.data import hf
from core.data.export import item_view
from core.data.importer import imported_annotator
from core.errors import SynthloopError
from db import items as items_db
from tests.page_helpers import researcher_app
from tests.training_helpers import add_items

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def source(fresh_db):
    """Six items over three splits: split votes, a tie, an adjudicated item, imported agreement, a synthetic item."""
    project = projects.create_project(fresh_db, "src", projects.parse_labels("pos,neg,neu"),
                                      description="Tiny sentiment set.")
    ids = add_items(fresh_db, project.id, [
        {"text": "great film", "label": "pos", "votes": ["pos", "pos", "neg"]},
        {"text": "awful film", "label": "neg", "votes": ["neg", "neg", "neg", "neu"]},
        {"text": "a film", "votes": ["neu", "pos"]},  # tie, no reference label
        {"text": "so so", "split": "dev", "label": "neu", "agreement": 0.75},  # imported agreement, no votes
        {"text": "fine acting", "split": "test", "label": "pos", "votes": ["pos", "neg"]},
        {"text": "bad plot", "split": "test", "source": "synthetic", "label": "neg",
         "generation": {"generation_mode": "few-shot", "generation_job_id": None}},
    ])
    adjudicate(fresh_db, project, ids[4], "neg")
    return project


def _export(db_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "export", *args, "--db", str(db_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_export_writes_a_dataset_dict_with_labels_votes_and_a_card(db_path, fresh_db, source, tmp_path):
    out = tmp_path / "ds"
    done = _export(db_path, "src", "--format", "hf", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["splits"] == {"train": 3, "dev": 1, "test": 2}

    dataset = load_from_disk(str(out))
    assert list(dataset) == ["train", "dev", "test"]
    train = dataset["train"]
    assert train.features["label"].names == ["pos", "neg", "neu"]
    # The majority; the majority (3 of 4); a tie without a reference label has no final label (-1).
    assert list(train["label"]) == [0, 1, -1]
    assert list(train["reference_label"]) == [0, 1, -1] and list(train["majority_label"]) == [0, 1, -1]
    assert train["soft_label"] == [pytest.approx([2 / 3, 1 / 3, 0]), pytest.approx([0, 0.75, 0.25]),
                                   pytest.approx([0.5, 0, 0.5])]
    assert list(train["instance_agreement"]) == [pytest.approx(2 / 3), 0.75, 0.5]
    assert train["annotations"][0] == [{"annotator": "annotator0", "label": "pos"},
                                       {"annotator": "annotator1", "label": "pos"},
                                       {"annotator": "annotator2", "label": "neg"}]
    dev = dataset["dev"][0]
    assert (dev["label"], dev["soft_label"], dev["instance_agreement"], dev["agreement_source"],
            dev["annotations"]) == (2, [], 0.75, "imported", [])
    test = dataset["test"]
    assert test["label"] == [1, 1]  # adjudicated over the majority; the reference without raw labels
    assert (test["source"], test["generation_mode"]) == (["real", "synthetic"], [None, "few-shot"])

    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["label_names"] == ["pos", "neg", "neu"]
    assert meta["task_categories"] == ["text-classification"] and meta["size_categories"] == ["n<1K"]
    assert meta["splits"] == {"train": 3, "dev": 1, "test": 2}
    assert set(meta["agreement"]) >= {"krippendorff_alpha", "alpha_ci"}
    assert "Krippendorff's alpha" in card and "few-shot" in card


def _plain(row: dict) -> dict:
    return {key: None if isinstance(value, float) and value != value else value for key, value in row.items()}


def test_import_reads_the_folder_back_with_the_same_items_labels_raw_labels_and_agreement(
        db_path, fresh_db, source, tmp_path):
    out = tmp_path / "ds"
    hf.export_hf(fresh_db, source.id, out)
    copy = projects.create_project(fresh_db, "copy", projects.parse_labels("pos,neg,neu"))
    done = subprocess.run([sys.executable, "-m", "core", "import", "copy", str(out), "--format", "hf",
                           "--db", str(db_path), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    columns = ["item_id", "text", "split", "reference_label", "majority_label", "n_labels", "instance_agreement",
               "agreement_source", "votes"]
    before = item_view(fresh_db, source.id)[columns].sort_values("text").reset_index(drop=True)
    after = item_view(fresh_db, copy.id)[columns].sort_values("text").reset_index(drop=True)
    assert [_plain(r) for r in after.to_dict(orient="records")] == [_plain(r) for r in before.to_dict(orient="records")]

    def raw(project_id: int) -> list[tuple[str, str, str]]:
        items = items_db.items_frame(fresh_db, project_id).set_index("id")["text"]
        frame = items_db.annotation_labels_frame(fresh_db, project_id)
        return sorted(zip(frame["item_id"].map(items), frame["annotator"], frame["label"], strict=True))

    assert raw(copy.id) == [(text, imported_annotator(annotator), label) for text, annotator, label in raw(source.id)]
    # Exporting the copy gives the same dataset (the annotators now carry the import prefix, once).
    again = hf.dataset_rows(fresh_db, copy.id)[1]
    first = hf.dataset_rows(fresh_db, source.id)[1]
    for rows in (*again.values(), *first.values()):
        for row in rows:
            row.pop("source"), row.pop("generation_mode"), row.pop("generation_job_id"), row.pop("label")
            row["annotations"] = [{**a, "annotator": imported_annotator(a["annotator"])} for a in row["annotations"]]
    assert again == first


def test_export_refuses_a_folder_in_use_and_push_without_a_token(db_path, fresh_db, source, tmp_path, monkeypatch):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    with pytest.raises(SynthloopError, match="exists and is not an empty folder"):
        hf.export_hf(fresh_db, source.id, tmp_path / "used")
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    done = _export(db_path, "src", "--format", "hf", "--out", str(tmp_path / "new"), "--push-to-hub", "me/src")
    assert (done.returncode, done.stderr) == (2, "error: no Hugging Face token to upload with: set HF_TOKEN or log"
                                                 " in with `hf auth login`, then export again\n")
    assert not (tmp_path / "new").exists()


def test_export_page_offers_the_dataset_folder_as_a_zip(db_path, fresh_db, source, tmp_path, monkeypatch):
    at = researcher_app("export.py", db_path, fresh_db, source.id, monkeypatch).run()
    assert not at.exception and len(at.get("download_button")) == 1  # the zip is built on request only
    at.button(key="export_hf_prepare").click().run()
    assert not at.exception and not at.error
    project_id, data, name = at.session_state["export_hf_zip"]
    assert (project_id, name) == (source.id, "src-hf.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        bundle.extractall(tmp_path)
    assert load_from_disk(str(tmp_path / "src-hf"))["test"]["label"] == [1, 1]
    assert (tmp_path / "src-hf" / "README.md").is_file()
    assert len(at.get("download_button")) == 2
