"""The paper's comparison for one project, as one job: train on each data source, evaluate on the real test
split, sweep γ, measure diversity and similarity, and write a report folder.

The runs ("arms") are the paper's: real, zero-shot and few-shot synthetic data, the few real seeds alone, and
the seeds plus few-shot synthetic data. Before any training, :func:`check_ingredients` dry-runs the selection of
every arm's items, so a missing ingredient (no seeds, no synthetic data of a mode, no test split) is reported
at once — as what is missing, which runs it skips, and how to fix it — not discovered an hour in. The dry run
also decides what each row of Table 1 means: an arm with an empty training set (e.g. reference labels on data
imported as raw per-annotator labels only) is skipped, and an arm whose training items are exactly another
arm's (e.g. "seeds + few-shot" when the seeds have no label) is not trained again but marked identical to it.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils

from core import jobs as core_jobs
from core.analysis import service as analysis
from core.config import Config, setting
from core.data.items import item_table
from core.errors import SynthloopError
from core.projects import get_project
from core.vocab import LabelSource, Projection
from db import connection
from db import jobs as jobs_db
from db import seeds as seeds_db

if TYPE_CHECKING:
    from core.training.config import TrainConfig


@dataclass(frozen=True)
class Arm:
    """One training run of the study: a name (the row of Table 1) and the training sources."""

    name: str
    sources: tuple[str, ...]
    description: str


ARMS: tuple[Arm, ...] = (
    Arm("real", ("real",), "the real training split"),
    Arm("zero-shot", ("zero-shot",), "zero-shot synthetic data"),
    Arm("few-shot", ("few-shot",), "few-shot synthetic data"),
    Arm("seeds", ("seeds",), "the few-shot seed examples only"),
    Arm("seeds + few-shot", ("seeds", "few-shot"), "the seeds plus few-shot synthetic data"),
)
ARM_NAMES: tuple[str, ...] = tuple(arm.name for arm in ARMS)
# The real data trained once more with soft labels (each item's human vote distribution), beside the hard "real"
# run: the disagreement-aware comparison (issue 13) next to the paper's Table 1.
SOFT_RUN = "real (soft labels)"


@dataclass(frozen=True)
class StudyConfig(Config):
    """Settings of one study; training settings left out take the training defaults (``TrainConfig``)."""

    KIND = "study setting"

    out_dir: str = setting(help="the folder the report is written to")
    epochs: int = setting(3, "training epochs of every run")
    model: str = setting("embedded", "the classifier of every run")
    seed: int = setting(42, "seed of every run and of the analysis")
    label_source: LabelSource = setting("reference", "which label the runs train and test with")
    arms: tuple[str, ...] = setting(ARM_NAMES, "the training sources compared, as in the paper's Table 1")
    batch_size: int | None = setting(None, "training batch size (default: the training default)")
    max_length: int | None = setting(None, "tokens per text (default: the training default)")
    analysis_subsample: int | None = setting(None, "common set size of the diversity comparison")
    analysis_min_size: int = setting(analysis.AnalysisConfig.min_size,
                                     "sources with fewer items are left out of the diversity comparison")
    analysis_projection: Projection = setting("pca", "how the 2-D map of the report is drawn")
    soft_label_run: bool = setting(True, "also train the real data on its human vote distributions (soft labels)")

    def __post_init__(self) -> None:
        if not isinstance(self.out_dir, str) or not self.out_dir.strip():
            raise SynthloopError("the study needs an output folder: set {out_dir}", fields=("out_dir",))
        arms = tuple(self.arms.split(",")) if isinstance(self.arms, str) else tuple(self.arms)
        arms = tuple(dict.fromkeys(a.strip() for a in arms if a.strip()))
        object.__setattr__(self, "arms", arms)
        unknown = [a for a in arms if a not in ARM_NAMES]
        if unknown or not arms:
            raise SynthloopError(f"study run {unknown[0] if unknown else ''!r} is not known: use some of"
                                 f" {', '.join(ARM_NAMES)}")
        # Validate the training settings now, not after the first run has trained for an hour.
        self.train_config(ARMS[0])
        self.analysis_config()

    def analysis_config(self) -> analysis.AnalysisConfig:
        return analysis.AnalysisConfig(subsample=self.analysis_subsample, min_size=self.analysis_min_size,
                                       projection=self.analysis_projection)

    def train_config(self, arm: Arm) -> Any:
        from core.training.config import TrainConfig

        extra = {name: getattr(self, name) for name in ("batch_size", "max_length") if getattr(self, name)}
        return TrainConfig(sources=arm.sources, model=self.model, epochs=self.epochs, seed=self.seed,
                           label_source=self.label_source, **extra)  # type: ignore[arg-type]



@dataclass(frozen=True)
class Problem:
    """A missing ingredient: what is missing (``ingredient``), the runs it skips, and the message with the fix."""

    ingredient: str
    message: str
    skipped: tuple[str, ...] = ()
    blocking: bool = False


@dataclass(frozen=True)
class Ingredients:
    """What the study can run: ``runnable`` arms, ``skipped`` ones (name → why), ``identical`` ones (name → the
    earlier arm with exactly the same training items), and ``n_train``, the training-set size of every arm whose
    items were selected."""

    project: str
    counts: dict[str, int]
    runnable: tuple[str, ...]
    skipped: dict[str, str]
    problems: tuple[Problem, ...] = field(default_factory=tuple)
    identical: dict[str, str] = field(default_factory=dict)
    n_train: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the study can run (at least one arm, and a test split)."""
        return not any(p.blocking for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "counts": self.counts, "runnable": list(self.runnable),
                "skipped": self.skipped, "identical": self.identical, "n_train": self.n_train, "ok": self.ok,
                "problems": [{**asdict(p), "skipped": list(p.skipped)} for p in self.problems]}


