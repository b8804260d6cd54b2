"""Agreement: how much annotators agree on each item (instance level) and on the task (task level).

Pure functions over annotations in long form (one row per item × annotator, columns ``item_id``,
``annotator``, ``label``) or over the wide *items × annotators* matrix built from it once.
Definitions are in DESIGN.md: ``a_i = max_label count_i(label) / n_i`` for items with ``n_i ≥ 2`` labels.

Everything task-level is computed from one encoding of the long frame (:class:`CodedAnnotations`: integer
codes per row and the *items × labels* vote-count matrix), so a million annotations cost a few array passes,
not a Python loop per item:

- Krippendorff's alpha (nominal) comes from the ``krippendorff`` package on the vote-count matrix; its
  bootstrap confidence interval resamples items. Nominal alpha depends on an item only through its vote-count
  row, so a resample of ``N`` items is a multinomial draw over the distinct rows ("patterns"); each bootstrap
  replicate is then a weighted sum over a few hundred patterns instead of a pass over every item.
- Per-annotator agreement is leave-one-out: each label is compared with the majority of the *other* labels of
  the same item (the item's vote counts minus that label).
- Model-based aggregation (Dawid–Skene) gives a posterior label per item and a quality per annotator. The EM
  runs on a sparse incidence matrix; it reproduces crowd-kit's ``DawidSkene`` (the tests compare them) at a
  fraction of its time.

Items with fewer than two labels carry no agreement information: they are excluded from every agreement figure
and counted (``n_items_excluded``), never dropped silently.
"""


from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.errors import SynthloopError
from core.vocab import LLM_ANNOTATOR_PREFIX

INSTANCE_COLUMNS = ("n_labels", "majority_label", "instance_agreement", "tie", "votes")

AlphaBand = Literal["reliable", "tentative", "low", "undefined"]
# Krippendorff (2004, §12.2.3): rely on alpha ≥ .800; draw tentative conclusions at .667 ≤ alpha < .800.
RELIABLE_ALPHA = 0.800
TENTATIVE_ALPHA = 0.667
BAND_TEXT: dict[str, str] = {
    "reliable": "reliable (alpha ≥ 0.800, Krippendorff 2004)",
    "tentative": "tentative (0.667 ≤ alpha < 0.800): draw only tentative conclusions",
    "low": "low (alpha < 0.667): the labels are not reliable as a single truth; the task is subjective or unclear",
    "undefined": "undefined: too few items with two or more labels, or every label is the same",
}

# Annotators whose name starts with this are machine annotators; label fidelity uses human labels only.


# ---------------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class CodedAnnotations:
    """The long annotation frame encoded once.

    ``item_ids`` (N,), ``annotators`` (A,), ``labels`` (L,) are the sorted distinct values; ``item_code``,
    ``annotator_code``, ``label_code`` (R,) index them per annotation row; ``counts`` (N, L) holds the votes
    per item and label.
    """

    item_ids: np.ndarray
    annotators: np.ndarray
    labels: np.ndarray
    item_code: np.ndarray
    annotator_code: np.ndarray
    label_code: np.ndarray
    counts: np.ndarray

    @property
    def n_labels(self) -> np.ndarray:
        """(N,) labels per item."""
        return self.counts.sum(axis=1)


def encode(annotations: pd.DataFrame, *, labels: list[str] | None = None) -> CodedAnnotations:
    """Encode the long frame (``item_id``, ``annotator``, ``label``); rows with no label are ignored.

    ``labels`` fixes the label set and order (e.g. the project's labels, so that a label nobody used still
    appears); by default the sorted labels present. One label per (item, annotator) is required.
    """
    missing = {"item_id", "annotator", "label"} - set(annotations.columns)
    if missing:
        raise SynthloopError(f"annotations need the columns item_id, annotator, label; missing {sorted(missing)}")
    frame = annotations[annotations["label"].notna()]
    item_code, item_ids = pd.factorize(frame["item_id"], sort=True)
    annotator_code, annotators = pd.factorize(frame["annotator"].astype(str), sort=True)
    label_values = frame["label"].astype(str)
    if labels is None:
        label_code, label_index = pd.factorize(label_values, sort=True)
        label_names = np.asarray(label_index, dtype=object)
    else:
        label_names = np.asarray(list(labels), dtype=object)
        label_code = pd.Index(label_names).get_indexer(label_values)
        if (label_code < 0).any():
            unknown = sorted(set(label_values[label_code < 0]))
            raise SynthloopError(f"annotations use label {unknown[0]!r}, which is not one of {list(labels)}")
    n_items, n_annotators, n_label_values = len(item_ids), len(annotators), len(label_names)
    pair = item_code.astype(np.int64) * max(n_annotators, 1) + annotator_code
    if len(pair) and pd.Series(pair).duplicated().any():
        first = int(np.flatnonzero(pd.Series(pair).duplicated().to_numpy())[0])
        raise SynthloopError(
            f"annotator {annotators[annotator_code[first]]!r} labelled item {item_ids[item_code[first]]!r} twice:"
            " keep one label per item and annotator"
        )
    flat = item_code.astype(np.int64) * n_label_values + label_code
    counts = np.bincount(flat, minlength=n_items * n_label_values).reshape(n_items, n_label_values)
    return CodedAnnotations(
        item_ids=np.asarray(item_ids), annotators=np.asarray(annotators, dtype=object), labels=label_names,
        item_code=item_code, annotator_code=annotator_code, label_code=np.asarray(label_code), counts=counts,
    )


