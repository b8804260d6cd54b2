"""The agreement report: every task-level and instance-level figure of one set of annotations, with the
settings that produced it (:class:`ReportConfig`).
"""


from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.agreement.dawid_skene import dawid_skene, quality_frame
from core.agreement.metrics import (
    BAND_TEXT,
    AlphaBand,
    CodedAnnotations,
    alpha_band,
    bootstrap_alpha_ci,
    encode,
    instance_arrays,
    intra_annotator_consistency,
    krippendorff_alpha,
    label_fidelity,
    per_annotator_agreement,
    per_label_stats,
)
from core.config import Config, setting
from core.errors import SynthloopError
from core.vocab import SOURCES


@dataclass(frozen=True)
class ReportConfig(Config):
    """Settings of one agreement computation (stored beside its numbers)."""

    KIND = "agreement setting"

    n_boot: int = setting(1000, "bootstrap resamples (over items) of alpha's confidence interval")
    confidence: float = setting(0.95, "level of alpha's confidence interval")
    seed: int = setting(0, "seed of the bootstrap")
    model: bool = setting(True, "fit Dawid–Skene for per-annotator quality and aggregate labels")
    fidelity_min_labels: int = setting(1, "human labels a synthetic item needs to count in label fidelity")

    def __post_init__(self) -> None:
        if not isinstance(self.n_boot, int) or self.n_boot < 1:
            raise SynthloopError(f"n_boot {self.n_boot!r} must be a whole number ≥ 1 (e.g. 1000)")
        if not 0 < self.confidence < 1:
            raise SynthloopError(f"confidence {self.confidence!r} must lie strictly between 0 and 1, e.g. 0.95")
        if self.fidelity_min_labels < 1:
            raise SynthloopError(f"fidelity_min_labels {self.fidelity_min_labels!r} must be at least 1")



def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


@dataclass(frozen=True)
class TaskAgreement:
    """The task-level figures of one set of annotations (the whole project, or one source)."""

    krippendorff_alpha: float | None
    alpha_ci: tuple[float | None, float | None]
    band: AlphaBand
    mean_instance_agreement: float | None
    n_items: int
    n_items_excluded: int
    n_ties: int
    n_annotations: int
    n_annotators: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alpha_ci"] = list(self.alpha_ci)
        return data


def task_agreement(coded: CodedAnnotations, *, config: ReportConfig, n_unlabelled: int = 0) -> TaskAgreement:
    """Alpha with its bootstrap interval and band, mean ``a_i`` and counts for one coded set of annotations."""
    n_labels, _top, tie, _majority, agreement = instance_arrays(coded.counts)
    pairable = n_labels >= 2
    alpha = krippendorff_alpha(coded.counts)
    ci = bootstrap_alpha_ci(coded.counts, n_boot=config.n_boot, confidence=config.confidence, seed=config.seed)
    return TaskAgreement(
        krippendorff_alpha=_finite(alpha),
        alpha_ci=(_finite(ci[0]), _finite(ci[1])) if alpha is not None else (None, None),
        band=alpha_band(alpha),
        mean_instance_agreement=_finite(float(agreement[pairable].mean())) if pairable.any() else None,
        n_items=int(pairable.sum()),
        n_items_excluded=int((~pairable).sum()) + n_unlabelled,
        n_ties=int((tie & pairable).sum()),
        n_annotations=len(coded.item_code),
        n_annotators=len(coded.annotators),
    )


@dataclass(frozen=True)
class AgreementReport:
    """Instance- and task-level agreement of a project. ``to_dict()`` carries DESIGN.md's ``agreement --json``
    keys (``krippendorff_alpha``, ``alpha_ci``, ``mean_instance_agreement``, ``n_items``, ``n_annotations``,
    ``n_annotators``, ``per_annotator``) plus the extras documented on each field."""

    krippendorff_alpha: float | None
    alpha_ci: tuple[float | None, float | None]
    band: AlphaBand
    mean_instance_agreement: float | None  # over items with ≥ 2 labels, plus imported values for the rest
    mean_instance_agreement_labels: float | None  # over items with ≥ 2 raw labels only
    n_items: int  # items with ≥ 2 labels
    n_items_excluded: int  # items with < 2 labels (1 label, plus unlabelled items when an item frame is given)
    n_items_single_label: int
    n_items_unlabelled: int
    n_items_imported_agreement: int  # items without ≥ 2 labels whose agreement comes from the import
    n_ties: int
    n_annotations: int
    n_annotators: int
    per_annotator: tuple[dict[str, Any], ...]
    per_label: tuple[dict[str, Any], ...]
    by_source: dict[str, dict[str, Any]]
    label_fidelity: dict[str, Any] | None
    # Consistency of annotators with themselves over repeated ratings: ``{n_pairs, n_annotators,
    # same_label_share, alpha}``; None (JSON null, the key always present) when the project has no repeats.
    intra_annotator: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def band_text(self) -> str:
        return BAND_TEXT[self.band]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["alpha_ci"] = list(self.alpha_ci)
        data["per_annotator"] = [dict(row) for row in self.per_annotator]
        data["per_label"] = [dict(row) for row in self.per_label]
        data["band_text"] = self.band_text
        return data


