"""Diversity and similarity on tiny hand-made embeddings, with values worked out by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from core.analysis import diversity

# Three unit vectors: d(e1, e2) = 1, d(e1, -e1) = 2, d(e2, -e1) = 1.
TRIANGLE = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
# A duplicate pair and two opposite vectors orthogonal to it.
DUPLICATES = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


def _pairwise_loop(points: np.ndarray) -> tuple[float, float]:
    """The definitions written as plain loops (the reference the blockwise code must match)."""
    unit = [[x / math.sqrt(sum(y * y for y in p)) for x in p] for p in points.tolist()]
    n = len(unit)
    means, nearest = [], []
    for i in range(n):
        distances = [1 - sum(a * b for a, b in zip(unit[i], unit[j], strict=True)) for j in range(n) if j != i]
        means.append(sum(distances) / len(distances))
        nearest.append(min(distances))
    return sum(means) / n, sum(nearest) / n


def test_remote_clique_and_chamfer_by_hand() -> None:
    # item means: (1+2)/2, (1+1)/2, (2+1)/2 → 4/3; nearest: 1, 1, 1 → 1.
    assert diversity.remote_clique(TRIANGLE) == pytest.approx(4 / 3, abs=1e-12)
    assert diversity.chamfer_distance(TRIANGLE) == pytest.approx(1.0, abs=1e-12)
    # means: 2/3, 2/3, 4/3, 4/3 → 1; nearest: 0, 0, 1, 1 → 0.5.
    assert diversity.remote_clique(DUPLICATES) == pytest.approx(1.0, abs=1e-7)
    assert diversity.chamfer_distance(DUPLICATES) == pytest.approx(0.5, abs=1e-7)
    assert diversity.nearest_neighbour_distances(DUPLICATES).tolist() == pytest.approx([0, 0, 1, 1], abs=1e-7)


def test_vectors_are_normalised_first() -> None:
    scaled = TRIANGLE * np.array([[3.0], [0.5], [7.0]])
    assert diversity.remote_clique(scaled) == pytest.approx(4 / 3, abs=1e-7)
    assert diversity.chamfer_distance(scaled) == pytest.approx(1.0, abs=1e-7)


def test_blockwise_matches_the_pairwise_loop_and_the_closed_form() -> None:
    points = np.random.default_rng(3).normal(size=(37, 6))
    loop_clique, loop_chamfer = _pairwise_loop(points)
    for block in (1, 7, 100, diversity.MAX_BLOCK_ELEMENTS):  # 1 element → one row per block
        assert diversity.remote_clique(points, block_elements=block) == pytest.approx(loop_clique, abs=1e-6)
        assert diversity.chamfer_distance(points, block_elements=block) == pytest.approx(loop_chamfer, abs=1e-6)
    assert diversity.remote_clique_closed_form(points) == pytest.approx(loop_clique, abs=1e-6)


def test_too_few_items_is_an_error() -> None:
    with pytest.raises(ValueError, match="remote-clique needs at least 2 items, got 1"):
        diversity.remote_clique(TRIANGLE[:1])
    with pytest.raises(ValueError, match="chamfer distance needs at least 2 items, got 1"):
        diversity.chamfer_distance(TRIANGLE[:1])


def _unit(cos: float) -> list[float]:
    return [cos, math.sqrt(1 - cos * cos)]


def test_top5_similarity_by_hand() -> None:
    synthetic = np.array([_unit(c) for c in (1.0, 0.8, 0.6, 0.0, -0.6, -1.0)])
    real = np.array([[1.0, 0.0], [0.0, 1.0]])
    # Real (1,0): cosines 1, .8, .6, 0, -.6, -1 → top 5 mean .36.
    # Real (0,1): cosines are the sines 0, .6, .8, 1, .8, 0 → top 5: 1, .8, .8, .6, 0 → .64.
    per_item = diversity.top_k_similarities(real, synthetic, k=5)
    assert per_item.tolist() == pytest.approx([0.36, 0.64], abs=1e-7)
    assert diversity.top_k_similarity(real, synthetic, k=5) == pytest.approx(0.5, abs=1e-7)
    assert diversity.top_k_similarities(real, synthetic, k=5, block_elements=1).tolist() == pytest.approx(
        [0.36, 0.64], abs=1e-7)


def test_top_k_with_fewer_synthetic_items_uses_them_all() -> None:
    assert diversity.top_k_similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0]]), k=5) == \
        pytest.approx(0.5, abs=1e-7)


def test_subsamples_are_seeded_and_stable() -> None:
    first = diversity.subsample_indices(100, 10, n_subsamples=3, seed=7)
    again = diversity.subsample_indices(100, 10, n_subsamples=5, seed=7)
    other = diversity.subsample_indices(100, 10, n_subsamples=3, seed=8)
    assert [a.tolist() for a in first] == [a.tolist() for a in again[:3]]  # more draws leave earlier ones alone
    assert [a.tolist() for a in first] != [a.tolist() for a in other]
    assert all(len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 100 for a in first)
    assert [a.tolist() for a in diversity.subsample_indices(4, 10, n_subsamples=3, seed=0)] == [[0, 1, 2, 3]]


def test_diversity_at_equal_size_reports_mean_and_spread() -> None:
    points = np.random.default_rng(0).normal(size=(60, 5))
    result = diversity.diversity(points, size=20, n_subsamples=4, seed=1)
    assert (result.n, result.n_subsample, result.n_repeats) == (60, 20, 4)
    subsets = diversity.subsample_indices(60, 20, n_subsamples=4, seed=1)
    chamfers = [diversity.chamfer_distance(points[s]) for s in subsets]
    assert result.chamfer == pytest.approx(float(np.mean(chamfers)), abs=1e-12)
    assert result.chamfer_std == pytest.approx(float(np.std(chamfers)), abs=1e-12)
    assert result.chamfer_std > 0
    assert diversity.diversity(points, size=20, n_subsamples=4, seed=1) == result
    whole = diversity.diversity(TRIANGLE)
    assert (whole.n_repeats, whole.remote_clique_std, whole.chamfer) == (1, 0.0, pytest.approx(1.0))


def test_similarity_to_real_subsamples_the_synthetic_set() -> None:
    synthetic = np.array([_unit(c) for c in (1.0, 0.8, 0.6, 0.0, -0.6, -1.0)])
    result = diversity.similarity_to_real(np.array([[1.0, 0.0]]), synthetic, k=5)
    assert (result.mean, result.std, result.n_subsample, result.n_repeats) == (pytest.approx(0.36), 0.0, 6, 1)
    small = diversity.similarity_to_real(np.array([[1.0, 0.0]]), synthetic, k=5, size=3, n_subsamples=4, seed=2)
    assert (small.k, small.n_subsample, small.n_repeats) == (3, 3, 4)
    expected = [np.mean(np.sort(synthetic[s][:, 0])) for s in diversity.subsample_indices(6, 3, n_subsamples=4,
                                                                                            seed=2)]
    assert small.mean == pytest.approx(float(np.mean(expected)), abs=1e-7)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_gives_two_coordinates_per_item(method: str) -> None:
    points = np.vstack([np.random.default_rng(1).normal(loc, 0.1, size=(15, 8)) for loc in (-1, 1)])
    coordinates = diversity.projection_2d(points, method=method, seed=0)
    assert coordinates.shape == (30, 2)
    # Two well-separated clusters stay separated: every point is nearer its own cluster's centre.
    centres = [coordinates[:15].mean(axis=0), coordinates[15:].mean(axis=0)]
    for i, j in itertools.product(range(30), range(2)):
        own = int(i >= 15)
        if j != own:
            assert np.linalg.norm(coordinates[i] - centres[own]) < np.linalg.norm(coordinates[i] - centres[j])