def label_matrix(annotations: pd.DataFrame) -> pd.DataFrame:
    """The wide *items × annotators* matrix of label names (index ``item_id``, NaN = not labelled)."""
    coded = encode(annotations)
    matrix = np.full((len(coded.item_ids), len(coded.annotators)), np.nan, dtype=object)
    matrix[coded.item_code, coded.annotator_code] = coded.labels[coded.label_code]
    return pd.DataFrame(matrix, index=pd.Index(coded.item_ids, name="item_id"),
                        columns=pd.Index(coded.annotators, name="annotator"))


def matrix_to_long(labels_by_annotator: pd.DataFrame) -> pd.DataFrame:
    """Inverse of :func:`label_matrix`: a wide frame (index = item id, a column per annotator) to long form."""
    long = labels_by_annotator.rename_axis(index="item_id", columns="annotator").stack(future_stack=True)
    long = long[long.notna()].rename("label").reset_index()
    return long[["item_id", "annotator", "label"]]


# ------------------------------------------------------------------------------------- instance level


def vote_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """Votes per item and label: an *items × labels* count matrix (index ``item_id``, labels sorted)."""
    if annotations.empty:
        return pd.DataFrame(index=pd.Index([], name="item_id"))
    coded = encode(annotations)
    return pd.DataFrame(coded.counts, index=pd.Index(coded.item_ids, name="item_id"), columns=list(coded.labels))