def _ingredient_counts(db: sqlite_utils.Database, project_id: int) -> dict[str, int]:
    sources = analysis.source_table(db, project_id)
    real = sources[sources["source"] == "real"]
    test = item_table(db, project_id, source="real", split="test")
    return {
        "test": int(((real["split"] == "test") & real["label"].notna()).sum()),
        "test_with_agreement": int(test["instance_agreement"].notna().sum()),
        "real_train": int(((real["split"] == "train") & real["label"].notna()).sum()),
        "seeds": len(seeds_db.seed_item_ids(db, project_id)),
        "zero-shot": int((sources["group"] == "zero-shot").sum()),
        "few-shot": int((sources["group"] == "few-shot").sum()),
    }


def check_ingredients(db: sqlite_utils.Database, project_id: int,
                      config: StudyConfig | None = None) -> Ingredients:
    """What the study can run and what it must skip, with the fix for each missing ingredient.

    The counts give the exact messages; a dry run of each remaining arm's item selection (the same code the
    training uses) catches the rest — an empty training set, training items that all carry one label — and
    gives each arm's training items, so that an arm equal to an earlier one is marked identical, not trained.
    """
    from core.training.data import select_items

    config = config or StudyConfig(out_dir="report")
    project = get_project(db, project_id)
    name = shlex.quote(project.name)
    counts = _ingredient_counts(db, project.id)
    wanted = [arm for arm in ARMS if arm.name in config.arms]
    problems: list[Problem] = []
    if counts["test"] == 0:
        problems.append(Problem(
            "test split",
            f"no test split: project {project.name!r} has no labelled real items with split 'test', so no run can be"
            " evaluated and the study cannot start — import labelled real items into the test split (or with a"
            " split column), then run the study again",
            tuple(arm.name for arm in wanted), blocking=True))
    missing = [
        ("real_train", "real", "no labelled real training items",
         "import real items into the train split with a label column"),
        ("zero-shot", "zero-shot", "no zero-shot synthetic data",
         f"generate some with `python -m core generate {name} --mode zero-shot --per-label N`"),
        ("few-shot", "few-shot", "no few-shot synthetic data",
         f"generate some with `python -m core generate {name} --mode few-shot --per-label N`"),
        ("seeds", "seeds", "no seeds",
         f"pick seed examples on the Seeds page or run `python -m core seeds sample {name} --per-label N`"),
    ]
    lacking = [(source, what, fix) for count_key, source, what, fix in missing if not counts[count_key]]
    skipped: dict[str, str] = {}
    failed_dry_runs: list[Problem] = []
    train_items: dict[str, frozenset[tuple[int, str]]] = {}
    for arm in wanted:
        missing_here = [what for source, what, _ in lacking if source in arm.sources]
        if len(missing_here) == len(arm.sources):
            skipped[arm.name] = missing_here[0]
        elif counts["test"]:
            try:
                selection = select_items(db, project.id, config.train_config(arm))
            except SynthloopError as exc:
                skipped[arm.name] = str(exc)
                failed_dry_runs.append(Problem(arm.name, f"the run {arm.name!r} will be skipped: {exc}",
                                               (arm.name,)))
            else:
                train_items[arm.name] = frozenset(zip(selection.train.item_ids, selection.train.labels,
                                                      strict=True))
    identical = _identical_arms(train_items)
    for source, what, fix in lacking:
        arms = [arm.name for arm in wanted if source in arm.sources]
        if not arms:
            continue
        gone = [a for a in arms if a in skipped]
        partial = [a for a in arms if a not in skipped and a not in identical]
        consequences = []
        if gone:
            consequences.append(f"the run{'s' if len(gone) > 1 else ''} {' and '.join(map(repr, gone))} will be"
                                " skipped")
        if partial:
            consequences.append(f"the run{'s' if len(partial) > 1 else ''} {' and '.join(map(repr, partial))}"
                                " will train on its other data only")
        problems.append(Problem(source, f"{what}: {'; '.join(consequences)} — {fix}" if consequences
                                else f"{what} — {fix}", tuple(gone)))
    problems.extend(failed_dry_runs)
    for name, other in identical.items():
        problems.append(Problem(
            name, f"the run {name!r} would train on exactly the training items of {other!r}"
                  f" ({len(train_items[name])} items): it is not trained again, and the report marks it as"
                  f" identical to {other!r}", (name,)))
    if counts["test"] and not counts["test_with_agreement"]:
        problems.append(Problem(
            "agreement",
            "no test item has an instance agreement: every run is still trained and scored, but Figure 2 (accuracy"
            " against γ) will be empty — collect two or more labels per test item on the Annotate page, or import"
            " a published agreement column"))
    runnable = tuple(name for name in train_items if name not in identical)
    if counts["test"] and not runnable:
        problems.append(Problem("training data", "nothing to train: every run of the study would be skipped — add"
                                " the missing ingredients listed above", (), blocking=True))
    return Ingredients(project=project.name, counts=counts, runnable=runnable, skipped=skipped,
                       problems=tuple(problems), identical=identical,
                       n_train={name: len(items) for name, items in train_items.items()})


