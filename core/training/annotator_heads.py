"""Per-annotator modelling: one output head per annotator on a shared encoder (multi-task, Davani et al., TACL 2022).

Each training example is an (item, annotator, label) triple. The triples of the annotators with at least
``min_labels`` training labels (LLM annotators never) become a label matrix, items × annotators, with -1 where an
annotator did not label an item; the loss is the cross-entropy of each head on the labels its annotator gave,
so only the heads of the item's annotators contribute. The heads are one linear layer with annotators × classes
outputs on the shared encoder (block ``a`` of the outputs is annotator ``a``'s head), so the model saves and
loads like any sequence classifier.

The item prediction is the majority of the heads' predicted labels; a tie goes to the tied class with the highest
mean probability over the heads. :func:`item_probabilities` folds both into one distribution whose argmax is
that rule, so the run stores and scores it like any classifier's output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import SynthloopError
from core.training.classifier import CLASSES_FILE, TransformerClassifier, import_torch
from core.vocab import LLM_ANNOTATOR_PREFIX

NOT_LABELLED = -1


@dataclass(frozen=True)
class AnnotatorTriples:
    """The (item, annotator, label) triples a multi-task model trains on.

    ``annotators`` are the annotators with a head (sorted); ``item_ids`` the items at least one of them labelled
    (sorted); ``triples`` one ``(item_id, annotator, label)`` per kept label, ordered by item then annotator."""

    annotators: list[str] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    triples: list[tuple[int, str, str]] = field(default_factory=list)

    def label_matrix(self, classes: Sequence[str]) -> np.ndarray:
        """Class index of each annotator's label, shape ``(len(item_ids), len(annotators))``, -1: not labelled."""
        row = {item_id: i for i, item_id in enumerate(self.item_ids)}
        column = {annotator: j for j, annotator in enumerate(self.annotators)}
        index = {label: k for k, label in enumerate(classes)}
        matrix = np.full((len(self.item_ids), len(self.annotators)), NOT_LABELLED, dtype=np.int64)
        for item_id, annotator, label in self.triples:
            matrix[row[item_id], column[annotator]] = index[label]
        return matrix


def build_triples(annotations: pd.DataFrame, item_ids: Sequence[int], classes: Sequence[str], *,
                  min_labels: int) -> AnnotatorTriples:
    """The triples of ``item_ids`` from ``annotations`` (columns ``item_id``, ``annotator``, ``label``).

    Labels outside ``classes`` and LLM annotators are left out; an annotator with fewer than ``min_labels`` of
    the remaining labels gets no head. Raises when no annotator is left."""
    frame = annotations[["item_id", "annotator", "label"]]
    frame = frame[frame["item_id"].isin(set(item_ids)) & frame["label"].isin(set(classes))
                  & ~frame["annotator"].astype(str).str.startswith(LLM_ANNOTATOR_PREFIX)]
    # One label per (item, annotator): the last one stored, as the annotation table keeps a single label each.
    frame = frame.drop_duplicates(["item_id", "annotator"], keep="last")
    counts = frame["annotator"].value_counts()
    annotators = sorted(str(a) for a, n in counts.items() if n >= min_labels)
    if not annotators:
        most = (f" (most: {int(counts.iloc[0])} by {str(counts.index[0])!r})" if len(counts)
                else " (the training items have no human labels)")
        raise SynthloopError(f"no annotator has at least {{min_annotator_labels}}={min_labels} labels on the"
                             f" training items{most}: lower {{min_annotator_labels}}, collect more labels, or turn"
                             " {annotator_heads} off", fields=("min_annotator_labels", "annotator_heads"))
    frame = frame[frame["annotator"].isin(annotators)].sort_values(["item_id", "annotator"])
    triples = [(int(i), str(a), str(lb)) for i, a, lb in frame.itertuples(index=False)]
    return AnnotatorTriples(annotators=annotators, item_ids=sorted({t[0] for t in triples}), triples=triples)


def masked_head_loss(logits: Any, targets: Any) -> Any:
    """Mean cross-entropy over the labelled (item, annotator) cells only.

    ``logits``: ``(batch, annotators, classes)``; ``targets``: ``(batch, annotators)`` class indices, -1 where
    the annotator did not label the item (those heads get no gradient from that item)."""
    torch = import_torch()

    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                             ignore_index=NOT_LABELLED)


