"""Agreement: how much annotators agree on each item (instance level) and on the task (task level).

Pure functions over annotations in long form (one row per item × annotator, columns ``item_id``,
``annotator``, ``label``) or over the wide *items × annotators* matrix built from it once.
Definitions are in DESIGN.md: ``a_i = max_label count_i(label) / n_i`` for items with ``n_i ≥ 2`` labels.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

INSTANCE_COLUMNS = ("n_labels", "majority_label", "instance_agreement", "tie", "votes")


def vote_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """Votes per item and label: an *items × labels* count matrix (index ``item_id``)."""
    if annotations.empty:
        return pd.DataFrame(index=pd.Index([], name="item_id"))
    return pd.crosstab(annotations["item_id"], annotations["label"]).rename_axis(index="item_id", columns=None)


def instance_agreement(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per item: ``n_labels``, ``majority_label``, ``instance_agreement`` (``a_i``), ``tie``, ``votes``.

    Items with one label get ``n_labels = 1`` and NaN agreement (excluded from agreement, still listed).
    On a tie, ``tie`` is True and ``majority_label`` is None: ties are reported, never broken silently.
    ``votes`` is a JSON object ``{label: count}`` in descending count order.
    """
    counts = vote_counts(annotations)
    if counts.empty:
        return pd.DataFrame(columns=list(INSTANCE_COLUMNS), index=pd.Index([], name="item_id"))
    matrix = counts.to_numpy()
    n_labels = matrix.sum(axis=1)
    top = matrix.max(axis=1)
    n_top = (matrix == top[:, None]).sum(axis=1)
    tie = n_top > 1
    labels = counts.columns.to_numpy()
    majority = np.where(tie, None, labels[matrix.argmax(axis=1)])
    agreement = np.where(n_labels >= 2, top / n_labels, np.nan)
    order = np.argsort(-matrix, axis=1, kind="stable")
    votes = [
        json.dumps({str(labels[j]): int(row[j]) for j in row_order if row[j] > 0})
        for row, row_order in zip(matrix, order, strict=True)
    ]
    return pd.DataFrame(
        {"n_labels": n_labels, "majority_label": majority, "instance_agreement": agreement, "tie": tie,
         "votes": votes},
        index=counts.index,
    )