def _identical_arms(train_items: dict[str, frozenset[tuple[int, str]]]) -> dict[str, str]:
    """Each arm whose training items (id and label) equal an earlier arm's, mapped to that earlier arm."""
    first: dict[frozenset[tuple[int, str]], str] = {}
    identical: dict[str, str] = {}
    for name, items in train_items.items():
        if items in first:
            identical[name] = first[items]
        else:
            first[items] = name
    return identical


def _task_subjectivity(db: sqlite_utils.Database, project_id: int) -> dict[str, Any]:
    """Mean instance agreement of the real test items with a known agreement (the paper's subjectivity lens)."""
    table = item_table(db, project_id, source="real", split="test")
    agreement = table["instance_agreement"].dropna().astype(float)
    return {"test_items_with_agreement": len(agreement),
            "mean_test_instance_agreement": float(agreement.mean()) if len(agreement) else None}


RUN_KEYS = ("run_id", "accuracy", "macro_f1", "n_train", "n_test", "per_class", "confusion_matrix", "labels",
            "sweep", "sweep_r2", "sweep_spearman_rho", "sweep_slope", "sweep_intercept", "sweep_fit_meaningful",
            "sweep_fit_note", "soft_metrics", "history", "seconds", "device", "config", "zip_path")


def _soft_run_skipped(db: sqlite_utils.Database, project_id: int, config: Any) -> str | None:
    """Why the soft-label run of the real data would teach nothing new (None when it would): when every
    training item's soft target is its one hard label, the soft run is the hard run again."""
    from core.training.data import select_items

    selection = select_items(db, project_id, config)
    column = {label: j for j, label in enumerate(selection.labels)}
    one_hot = np.eye(len(selection.labels))[[column[label] for label in selection.train.labels]]
    if not np.array_equal(selection.train_targets, one_hot):
        return None
    return ("no real training item has disagreeing human votes, so its soft labels equal its hard labels and the"
            " soft-label run would repeat the run 'real'")