def item_probabilities(head_proba: np.ndarray) -> np.ndarray:
    """One distribution per item whose argmax is the majority of the heads' labels, ties broken by the mean of
    the heads' probabilities.

    ``head_proba``: ``(items, heads, classes)``. The result is ``(votes + mean probability) / (heads + 1)``: the
    heads' vote shares with one more, soft vote of their mean. Vote counts differ by whole numbers and mean
    probabilities by less than 1, so the mean decides only between classes with equal votes."""
    n_items, n_heads, n_classes = head_proba.shape
    votes = np.zeros((n_items, n_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(n_items), n_heads), head_proba.argmax(axis=2).ravel()), 1.0)
    return ((votes + head_proba.mean(axis=1)) / (n_heads + 1)).astype(np.float32)


def annotator_error_rates(annotations: pd.DataFrame, item_ids: Sequence[int], head_proba: np.ndarray,
                          annotators: Sequence[str], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per annotator with a head: how often its head's label differs from the annotator's own label on the
    items of ``item_ids`` (rows of ``head_proba``, ``(items, heads, classes)``) that annotator labelled.

    ``error_rate`` is None for an annotator without a label on those items."""
    row = {int(item_id): i for i, item_id in enumerate(item_ids)}
    predicted = head_proba.argmax(axis=2)
    frame = annotations[annotations["item_id"].isin(row.keys()) & annotations["label"].isin(set(classes))]
    frame = frame.drop_duplicates(["item_id", "annotator"], keep="last")
    rates = []
    for j, annotator in enumerate(annotators):
        own = frame[frame["annotator"] == annotator]
        wrong = sum(classes[predicted[row[int(i)], j]] != label for i, label in zip(own["item_id"], own["label"],
                                                                                       strict=True))
        rates.append({"annotator": annotator, "n_test_labels": len(own),
                      "error_rate": wrong / len(own) if len(own) else None})
    return rates


class AnnotatorHeadsClassifier(TransformerClassifier):
    """A :class:`TransformerClassifier` with one head per annotator (``annotators_``, in head order).

    ``fit(texts, label_matrix)`` takes one row per text: the class index each annotator gave it (see
    :meth:`AnnotatorTriples.label_matrix`), -1 where none; ``labels`` (the classes) and ``annotators`` must be
    given. ``predict_proba`` returns :func:`item_probabilities`; ``head_proba`` every head's probabilities."""

    def __init__(self, *args: Any, annotators: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.annotators = list(annotators)

    def _check_classes(self, labels: Any) -> list[str]:
        if self.labels is None or not self.annotators:
            raise ValueError("an annotator-heads classifier needs its classes (labels) and annotators")
        matrix = np.asarray(labels, dtype=np.int64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.annotators):
            raise ValueError(f"the label matrix must be texts × {len(self.annotators)} annotators, not {matrix.shape}")
        if ((matrix < NOT_LABELLED) | (matrix >= len(self.labels))).any():
            raise ValueError(f"label matrix entries must be -1 or a class index below {len(self.labels)}")
        self.annotators_ = list(self.annotators)
        return list(self.labels)

    def _targets(self, labels: Any) -> np.ndarray:
        return np.asarray(labels, dtype=np.int64)

    def _output_names(self) -> list[str]:
        return [f"{annotator}|{label}" for annotator in self.annotators_ for label in self.classes_]

    def _loss(self, model: Any, batch: dict[str, Any]) -> Any:
        targets = batch.pop("labels")  # items × annotators: the model's own loss cannot mask them
        logits = model(**batch).logits
        return masked_head_loss(logits.view(len(logits), len(self.annotators_), len(self.classes_)), targets)

    def head_proba(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        """Each head's class probabilities, shape ``(len(texts), len(annotators_), len(classes_))``."""
        flat = super().predict_proba(texts, **kwargs)
        return flat.reshape(len(texts), len(self.annotators_), len(self.classes_))

    def _probabilities(self, logits: Any) -> Any:
        torch = import_torch()

        per_head = logits.float().view(len(logits), len(self.annotators_), len(self.classes_))
        return torch.softmax(per_head, dim=-1).flatten(1)

    def predict_proba(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        return item_probabilities(self.head_proba(texts, **kwargs))

    def save(self, folder: str | os.PathLike[str]) -> Path:
        folder = super().save(folder)
        meta = json.loads((folder / CLASSES_FILE).read_text())
        (folder / CLASSES_FILE).write_text(json.dumps({**meta, "annotators": self.annotators_}))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, device: str | None = None) -> AnnotatorHeadsClassifier:
        clf = super().load(folder, device=device)
        annotators = json.loads((Path(folder) / CLASSES_FILE).read_text()).get("annotators")
        if not annotators:
            raise SynthloopError(f"{folder} is not a saved annotator-heads classifier (no annotators in {CLASSES_FILE})")
        clf.annotators = clf.annotators_ = list(annotators)
        return clf