def _records(frame: pd.DataFrame, index_name: str) -> tuple[dict[str, Any], ...]:
    """Rows as plain dicts (native ints and floats, NaN → None) for JSON."""
    out = []
    for record in frame.rename_axis(index_name).reset_index().to_dict("records"):
        clean: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, float | np.floating):
                clean[key] = _finite(float(value))
            elif isinstance(value, np.integer):
                clean[key] = int(value)
            else:
                clean[key] = value
        clean[index_name] = str(clean[index_name])
        out.append(clean)
    return tuple(out)


def agreement_report(
    annotations: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    labels: list[str] | None = None,
    config: ReportConfig | None = None,
    repeat_pairs: pd.DataFrame | None = None,
) -> AgreementReport:
    """Every agreement figure of a set of annotations.

    ``annotations``: long frame (``item_id``, ``annotator``, ``label``). ``items`` (optional): one row per item
    with ``id`` and optionally ``source`` (real|synthetic), ``group`` (e.g. zero-shot / few-shot),
    ``reference_label`` and ``imported_agreement``; annotations of items not in it are ignored, and its items
    without labels are counted as excluded. ``labels``: the project's label order. ``repeat_pairs``
    (``item_id``, ``annotator``, ``first_label``, ``second_label``): repeated ratings, for intra-annotator
    consistency (restricted to ``items`` like the annotations).
    """
    config = config or ReportConfig()
    if items is not None:
        annotations = annotations[annotations["item_id"].isin(items["id"])]
    coded = encode(annotations, labels=labels)
    n_labels, _top, _tie, _majority, agreement = instance_arrays(coded.counts)
    pairable = n_labels >= 2
    labelled_ids = pd.Index(coded.item_ids)
    n_unlabelled = int((~items["id"].isin(labelled_ids)).sum()) if items is not None else 0
    overall = task_agreement(coded, config=config, n_unlabelled=n_unlabelled)

    # Imported agreement stands in for items without two raw labels (DESIGN.md: --agreement-col).
    imported_count = 0
    mean_all = overall.mean_instance_agreement
    if items is not None and "imported_agreement" in items.columns:
        pairable_ids = set(coded.item_ids[pairable].tolist())
        imported = items.loc[items["imported_agreement"].notna() & ~items["id"].isin(pairable_ids),
                             "imported_agreement"].astype(float)
        imported_count = int(len(imported))
        values = np.concatenate([agreement[pairable], imported.to_numpy()])
        mean_all = _finite(float(values.mean())) if len(values) else None

    annotator_frame = per_annotator_agreement(coded)
    if config.model and overall.n_annotations:
        # Dawid–Skene works on the labels in use; re-encode only when the project has labels nobody used.
        used = coded if (coded.counts.sum(axis=0) > 0).all() else encode(annotations)
        annotator_frame = annotator_frame.join(quality_frame(dawid_skene(used)), how="left")
    per_annotator = tuple(
        {"annotator": r["annotator"], "n": r["n"], "agreement_with_others": r["agreement_with_others"],
         **{k: v for k, v in r.items() if k not in ("annotator", "n", "agreement_with_others")}}
        for r in _records(annotator_frame, "annotator")
    )

    by_source: dict[str, dict[str, Any]] = {}
    fidelity = None
    if items is not None:
        groups: list[tuple[str, pd.Series]] = []
        if "source" in items.columns:
            groups += [(str(s), items["source"] == s) for s in SOURCES if (items["source"] == s).any()]
        if "group" in items.columns:
            groups += [(str(g), items["group"] == g) for g in sorted(items["group"].dropna().unique())
                       if str(g) not in SOURCES]
        for name, mask in groups:
            ids = items.loc[mask, "id"]
            subset = annotations[annotations["item_id"].isin(ids)]
            sub_coded = encode(subset, labels=list(coded.labels))
            sub_unlabelled = int((~ids.isin(pd.Index(sub_coded.item_ids))).sum())
            by_source[name] = task_agreement(sub_coded, config=config, n_unlabelled=sub_unlabelled).to_dict()
        if {"source", "reference_label"} <= set(items.columns):
            synthetic = items[(items["source"] == "synthetic") & items["reference_label"].notna()]
            if len(synthetic):
                fidelity = label_fidelity(annotations, synthetic.set_index("id")["reference_label"],
                                          min_labels=config.fidelity_min_labels)

    return AgreementReport(
        krippendorff_alpha=overall.krippendorff_alpha,
        alpha_ci=overall.alpha_ci,
        band=overall.band,
        mean_instance_agreement=mean_all,
        mean_instance_agreement_labels=overall.mean_instance_agreement,
        n_items=overall.n_items,
        n_items_excluded=overall.n_items_excluded,
        n_items_single_label=int((n_labels == 1).sum()),
        n_items_unlabelled=n_unlabelled,
        n_items_imported_agreement=imported_count,
        n_ties=overall.n_ties,
        n_annotations=overall.n_annotations,
        n_annotators=overall.n_annotators,
        per_annotator=per_annotator,
        per_label=_records(per_label_stats(coded), "label"),
        by_source=by_source,
        label_fidelity=fidelity,
        intra_annotator=_intra_annotator(repeat_pairs, items),
        config=config.to_dict(),
    )


def _intra_annotator(repeat_pairs: pd.DataFrame | None, items: pd.DataFrame | None) -> dict[str, Any] | None:
    if repeat_pairs is None:
        return None
    if items is not None:
        repeat_pairs = repeat_pairs[repeat_pairs["item_id"].isin(items["id"])]
    result = intra_annotator_consistency(repeat_pairs)
    return None if result is None else result.to_dict()