def instance_arrays(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From (N, L) vote counts: ``n_labels``, ``top`` (count of the most frequent label), ``tie``,
    ``majority_code`` (-1 on a tie) and ``agreement`` (NaN when ``n_labels < 2``)."""
    n_labels = counts.sum(axis=1)
    top = counts.max(axis=1) if counts.shape[1] else np.zeros(len(counts), dtype=np.int64)
    tie = (counts == top[:, None]).sum(axis=1) > 1
    majority_code = np.where(tie, -1, counts.argmax(axis=1) if counts.shape[1] else -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n_labels >= 2, top / np.maximum(n_labels, 1), np.nan)
    return n_labels, top, tie, majority_code, agreement


def instance_agreement(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per item: ``n_labels``, ``majority_label``, ``instance_agreement`` (``a_i``), ``tie``, ``votes``.

    Items with one label get ``n_labels = 1`` and NaN agreement (excluded from agreement, still listed).
    On a tie, ``tie`` is True and ``majority_label`` is None: ties are reported, never broken silently.
    ``votes`` is a JSON object ``{label: count}`` in descending count order.
    """
    if annotations.empty:
        return pd.DataFrame(columns=list(INSTANCE_COLUMNS), index=pd.Index([], name="item_id"))
    coded = encode(annotations)
    return _instance_frame(coded, with_votes=True)


def _instance_frame(coded: CodedAnnotations, *, with_votes: bool) -> pd.DataFrame:
    counts = coded.counts
    n_labels, _top, tie, majority_code, agreement = instance_arrays(counts)
    labels = coded.labels
    majority = np.where(tie, None, labels[np.maximum(majority_code, 0)])
    frame = pd.DataFrame(
        {"n_labels": n_labels, "majority_label": majority, "instance_agreement": agreement, "tie": tie},
        index=pd.Index(coded.item_ids, name="item_id"),
    )
    if with_votes:
        # Many items share a vote pattern: write each distinct pattern's JSON once.
        patterns, inverse = _distinct_rows(counts, inverse=True)
        order = np.argsort(-patterns, axis=1, kind="stable")
        texts = np.array([
            json.dumps({str(labels[j]): int(row[j]) for j in row_order if row[j] > 0})
            for row, row_order in zip(patterns, order, strict=True)
        ], dtype=object)
        frame["votes"] = texts[inverse] if len(counts) else []
    return frame


# ---------------------------------------------------------------------------------------- task level


def alpha_band(alpha: float | None) -> AlphaBand:
    """Krippendorff's reading of alpha: ``reliable`` ≥ .800, ``tentative`` ≥ .667, else ``low``."""
    if alpha is None or not math.isfinite(alpha):
        return "undefined"
    if alpha >= RELIABLE_ALPHA:
        return "reliable"
    if alpha >= TENTATIVE_ALPHA:
        return "tentative"
    return "low"


def _pairable(counts: np.ndarray) -> np.ndarray:
    """Rows (items) with at least two labels: the only ones that carry agreement information."""
    return counts[counts.sum(axis=1) >= 2]


def krippendorff_alpha(counts: np.ndarray) -> float | None:
    """Nominal Krippendorff's alpha from an (N, L) vote-count matrix, via the ``krippendorff`` package.

    Items with fewer than two labels are left out. None when alpha is undefined (no pairable item, or a single
    label value in use so that no disagreement is possible at all).
    """
    import krippendorff

    pairable = _pairable(np.asarray(counts))
    if len(pairable) == 0 or (pairable.sum(axis=0) > 0).sum() < 2:
        return None
    return float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


def _alpha_from_sums(n_c: np.ndarray, sum_o_cc: np.ndarray) -> np.ndarray:
    """Nominal alpha from its sufficient statistics, for a batch of (weighted) samples.

    ``n_c`` (B, L): pairable values per label; ``sum_o_cc`` (B,): the diagonal of the coincidence matrix,
    ``Σ_u (Σ_c n_uc² − m_u) / (m_u − 1)``. alpha = 1 − (n − 1)(n − Σ_c o_cc) / (n² − Σ_c n_c²).
    """
    n = n_c.sum(axis=1)
    expected = n**2 - (n_c**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1) * (n - sum_o_cc) / expected
    return np.where(expected > 0, alpha, np.nan)


def alpha_sufficient_statistics(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pairable item: its vote counts (P, L) and its coincidence diagonal sum (P,). See :func:`_alpha_from_sums`."""
    pairable = _pairable(np.asarray(counts)).astype(np.float64)
    m = pairable.sum(axis=1)
    diagonal = ((pairable**2).sum(axis=1) - m) / (m - 1)
    return pairable, diagonal


def _distinct_rows(counts: np.ndarray, *, inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a non-negative integer matrix, and how often each occurs (or, with ``inverse``,
    which distinct row each row is).

    Rows are packed into one integer (mixed radix) when that fits in 62 bits: a 1-D unique is many times
    faster than ``np.unique(axis=0)``, which sorts row views.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if len(counts) == 0:
        return counts, np.zeros(0, dtype=np.int64)
    base = int(counts.max()) + 1
    if counts.shape[1] * math.log2(max(base, 2)) < 62:
        weights = base ** np.arange(counts.shape[1], dtype=np.int64)
        _keys, first, where, frequency = np.unique(counts @ weights, return_index=True, return_inverse=True,
                                                   return_counts=True)
        return counts[first], (where.ravel() if inverse else frequency)
    patterns, where, frequency = np.unique(counts, axis=0, return_inverse=True, return_counts=True)
    return patterns, (where.ravel() if inverse else frequency)


def bootstrap_alpha_ci(
    counts: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of nominal alpha, resampling items (with ≥ 2 labels) with replacement.

    Exact for the ordinary bootstrap: items with equal vote-count rows are interchangeable, so a resample is
    a multinomial draw of ``N`` over the distinct rows, weighted by how often each occurs. Replicates where
    alpha is undefined are dropped. ``(None, None)`` when there are fewer than two pairable items.
    """
    if not 0 < confidence < 1:
        raise SynthloopError(f"confidence {confidence!r} must lie strictly between 0 and 1, e.g. 0.95")
    if n_boot < 1:
        raise SynthloopError(f"n_boot {n_boot!r} must be at least 1 (e.g. 1000)")
    pairable = _pairable(np.asarray(counts))
    if len(pairable) < 2:
        return None, None
    patterns, frequency = _distinct_rows(pairable)
    pattern_counts, pattern_diagonal = alpha_sufficient_statistics(patterns)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(pairable), frequency / frequency.sum(), size=n_boot).astype(np.float64)
    alphas = _alpha_from_sums(weights @ pattern_counts, weights @ pattern_diagonal)
    alphas = alphas[np.isfinite(alphas)]
    if len(alphas) == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(alphas, [tail, 100 - tail])
    return float(low), float(high)


def per_annotator_agreement(coded: CodedAnnotations) -> pd.DataFrame:
    """Leave-one-out agreement of each annotator with the majority of the others (index ``annotator``).

    For each of an annotator's labels on an item with at least one other label, the other labels' votes are
    the item's votes minus this label. The label scores 1 when it is the others' unique majority, ``1/t`` when
    it is one of ``t`` labels tied for the others' majority (the chance that a random tie-break agrees), else 0.
    Columns: ``n`` (labels compared), ``n_labels`` (all labels given), ``agreement_with_others`` (mean score,
    NaN when ``n = 0``).
    """
    n_annotators = len(coded.annotators)
    counts = coded.counts
    if counts.size == 0:
        return pd.DataFrame({"n": [], "n_labels": [], "agreement_with_others": []},
                            index=pd.Index([], name="annotator"))
    # score_if[i, l]: the score of a label l given on item i. One (N, L) table, then one gather per annotation.
    score_if = np.zeros(counts.shape, dtype=np.float64)
    for label in range(counts.shape[1]):
        others = counts.copy()
        others[:, label] -= 1
        top = others.max(axis=1)
        n_tied = (others == top[:, None]).sum(axis=1)
        score_if[:, label] = np.where(others[:, label] == top, 1.0 / n_tied, 0.0)
    compared = (counts.sum(axis=1) >= 2)[coded.item_code]
    score = np.where(compared, score_if[coded.item_code, coded.label_code], 0.0)
    n = np.bincount(coded.annotator_code, weights=compared, minlength=n_annotators)
    total = np.bincount(coded.annotator_code, weights=score, minlength=n_annotators)
    given = np.bincount(coded.annotator_code, minlength=n_annotators)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return pd.DataFrame(
        {"n": n.astype(int), "n_labels": given.astype(int), "agreement_with_others": agreement},
        index=pd.Index(coded.annotators, name="annotator"),
    )


def per_label_stats(coded: CodedAnnotations) -> pd.DataFrame:
    """Per label (index ``label``): ``n_votes``, ``share_of_votes``, ``n_majority`` (items with ≥ 2 labels
    whose unique majority it is), ``mean_agreement_when_majority`` and ``specific_agreement``.

    Specific agreement is ``o_cc / n_c`` from Krippendorff's coincidence matrix over items with ≥ 2 labels:
    the chance that, when one annotator chose this label, another annotator of the same item chose it too.
    """
    counts = coded.counts
    n_labels, _top, _tie, majority_code, agreement = instance_arrays(counts)
    pairable = n_labels >= 2
    votes = counts.sum(axis=0)
    rows = counts[pairable].astype(np.float64)
    m = rows.sum(axis=1, keepdims=True)
    o_cc = (rows * (rows - 1) / np.maximum(m - 1, 1)).sum(axis=0)
    n_c = rows.sum(axis=0)
    n_majority = np.bincount(majority_code[pairable & (majority_code >= 0)], minlength=len(coded.labels))
    agreement_sum = np.bincount(majority_code[pairable & (majority_code >= 0)],
                                weights=agreement[pairable & (majority_code >= 0)], minlength=len(coded.labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "n_votes": votes.astype(int),
                "share_of_votes": votes / max(votes.sum(), 1),
                "n_majority": n_majority.astype(int),
                "mean_agreement_when_majority": np.where(n_majority > 0, agreement_sum / np.maximum(n_majority, 1),
                                                         np.nan),
                "specific_agreement": np.where(n_c > 0, o_cc / np.maximum(n_c, 1), np.nan),
            },
            index=pd.Index(coded.labels, name="label"),
        )


def reaches(values: pd.Series, threshold: float) -> pd.Series:
    """Which ``values`` (agreements, shares) are at or above ``threshold``; an unknown value (NaN) never is. The
    tolerance keeps 2/3 ≥ 0.6667-style thresholds typed on a page from failing on the last digit."""
    return values.fillna(-1.0) >= threshold - 1e-9


VERDICT_COLUMNS = ["intended", "n_labels", "majority_label", "instance_agreement", "tie", "confirmed",
                   "contradicted"]


def human_verdicts(annotations: pd.DataFrame, intended: pd.Series, *, min_labels: int = 1) -> pd.DataFrame:
    """What people decided about synthetic items: per item of ``intended`` (item id → intended label) with at
    least ``min_labels`` human labels (annotators not named ``llm:…``), index ``item_id``: ``intended``,
    ``n_labels``, ``majority_label``, ``instance_agreement``, ``tie``, ``confirmed`` (the human majority is the
    intended label) and ``contradicted`` (a clear majority for another label). **A tie is neither.**"""
    intended = intended.dropna()
    human = annotations[~annotations["annotator"].astype(str).str.startswith(LLM_ANNOTATOR_PREFIX)]
    human = human[human["item_id"].isin(intended.index)]
    if human.empty:  # typed columns, so that a boolean mask of them selects rows (an object one selects columns)
        dtypes = {"intended": object, "n_labels": int, "majority_label": object, "instance_agreement": float,
                  "tie": bool, "confirmed": bool, "contradicted": bool}
        return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in VERDICT_COLUMNS},
                            index=pd.Index([], name="item_id"))
    per_item = _instance_frame(encode(human), with_votes=False)
    per_item = per_item[per_item["n_labels"] >= min_labels].copy()
    per_item["intended"] = intended.reindex(per_item.index).astype(str)
    clear = ~per_item["tie"].astype(bool)
    per_item["confirmed"] = clear & (per_item["majority_label"].astype(object) == per_item["intended"])
    per_item["contradicted"] = clear & (per_item["majority_label"].astype(object) != per_item["intended"])
    return per_item[VERDICT_COLUMNS]


