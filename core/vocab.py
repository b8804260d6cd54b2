"""Every closed vocabulary of the product, defined once: a ``Literal`` type for type checkers and the tuple of
its values for validation, CLI choices and page widgets. Nothing else spells these lists out.

The database stores these values as plain strings; ``db/`` takes them as ``str`` (it may not import ``core``).
"""

from __future__ import annotations

from typing import Literal, get_args

# --- items
Source = Literal["real", "synthetic"]
SOURCES: tuple[Source, ...] = get_args(Source)

Split = Literal["train", "dev", "test", "pool"]
SPLITS: tuple[Split, ...] = get_args(Split)
DEFAULT_SPLIT: Split = "train"
HeldOutSplit = Literal["test", "dev"]  # splits a model is evaluated on
HELD_OUT_SPLITS: tuple[HeldOutSplit, ...] = get_args(HeldOutSplit)

# --- generation
Mode = Literal["zero-shot", "few-shot"]
MODES: tuple[Mode, ...] = get_args(Mode)

PromptForm = Literal["chat", "list"]
PROMPT_FORMS: tuple[PromptForm, ...] = get_args(PromptForm)

# How a generation call is grounded in the project's real texts (none, or retrieved by similarity).
Grounding = Literal["none", "retrieval"]
GROUNDINGS: tuple[Grounding, ...] = get_args(Grounding)

BackendName = Literal["embedded", "openai", "transformers"]
BACKENDS: tuple[BackendName, ...] = get_args(BackendName)

# Why a generated text was not kept (core.generation.parsing.screen; the first failing check wins, in this order).
# "echo": the text only repeats a label name, a label description or a sentence of the prompt's instruction.
RejectReason = Literal[
    "empty", "truncated", "refusal", "echo", "too_short", "too_long", "repetitive", "seed_copy", "duplicate",
    "near_duplicate", "target_reached",
]
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)

# Which items an LLM annotator labels (``synthetic``: the accepted synthetic items, a panel's default).
LLMSelection = Literal["pool", "unlabelled", "test", "all", "ids", "synthetic"]
LLM_SELECTIONS: tuple[LLMSelection, ...] = get_args(LLMSelection)

# --- training
DataSource = Literal["real", "zero-shot", "few-shot", "seeds"]  # the paper's training sources
DATA_SOURCES: tuple[DataSource, ...] = get_args(DataSource)

LabelSource = Literal["reference", "majority", "aggregate", "adjudicated"]
LABEL_SOURCES: tuple[LabelSource, ...] = get_args(LabelSource)

# What a run's loss compares the prediction with: the one label per item (``hard``) or the item's distribution over
# the labels (``soft``), taken from the human votes or from the Dawid–Skene posterior (``SoftSource``).
Objective = Literal["hard", "soft"]
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)

SoftSource = Literal["votes", "dawid-skene"]
SOFT_SOURCES: tuple[SoftSource, ...] = get_args(SoftSource)

# --- annotation
Strategy = Literal["closest", "least", "random", "disagreement"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

Role = Literal["admin", "researcher", "annotator"]
ROLES: tuple[Role, ...] = get_args(Role)

# Annotator names with these prefixes are not people: an LLM annotator (``llm:<model>``) and the annotators of
# raw labels that came in with an imported file (``import:<name>``).
LLM_ANNOTATOR_PREFIX = "llm:"
IMPORTED_ANNOTATOR_PREFIX = "import:"
# A deleted user's row and labels are renamed ``deleted:<id>:<name>`` (core.users.delete_user): a person, but no
# longer one who can log in, and never the same as a user added later under the same name.
DELETED_USER_PREFIX = "deleted:"

# --- crowd studies (core/annotation/crowd.py, quality.py)
# A crowd worker's username is ``<platform>:<platform worker id>`` (e.g. ``prolific:5f3…``): it has ':', so no
# account added by hand can take it.
CrowdPlatform = Literal["prolific", "mturk", "generic"]
CROWD_PLATFORMS: tuple[CrowdPlatform, ...] = get_args(CrowdPlatform)

# ``excluded`` is not stored on the worker: it is the project's exclusion of the annotator (any annotator).
WorkerStatus = Literal["working", "completed", "screened_out", "excluded"]
WORKER_STATUSES: tuple[WorkerStatus, ...] = get_args(WorkerStatus)

# A quality check: a gold item (a project item with a known label) or an attention check (an instruction as text).
CheckKind = Literal["gold", "attention"]
CHECK_KINDS: tuple[CheckKind, ...] = get_args(CheckKind)

# When a check was answered: before real items (qualification) or mixed among them.
CheckPhase = Literal["qualification", "main"]
CHECK_PHASES: tuple[CheckPhase, ...] = get_args(CheckPhase)

# --- background jobs
JobKind = Literal["generation", "llm_annotation", "training", "analysis", "study"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
ACTIVE_STATUSES: tuple[JobStatus, ...] = ("queued", "running")
FINISHED_STATUSES: tuple[JobStatus, ...] = ("done", "failed", "cancelled")

# --- files
ImportFormat = Literal["auto", "csv", "tsv", "jsonl", "parquet"]
IMPORT_FORMATS: tuple[ImportFormat, ...] = get_args(ImportFormat)

# Which rating an import keeps when a file has the same annotator rate the same item more than once.
RepeatedRatings = Literal["last", "first", "error"]
REPEATED_RATINGS: tuple[RepeatedRatings, ...] = get_args(RepeatedRatings)

ExportFormat = Literal["csv", "jsonl", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)

ExportView = Literal["aggregated", "raw"]
EXPORT_VIEWS: tuple[ExportView, ...] = get_args(ExportView)

# Formats that are a folder rather than one file, for export and import (the CLI: a page cannot upload a folder):
# hf, a Hugging Face ``datasets`` DatasetDict written with save_to_disk.
FolderFormat = Literal["hf"]
FOLDER_FORMATS: tuple[FolderFormat, ...] = get_args(FolderFormat)

# --- analysis
Projection = Literal["pca", "tsne"]
PROJECTIONS: tuple[Projection, ...] = get_args(Projection)
