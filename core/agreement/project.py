"""A project's agreement read from the database: the report, the per-item table, final labels and the
adjudication queue as the Agreement page shows them.
"""


from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlite_utils

from core.agreement.dawid_skene import model_aggregate
from core.agreement.metrics import encode, krippendorff_alpha
from core.agreement.panel import PanelReport, panel_report
from core.agreement.report import AgreementReport, ReportConfig, agreement_report
from core.annotation.adjudication import adjudication_rows
from core.data.items import item_table
from core.projects import Project
from db import items as items_db


def _report_items(items: pd.DataFrame) -> pd.DataFrame:
    """The item columns the report uses; ``group`` is a synthetic item's generation mode (zero-shot/few-shot)."""
    out = items[["id", "source", "reference_label", "imported_agreement"]].copy()
    synthetic = items["source"] == "synthetic"
    out["group"] = None
    out.loc[synthetic, "group"] = items.loc[synthetic, "generation_mode"]
    return out


def _report_labels(project: Project, annotations: pd.DataFrame) -> list[str]:
    labels = list(project.label_names)
    return labels + sorted(set(annotations["label"].dropna().astype(str)) - set(labels))


def project_agreement(
    db: sqlite_utils.Database, project: Project, *, config: ReportConfig | None = None
) -> AgreementReport:
    """The agreement report of a project's accepted items (all annotators, LLM and imported ones included)."""
    items = _report_items(items_db.items_frame(db, project.id))
    annotations = items_db.annotation_labels_frame(db, project.id)
    return agreement_report(annotations, items, labels=_report_labels(project, annotations), config=config,
                            repeat_pairs=items_db.repeat_pairs_frame(db, project.id))


ITEMS_OUT_COLUMNS = ("item_id", "text", "n_labels", "majority_label", "instance_agreement", "tie")


def items_agreement(db: sqlite_utils.Database, project: Project) -> pd.DataFrame:
    """One row per item in DESIGN.md's ``--items-out`` shape: ``item_id`` (the imported id when there is one),
    ``text``, ``n_labels``, ``majority_label``, ``instance_agreement`` (imported where there are < 2 raw labels),
    ``tie``. The values are exact: the CSV writer (:mod:`core.data.tables`) neutralises formula cells."""
    table = item_table(db, project.id)
    item_id = table["external_id"].astype(object).where(table["external_id"].notna(), table["id"].astype(str))
    out = pd.DataFrame({
        "item_id": item_id,
        "text": table["text"],
        "n_labels": table["n_labels"].astype(int),
        "majority_label": table["majority_label"],
        "instance_agreement": table["instance_agreement"],
        "tie": table["tie"].astype(bool),
    })
    return out[list(ITEMS_OUT_COLUMNS)]


def final_labels(db: sqlite_utils.Database, project_id: int, *, model: bool = False) -> pd.DataFrame:
    """Labels for training and export, one row per accepted item (index ``item_id``).

    Columns: ``n_labels``, ``majority_label`` (None on a tie), ``tie``, ``instance_agreement`` (imported where
    raw labels are missing), ``adjudicated_label``, ``final_label`` = adjudicated label, else the majority label
    (None on an unresolved tie or without labels); with ``model=True`` also ``aggregate_label`` and
    ``aggregate_confidence`` from Dawid–Skene.
    """
    table = item_table(db, project_id).set_index("id").rename_axis("item_id")
    out = table[["n_labels", "majority_label", "tie", "instance_agreement", "adjudicated_label"]].copy()
    final = out["adjudicated_label"].astype(object)
    out["final_label"] = final.where(final.notna(), out["majority_label"].astype(object))
    out["final_label"] = out["final_label"].where(out["final_label"].notna(), None)
    if model:
        aggregate = model_aggregate(items_db.annotations_frame(db, project_id))
        out = out.join(aggregate, how="left")
    return out


# ------------------------------------------------------------------------------------------ exclusion


@dataclass(frozen=True)
class ExclusionEffect:
    """What excluding annotators did to the task's agreement (:mod:`core.annotation.quality`): alpha over the
    project's accepted items without them (the figure every report uses) and with them."""

    excluded: tuple[str, ...]
    n_annotations_excluded: int  # their labels on the project's accepted items
    alpha_without: float | None
    alpha_with: float | None

    def to_dict(self) -> dict:
        return {"excluded": list(self.excluded), "n_annotations_excluded": self.n_annotations_excluded,
                "krippendorff_alpha_without_excluded": self.alpha_without,
                "krippendorff_alpha_with_excluded": self.alpha_with}


def exclusion_effect(db: sqlite_utils.Database, project: Project) -> ExclusionEffect | None:
    """Alpha with and without the project's excluded annotators; None when nobody is excluded."""
    excluded = items_db.excluded_annotators(db, project.id)
    if not excluded:
        return None
    item_ids = items_db.items_frame(db, project.id)["id"]
    every = items_db.annotation_labels_frame(db, project.id, include_excluded=True)
    every = every[every["item_id"].isin(item_ids)]
    kept = every[~every["annotator"].isin(excluded)]
    labels = _report_labels(project, every)
    return ExclusionEffect(
        excluded=tuple(excluded), n_annotations_excluded=len(every) - len(kept),
        alpha_without=krippendorff_alpha(encode(kept, labels=labels).counts),
        alpha_with=krippendorff_alpha(encode(every, labels=labels).counts),
    )


# ------------------------------------------------------------------------------------------ the page view


@dataclass(frozen=True)
class AgreementView:
    """What the Agreement page shows, from one read of the project: the report, the items with their
    agreement (``item_table`` columns), and the adjudication queue."""

    report: AgreementReport
    items: pd.DataFrame
    queue: pd.DataFrame


def agreement_view(
    db: sqlite_utils.Database,
    project: Project,
    *,
    config: ReportConfig | None = None,
    include_adjudicated: bool = False,
) -> AgreementView:
    annotations = items_db.annotation_labels_frame(db, project.id)
    table = item_table(db, project.id, annotations=annotations)
    report = agreement_report(annotations, _report_items(table), labels=_report_labels(project, annotations),
                              config=config, repeat_pairs=items_db.repeat_pairs_frame(db, project.id))
    return AgreementView(report=report, items=table, queue=adjudication_rows(table, include_done=include_adjudicated))


# ------------------------------------------------------------------------------------------ the LLM panel


def project_panel(db: sqlite_utils.Database, project: Project) -> PanelReport:
    """The LLM panel (every ``llm:`` annotator) over the project's accepted items: how it rates the synthetic
    items against their intended labels, and its calibration against people."""
    items = items_db.items_frame(db, project.id)[["id", "source", "reference_label"]]
    annotations = items_db.annotation_labels_frame(db, project.id)
    return panel_report(annotations[annotations["item_id"].isin(items["id"])], items)