def label_fidelity(
    annotations: pd.DataFrame, intended: pd.Series, *, min_labels: int = 1
) -> dict[str, Any]:
    """For synthetic items: the share whose human majority label equals the intended label.

    ``intended`` maps item id → intended label (``reference_label`` of synthetic items). Only human labels
    count (annotators not named ``llm:…``); items with fewer than ``min_labels`` human labels are left out and
    counted. **A tie for the majority counts as not equal** (the humans did not confirm the intended label).
    Returns ``fidelity`` (None without items), ``n_items``, ``n_match``, ``n_ties``, ``n_items_excluded``,
    ``rule`` and ``per_label`` (list of {label, n, n_match, fidelity}).
    """
    intended = intended.dropna()
    result: dict[str, Any] = {
        "fidelity": None, "n_items": 0, "n_match": 0, "n_ties": 0, "n_items_excluded": int(len(intended)),
        "rule": "share of synthetic items whose human majority label equals the intended label;"
                " a tie for the majority counts as not equal",
        "per_label": [],
    }
    per_item = human_verdicts(annotations, intended, min_labels=min_labels)
    if per_item.empty:
        return result
    match = per_item["confirmed"]
    per_label = (
        pd.DataFrame({"label": per_item["intended"], "match": match})
        .groupby("label")["match"].agg(["size", "sum"]).reset_index()
    )
    result.update(
        fidelity=float(match.mean()), n_items=int(len(per_item)), n_match=int(match.sum()),
        n_ties=int(per_item["tie"].sum()), n_items_excluded=int(len(intended) - len(per_item)),
        per_label=[{"label": str(r.label), "n": int(r.size), "n_match": int(r.sum),
                    "fidelity": float(r.sum / r.size)} for r in per_label.itertuples()],
    )
    return result




