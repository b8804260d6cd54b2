"""Diversity of a set of texts and its similarity to real data, on L2-normalised sentence embeddings.


Pure numpy (plus scikit-learn for the 2-D map). Distances are cosine distances ``d = 1 − cos``:

- *Remote-Clique* (Cox et al., 2021): mean over items of the mean distance to all other items;
- *Chamfer distance*: mean over items of the distance to the nearest other item;
- *top-k similarity to real*: for each real item, the mean of its k highest cosine similarities to a
  synthetic set, averaged over real items.

Chamfer distance shrinks as a set grows (more neighbours, closer ones), so sets are compared at equal sizes:
each metric is the mean over several seeded subsamples of the common size, with their standard deviation.
Everything that needs pairwise similarities works on blocks of rows so that memory stays bounded
(``block_rows × n`` floats at a time), never on the full ``n × n`` matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.vocab import Projection

# At most this many float32 similarities (× 4 bytes) are held at once: 64 MB.
MAX_BLOCK_ELEMENTS = 16_000_000



def _as_unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """``n × dim`` float32 rows of unit length (zero rows stay zero)."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (items × dim), got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def _block_rows(n_columns: int, block_elements: int) -> int:
    return max(1, block_elements // max(1, n_columns))


def remote_clique(embeddings: np.ndarray, *, block_elements: int = MAX_BLOCK_ELEMENTS) -> float:
    """Mean over items of the mean cosine distance to every other item (needs ≥ 2 items).

    ``embeddings`` is ``n × dim``; rows are L2-normalised here. Computed blockwise, ``O(n² · dim)`` time.
    """
    unit = _as_unit_rows(embeddings)
    n = unit.shape[0]
    if n < 2:
        raise ValueError(f"remote-clique needs at least 2 items, got {n}")
    total = 0.0
    step = _block_rows(n, block_elements)
    for start in range(0, n, step):
        block = unit[start:start + step]
        similarities = block @ unit.T
        # Each row's own similarity (1 for a unit row) is not a pair: subtract it from the row sum.
        row_sums = similarities.sum(axis=1, dtype=np.float64) - np.einsum("ij,ij->i", block, block, dtype=np.float64)
        total += float(np.sum((n - 1) - row_sums))
    return total / (n * (n - 1))


def remote_clique_closed_form(embeddings: np.ndarray) -> float:
    """The same number in ``O(n · dim)``: Σ_{i≠j} cos(i, j) = ‖Σ_i x_i‖² − Σ_i ‖x_i‖² for unit rows.

    Used to cross-check :func:`remote_clique` and for very large sets; float64 keeps it exact to ~1e-12.
    """
    unit = _as_unit_rows(embeddings).astype(np.float64)
    n = unit.shape[0]
    if n < 2:
        raise ValueError(f"remote-clique needs at least 2 items, got {n}")
    column_sums = unit.sum(axis=0)
    off_diagonal = float(column_sums @ column_sums) - float(np.einsum("ij,ij->", unit, unit))
    return 1.0 - off_diagonal / (n * (n - 1))


def nearest_neighbour_distances(embeddings: np.ndarray, *, block_elements: int = MAX_BLOCK_ELEMENTS) -> np.ndarray:
    """For each item, the cosine distance to its nearest *other* item (``n`` floats; needs ≥ 2 items)."""
    unit = _as_unit_rows(embeddings)
    n = unit.shape[0]
    if n < 2:
        raise ValueError(f"chamfer distance needs at least 2 items, got {n}")
    nearest = np.empty(n, dtype=np.float64)
    step = _block_rows(n, block_elements)
    for start in range(0, n, step):
        block = unit[start:start + step]
        similarities = block @ unit.T
        rows = np.arange(block.shape[0])
        similarities[rows, start + rows] = -np.inf  # an item is not its own neighbour
        nearest[start:start + block.shape[0]] = 1.0 - similarities.max(axis=1)
    # Rounding can make the distance of a duplicate a hair below zero.
    return np.clip(nearest, 0.0, 2.0)


def chamfer_distance(embeddings: np.ndarray, *, block_elements: int = MAX_BLOCK_ELEMENTS) -> float:
    """Mean over items of the cosine distance to the nearest other item (needs ≥ 2 items)."""
    return float(nearest_neighbour_distances(embeddings, block_elements=block_elements).mean())


def top_k_similarities(
    real: np.ndarray, synthetic: np.ndarray, *, k: int = 5, block_elements: int = MAX_BLOCK_ELEMENTS
) -> np.ndarray:
    """For each real item (row of ``real``, ``n_real × dim``), the mean of its ``k`` highest cosine similarities
    to the rows of ``synthetic`` (``n_syn × dim``); with fewer than ``k`` synthetic items, all of them."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    real_unit, synthetic_unit = _as_unit_rows(real), _as_unit_rows(synthetic)
    if synthetic_unit.shape[0] == 0 or real_unit.shape[0] == 0:
        raise ValueError("top-k similarity needs at least one real and one synthetic item")
    k = min(k, synthetic_unit.shape[0])
    out = np.empty(real_unit.shape[0], dtype=np.float64)
    step = _block_rows(synthetic_unit.shape[0], block_elements)
    for start in range(0, real_unit.shape[0], step):
        similarities = real_unit[start:start + step] @ synthetic_unit.T
        top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
        out[start:start + similarities.shape[0]] = top.mean(axis=1, dtype=np.float64)
    return out


def top_k_similarity(real: np.ndarray, synthetic: np.ndarray, *, k: int = 5,
                     block_elements: int = MAX_BLOCK_ELEMENTS) -> float:
    """The paper's similarity of a synthetic set to real data: :func:`top_k_similarities` averaged."""
    return float(top_k_similarities(real, synthetic, k=k, block_elements=block_elements).mean())


def subsample_indices(n: int, size: int, *, n_subsamples: int, seed: int) -> list[np.ndarray]:
    """``n_subsamples`` seeded draws of ``size`` distinct indices of ``range(n)``, each sorted.

    With ``size >= n`` there is only one subset, the whole set. Draw ``i`` depends only on (seed, i, n, size),
    so adding more draws never changes the earlier ones.
    """
    if size < 1 or n_subsamples < 1:
        raise ValueError(f"size and n_subsamples must be positive, got {size} and {n_subsamples}")
    if size >= n:
        return [np.arange(n)]
    return [np.sort(np.random.default_rng([seed, i, n, size]).choice(n, size=size, replace=False))
            for i in range(n_subsamples)]


@dataclass(frozen=True)
class DiversityResult:
    """Diversity of one set at a common size: means (and std) over ``n_repeats`` subsamples of ``n_subsample``."""

    n: int
    n_subsample: int
    n_repeats: int
    remote_clique: float
    remote_clique_std: float
    chamfer: float
    chamfer_std: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diversity(embeddings: np.ndarray, *, size: int | None = None, n_subsamples: int = 5, seed: int = 0,
              block_elements: int = MAX_BLOCK_ELEMENTS) -> DiversityResult:
    """Remote-Clique and Chamfer distance of a set (``n × dim``), on seeded subsamples of ``size`` items
    (default: the whole set), as mean ± population std over the subsamples."""
    n = int(np.asarray(embeddings).shape[0])
    if n < 2:
        raise ValueError(f"diversity needs at least 2 items, got {n}")
    size = n if size is None else max(2, min(size, n))
    subsets = subsample_indices(n, size, n_subsamples=n_subsamples, seed=seed)
    # The closed form gives the same number as the blockwise pairwise mean (tests hold them to 1e-6) in O(n·dim).
    cliques = [remote_clique_closed_form(embeddings[index]) for index in subsets]
    chamfers = [chamfer_distance(embeddings[index], block_elements=block_elements) for index in subsets]
    return DiversityResult(n=n, n_subsample=size, n_repeats=len(subsets),
                           remote_clique=float(np.mean(cliques)), remote_clique_std=float(np.std(cliques)),
                           chamfer=float(np.mean(chamfers)), chamfer_std=float(np.std(chamfers)))


@dataclass(frozen=True)
class SimilarityResult:
    """Top-k similarity of real queries to a synthetic set, mean ± std over subsamples of the synthetic set."""

    k: int
    n_real: int
    n_synthetic: int
    n_subsample: int
    n_repeats: int
    mean: float
    std: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def similarity_to_real(real: np.ndarray, synthetic: np.ndarray, *, k: int = 5, size: int | None = None,
                       n_subsamples: int = 5, seed: int = 0,
                       block_elements: int = MAX_BLOCK_ELEMENTS) -> SimilarityResult:
    """Mean top-k cosine similarity of the real items to the synthetic set, with the synthetic set drawn at
    ``size`` items (seeded subsamples; the top-k mean rises with the size of the set searched)."""
    n_synthetic = int(np.asarray(synthetic).shape[0])
    if n_synthetic == 0:
        raise ValueError("similarity to real needs at least one synthetic item")
    size = n_synthetic if size is None else max(1, min(size, n_synthetic))
    subsets = subsample_indices(n_synthetic, size, n_subsamples=n_subsamples, seed=seed)
    values = [top_k_similarity(real, synthetic[index], k=k, block_elements=block_elements) for index in subsets]
    return SimilarityResult(k=min(k, size), n_real=int(np.asarray(real).shape[0]), n_synthetic=n_synthetic,
                            n_subsample=size, n_repeats=len(subsets), mean=float(np.mean(values)),
                            std=float(np.std(values)))


def projection_2d(embeddings: np.ndarray, *, method: Projection = "pca", seed: int = 0) -> np.ndarray:
    """``n × 2`` coordinates for a map: PCA, or t-SNE on the first 50 principal components.

    The caller caps ``n`` (t-SNE is ``O(n log n)`` but slow in absolute terms: ~10-20 s for 1,000 points on 2 cores).
    """
    from sklearn.decomposition import PCA  # lazily: scikit-learn's import is not free

    unit = _as_unit_rows(embeddings)
    n = unit.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if n < 3:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    if method == "pca" or n < 10:
        return PCA(n_components=2, random_state=seed).fit_transform(unit)
    if method != "tsne":
        raise ValueError(f"unknown projection {method!r}: use 'pca' or 'tsne'")
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    reduced = PCA(n_components=min(50, n, unit.shape[1]), random_state=seed).fit_transform(unit)
    tsne = TSNE(n_components=2, perplexity=float(min(30, (n - 1) / 3)), init="pca", random_state=seed, max_iter=500)
    # One OpenMP thread: on a busy machine (the app, training jobs) t-SNE's many short parallel steps spin-wait;
    # measured here under load, 1,000 points took 19 s on one thread and 72 s on two.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(reduced)
