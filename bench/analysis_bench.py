"""Benchmark: sentence embeddings and diversity metrics on 10,000 texts.

Prints, for one run on this machine:
- embedding time and peak memory (first run computes; second run reads the cache),
- Remote-Clique, Chamfer and top-5 similarity time and peak numpy memory (blockwise),
- the same metrics as a straightforward pairwise Python loop, timed on a subsample and extrapolated by n²
  (said so in the output), and as one full n × n numpy matrix (time and memory), for the ratios.

Usage: ``.venv/bin/python bench/analysis_bench.py [--n 10000] [--loop-sample 300]``. Texts are the SMS Spam
Collection and the Financial PhraseBank from /work/shared/data when present (else generated sentences).
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.analysis import diversity
from core.analysis.embeddings import TransformersEmbedder, embed_texts
from db import connection

DATA = ROOT.parent / "shared" / "data"


def load_texts(n: int) -> tuple[list[str], str]:
    texts: list[str] = []
    source = "generated sentences"
    sms = DATA / "sms_spam" / "SMSSpamCollection"
    phrasebank = DATA / "financial_phrasebank" / "Sentences_50Agree.txt"
    if sms.is_file() and phrasebank.is_file():
        texts += [line.split("\t", 1)[1].strip() for line in sms.read_text(encoding="utf-8").splitlines() if "\t" in line]
        texts += [line.rsplit("@", 1)[0].strip() for line in phrasebank.read_text(encoding="latin-1").splitlines()]
        source = "SMS Spam Collection + Financial PhraseBank"
    rng = np.random.default_rng(0)
    words = ["the", "market", "rose", "fell", "sharply", "today", "profit", "loss", "call", "me", "later", "free",
             "prize", "win", "text", "now"]
    while len(texts) < n:  # pad (or stand in for the datasets) with generated sentences
        texts.append(" ".join(rng.choice(words, size=int(rng.integers(5, 20)))) + f" #{len(texts)}")
    return texts[:n], source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loop_metrics(vectors: np.ndarray) -> tuple[float, float]:
    """Remote-Clique and Chamfer as the definitions read, in pure Python (the baseline)."""
    rows = [list(map(float, v)) for v in vectors]
    n = len(rows)
    mean_distances, nearest = [], []
    for i in range(n):
        distances = []
        for j in range(n):
            if i != j:
                distances.append(1.0 - sum(a * b for a, b in zip(rows[i], rows[j], strict=True)))
        mean_distances.append(sum(distances) / (n - 1))
        nearest.append(min(distances))
    return sum(mean_distances) / n, sum(nearest) / n


def timed_numpy(fn, *args, **kwargs):
    tracemalloc.start()
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return value, seconds, peak


def full_matrix_metrics(vectors: np.ndarray) -> tuple[float, float]:
    """The naive vectorised version: the whole n × n similarity matrix at once."""
    similarities = vectors @ vectors.T
    n = len(vectors)
    clique = float(((1 - similarities).sum() - (1 - np.diag(similarities)).sum()) / (n * (n - 1)))
    np.fill_diagonal(similarities, -np.inf)
    return clique, float((1 - similarities.max(axis=1)).mean())


class StandInEmbedder:
    """Random 384-d unit vectors (seeded by the text): the pipeline's cost without the model's."""

    cache_key = "bench-stand-in"

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.array([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384) for t in texts],
                        dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def project_pipeline(n_items: int) -> None:
    """The whole per-project analysis (items, cache, metrics, map) on ``n_items`` items, model left out."""
    import json

    from core import projects
    from core.analysis import service as analysis
    from core.data.text import text_hash
    from db import items as items_db

    with tempfile.TemporaryDirectory() as folder:
        db = connection.connect(Path(folder) / "pipeline.db")
        project = projects.create_project(db, "bench", projects.parse_labels("a,b"))
        rows = []
        for i in range(n_items):
            mode = (None, None, "zero-shot", "few-shot")[i % 4]
            text = f"item {i} " + "lorem ipsum " * (i % 7)
            rows.append({"text": text, "text_hash": text_hash(text), "source": "synthetic" if mode else "real",
                         "split": "train", "reference_label": "ab"[i % 2],
                         "meta": json.dumps({"mode": mode, "generation_job_id": 1} if mode else {})})
        with connection.transaction(db):
            items_db.insert_items(db, project.id, rows)
        for attempt in ("first (vectors computed and cached)", "second (all vectors from the cache)"):
            started = time.perf_counter()
            result = analysis.analyse_project(db, project.id, analysis.AnalysisConfig(projection="tsne"),
                                              embedder=StandInEmbedder())
            print(f"analysis pipeline on {n_items} items, {attempt}: {time.perf_counter() - started:.1f} s"
                  f" (sources compared at {result['n_subsample']} items; map of {len(result['map']['x'])}"
                  f" points); process peak RSS {peak_rss_mb():.0f} MB")
        db.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--loop-sample", type=int, default=300, help="items for the pure-Python loop baseline")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pipeline-items", type=int, default=0,
                        help="instead: time the whole analysis of a project with this many items, model left out")
    args = parser.parse_args()
    if args.pipeline_items:
        project_pipeline(args.pipeline_items)
        return

    texts, source = load_texts(args.n)
    print(f"texts: {len(texts)} ({source}); mean length {np.mean([len(t) for t in texts]):.0f} characters")
    with tempfile.TemporaryDirectory() as folder:
        db = connection.connect(Path(folder) / "bench.db")
        embedder = TransformersEmbedder(batch_size=args.batch_size)
        rss_before = peak_rss_mb()
        started = time.perf_counter()
        embedder.encode(["load the model"])  # not cached: encode() alone never writes the cache
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        first = embed_texts(db, texts, embedder=embedder)
        embed_seconds = time.perf_counter() - started
        rss_after = peak_rss_mb()
        started = time.perf_counter()
        second = embed_texts(db, texts, embedder=embedder)
        cache_seconds = time.perf_counter() - started
        db_size = (Path(folder) / "bench.db").stat().st_size / 2**20
        db.conn.close()
    vectors = first.vectors
    assert np.array_equal(vectors, second.vectors) and second.n_computed == 0
    print(f"model load (torch + transformers import, weights): {load_seconds:.1f} s")
    print(f"embedding (first run): {embed_seconds:.1f} s = "
          f"{first.n_computed / embed_seconds:.0f} texts/s; {first.n_computed} distinct texts computed;"
          f" process peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    print(f"embedding (second run, all {second.n_cached} from the cache): {cache_seconds:.2f} s"
          f" = {embed_seconds / cache_seconds:.0f}x faster; cache size {db_size:.1f} MB")

    n = len(vectors)
    half = n // 2
    clique, t_clique, m_clique = timed_numpy(diversity.remote_clique, vectors)
    chamfer, t_chamfer, m_chamfer = timed_numpy(diversity.chamfer_distance, vectors)
    _, t_top5, m_top5 = timed_numpy(diversity.top_k_similarity, vectors[:half], vectors[half:], k=5)
    closed, t_closed, _ = timed_numpy(diversity.remote_clique_closed_form, vectors)
    metrics_seconds = t_clique + t_chamfer
    print(f"blockwise metrics on {n} items: remote-clique {clique:.4f} in {t_clique:.2f} s (peak {m_clique:.0f} MB),"
          f" chamfer {chamfer:.4f} in {t_chamfer:.2f} s (peak {m_chamfer:.0f} MB);"
          f" top-5 similarity {half}x{n - half} in {t_top5:.2f} s (peak {m_top5:.0f} MB);"
          f" closed-form remote-clique {closed:.4f} in {t_closed * 1000:.1f} ms")

    (full_clique, full_chamfer), t_full, m_full = timed_numpy(full_matrix_metrics, vectors)
    assert math.isclose(full_clique, clique, abs_tol=1e-4) and math.isclose(full_chamfer, chamfer, abs_tol=1e-4)
    print(f"full n x n numpy matrix: {t_full:.2f} s, peak {m_full:.0f} MB"
          f" (blockwise uses {max(m_clique, m_chamfer) / m_full:.2f}x its memory, {metrics_seconds / t_full:.2f}x"
          " its time)")

    m = min(args.loop_sample, n)
    sample = vectors[np.random.default_rng(0).choice(n, size=m, replace=False)]
    started = time.perf_counter()
    loop_clique, loop_chamfer = loop_metrics(sample)
    loop_seconds = time.perf_counter() - started
    assert math.isclose(loop_clique, diversity.remote_clique(sample), abs_tol=1e-5)
    assert math.isclose(loop_chamfer, diversity.chamfer_distance(sample), abs_tol=1e-5)
    extrapolated = loop_seconds * (n / m) ** 2
    print(f"pure-Python pairwise loop: {loop_seconds:.2f} s on a {m}-item subsample (same values as blockwise);"
          f" extrapolated by n^2 to {n} items: {extrapolated:.0f} s (not run)")
    print(f"ratio, remote-clique + chamfer on {n} items: Python loop (extrapolated) / blockwise numpy ="
          f" {extrapolated / metrics_seconds:,.0f}x")
    print(f"process peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