# ----------------------------------------------------------------------------------------- intra-annotator


@dataclass(frozen=True)
class IntraAnnotator:
    """Intra-annotator consistency over repeat pairs (DESIGN.md): ``same_label_share`` is the share of pairs
    whose two ratings agree; ``alpha`` is nominal Krippendorff's alpha with each pair as one unit of two values
    (None when undefined: a single label value in use)."""

    n_pairs: int
    n_annotators: int
    same_label_share: float
    alpha: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n_pairs": self.n_pairs, "n_annotators": self.n_annotators,
                "same_label_share": self.same_label_share, "alpha": self.alpha}


def intra_annotator_consistency(pairs: pd.DataFrame) -> IntraAnnotator | None:
    """Consistency of annotators with themselves from ``pairs`` (``annotator``, ``first_label``,
    ``second_label``: one row per pair of consecutive ratings of one item by one annotator); None without pairs."""
    if pairs.empty:
        return None
    first, second = pairs["first_label"].astype(str).to_numpy(), pairs["second_label"].astype(str).to_numpy()
    codes, _ = pd.factorize(np.concatenate([first, second]))
    n_pairs = len(pairs)
    counts = np.zeros((n_pairs, int(codes.max()) + 1), dtype=np.int64)  # (P, L): each row holds two votes
    np.add.at(counts, (np.tile(np.arange(n_pairs), 2), codes), 1)
    alpha = krippendorff_alpha(counts)
    return IntraAnnotator(
        n_pairs=n_pairs,
        n_annotators=int(pairs["annotator"].nunique()),
        same_label_share=float((first == second).mean()),
        alpha=None if alpha is None or not math.isfinite(alpha) else alpha,
    )