def run_study(
    db_path: str,
    project_id: int,
    config: StudyConfig,
    *,
    progress: analysis.ProgressFn | None = None,
    job_id: int | None = None,
) -> dict[str, Any]:
    """Run the whole study and write its report; returns the study's result (also saved as ``study.json``).

    ``progress(done, total, message)`` returning True stops before the next step (``cancelled: True``). With
    ``job_id`` each training run also writes its step progress to that job and stops when it is cancelled.
    """
    from core.analysis import report
    from core.training.run import get_run, run_training

    started = time.perf_counter()
    with connection.open_db(db_path) as db:
        project = get_project(db, project_id)
        ingredients = check_ingredients(db, project.id, config)
        subjectivity = _task_subjectivity(db, project.id)
    if not ingredients.ok:
        raise SynthloopError("; ".join(p.message for p in ingredients.problems if p.blocking))
    soft_config = config.train_config(ARMS[0]).replace(objective="soft")
    soft_planned = config.soft_label_run and "real" in ingredients.runnable
    steps = len(ingredients.runnable) + 2 + int(soft_planned)
    done = 0

    def step(message: str) -> bool:
        print(f"study: {message}", file=sys.stderr, flush=True)
        return bool(progress and progress(done, steps, message))

    result: dict[str, Any] = {"project_id": project.id, "project": project.name, "config": config.to_dict(),
                              "ingredients": ingredients.to_dict(), "subjectivity": subjectivity, "runs": {},
                              "failed": {}, "skipped": dict(ingredients.skipped),
                              "identical": dict(ingredients.identical)}
    def train(name: str, train_config: TrainConfig) -> bool:
        """One run of the study into ``result``; True when the user cancelled it."""
        try:
            outcome = run_training(db_path, project.id, train_config, job_id=job_id)
        except SynthloopError as exc:
            result["failed"][name] = str(exc)
            return False
        if outcome.get("status") == "cancelled":
            return True
        if "history" not in outcome:
            with connection.open_db(db_path) as db:
                outcome = {**outcome, "history": get_run(db, outcome["run_id"]).get("history") or {}}
        result["runs"][name] = {key: outcome[key] for key in RUN_KEYS if key in outcome}
        return False

    cancelled = {"cancelled": True, "message": "study cancelled"}
    arms = {arm.name: arm for arm in ARMS}
    for name in ingredients.runnable:
        if step(f"training on {name} ({done + 1}/{len(ingredients.runnable)})") \
                or train(name, config.train_config(arms[name])):
            return {**result, **cancelled}
        done += 1
    if soft_planned and "real" in result["runs"]:
        with connection.open_db(db_path) as db:
            why = _soft_run_skipped(db, project.id, soft_config)
        if why:
            result["soft_skipped"] = why
        elif step(f"training on {SOFT_RUN}") or train(SOFT_RUN, soft_config):
            return {**result, **cancelled}
        done += 1
    if not result["runs"]:
        raise SynthloopError("every training run of the study failed: "
                             + "; ".join(f"{k}: {v}" for k, v in result["failed"].items()))
    if step("diversity and similarity"):
        return {**result, "cancelled": True, "message": "study cancelled"}
    def analysis_progress(_done: int, _total: int, message: str) -> bool:
        # Keeps the job's heartbeat fresh while a large project is embedded (a silent job is taken for dead).
        return bool(progress and progress(done, steps, f"diversity and similarity: {message}"))

    with connection.open_db(db_path) as db:
        result["analysis"] = analysis.analyse_project(db, project.id, config.analysis_config(),
                                                      progress=analysis_progress)
    if result["analysis"].get("cancelled"):
        return {**result, "cancelled": True, "message": "study cancelled"}
    done += 1
    step("writing the report")
    result["seconds"] = round(time.perf_counter() - started, 3)
    files = report.write_report(Path(config.out_dir), result)
    result["report"] = {key: str(path) for key, path in files.items()}
    result["message"] = _summary(result)
    report.save_json(Path(config.out_dir), result)
    # The job row keeps a light copy: per-step losses (thousands per run) live in the report's study.json.
    light = {**result, "runs": {name: {**run, "history": {k: v for k, v in (run.get("history") or {}).items()
                                                         if k != "steps"}}
                                for name, run in result["runs"].items()}}
    light["analysis"] = {k: v for k, v in result["analysis"].items() if k != "map"}
    return light


def _summary(result: dict[str, Any]) -> str:
    lines = [f"study of {result['project']!r}: report in {result['report']['index']}"]
    for name, run in result["runs"].items():
        lines.append(f"  {name:<17} accuracy {run['accuracy']:.3f}  macro-F1 {run['macro_f1']:.3f}"
                     f"  (n_train {run.get('n_train')}, run {run.get('run_id')})")
    for name, why in {**result["skipped"], **result["failed"]}.items():
        lines.append(f"  {name:<17} not run: {why}")
    for name, other in result["identical"].items():
        lines.append(f"  {name:<17} not run: identical to {other!r} (the same training items)")
    if result.get("soft_skipped"):
        lines.append(f"  {SOFT_RUN:<17} not run: {result['soft_skipped']}")
    lines.append(f"zip: {result['report']['zip']}")
    return "\n".join(lines)


# --- as a job ---------------------------------------------------------------------------------------------

# A study whose out_dir is this writes to its database's own reports folder (default_out_dir), named by job id.
AUTO_OUT_DIR = "auto"


def default_out_dir(db_path: str, project_id: int, job_id: int) -> str:
    """Where the page's studies go: ``<db file>.files/reports/project-<id>/study-<job id>`` (the database's own
    folder); a study records its folder, so one written by an older version is read where it was written."""
    return str(connection.files_dir(db_path, "reports", f"project-{project_id}", f"study-{job_id}"))


def start_study(db: sqlite_utils.Database, project_id: int, config: StudyConfig, *, launch_now: bool = True) -> int:
    """Check the ingredients, record a study job and start it. Refuses when the study cannot run at all, or
    while another study of the project is queued or running."""
    project = get_project(db, project_id)
    ingredients = check_ingredients(db, project.id, config)
    if not ingredients.ok:
        raise SynthloopError("; ".join(p.message for p in ingredients.problems if p.blocking))
    return core_jobs.start(db, kind="study", project_id=project.id, config=config.to_dict(),
                           total=len(ingredients.runnable) + 2, one_at_a_time=True, launch_now=launch_now)

def run_study_job(db_path: str, job_id: int) -> dict[str, Any]:
    """Job runner for kind ``study`` (registered in ``core.jobs.JOB_RUNNERS``)."""
    with connection.open_db(db_path) as db:
        job = core_jobs.get(db, job_id)
    data = dict(job["config"])
    if data.get("out_dir") in (None, "", AUTO_OUT_DIR):
        data["out_dir"] = default_out_dir(db_path, job["project_id"], job_id)
    config = StudyConfig.from_dict(data)

    def progress(done: int, total: int, message: str) -> bool:
        with connection.open_db(db_path) as db:
            return jobs_db.update_progress(db, job_id, done=done, total=total, message=message)

    return run_study(db_path, job["project_id"], config, progress=progress, job_id=job_id)


def run_study_foreground(db_path: str, project_id: int, config: StudyConfig) -> dict[str, Any]:
    """The CLI's path: the same job, run in this process (so the page lists it too)."""
    with connection.open_db(db_path) as db:
        job_id = start_study(db, project_id, config.replace(out_dir=str(Path(config.out_dir).resolve())),
                             launch_now=False)
    return core_jobs.run_foreground(db_path, job_id)


def latest_study_job(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    return core_jobs.latest(db, project_id, "study")


def latest_study(db: sqlite_utils.Database, project_id: int) -> dict[str, Any] | None:
    """The most recent finished study of the project whose report folder still exists, with its tables."""
    from core.analysis import report

    for job in jobs_db.list_jobs(db, project_id=project_id, kind="study", limit=20):
        if job["status"] != "done" or not job["result"].get("report"):
            continue
        index = Path(job["result"]["report"]["index"])
        if index.is_file():
            return {"job_id": job["id"], "finished_at": job["finished_at"], **job["result"],
                    "tables": report.read_tables(index.parent)}
    return None
