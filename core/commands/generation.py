"""``seeds``, ``generate`` and ``llm-annotate``: few-shot seeds, synthetic data generation (run in the foreground
with the same runner as the app's background jobs) and the LLM as an extra annotator."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from core.errors import SynthloopError
from core.generation import llm_annotator, seeds, service
from core.generation.config import read_attributes
from core.projects import get_project
from core.vocab import BACKENDS, GROUNDINGS, LLM_SELECTIONS, MODES, PROMPT_FORMS


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    seed = subparsers.add_parser("seeds", help="few-shot seed examples").add_subparsers(
        dest="seeds_command", required=True)
    add = seed.add_parser("add", parents=[common], help="pin items as seeds (imported ids or internal ids)")
    add.add_argument("project")
    add.add_argument("item_ids", nargs="+", metavar="ITEM_ID")
    add.add_argument("--note", default="")
    add.set_defaults(handler=_seeds_add)
    remove = seed.add_parser("remove", parents=[common], help="unpin seeds")
    remove.add_argument("project")
    remove.add_argument("item_ids", nargs="+", metavar="ITEM_ID")
    remove.set_defaults(handler=_seeds_remove)
    sample = seed.add_parser("sample", parents=[common], help="top up seeds to N per label (high agreement first)")
    sample.add_argument("project")
    sample.add_argument("--per-label", type=int, required=True)
    sample.add_argument("--seed", type=int, default=0, help="random seed for tie-breaking (default 0)")
    sample.add_argument("--examples-per-prompt", type=int, default=3,
                        help="warn for labels with fewer seeds than this (default 3)")
    sample.set_defaults(handler=_seeds_sample)
    lst = seed.add_parser("list", parents=[common], help="list the pinned seeds")
    lst.add_argument("project")
    lst.set_defaults(handler=_seeds_list)

    gen = subparsers.add_parser("generate", parents=[common], help="generate synthetic items (foreground)")
    gen.add_argument("project")
    gen.add_argument("--mode", choices=MODES)
    gen.add_argument("--per-label", type=int)
    gen.add_argument("--backend", choices=BACKENDS)
    gen.add_argument("--model")
    gen.add_argument("--base-url")
    gen.add_argument("--api-key-env", help="name of the environment variable holding the API key: OPENAI_API_KEY "
                                           "(default) or one listed in SYNTHLOOP_API_KEY_VARS")
    gen.add_argument("--concurrency", type=int)
    gen.add_argument("--temperature", type=float)
    gen.add_argument("--rpm", type=float, help="requests per minute limit")
    gen.add_argument("--labels", help="comma-separated subset of the project's labels")
    gen.add_argument("--style", help="what to write, e.g. 'movie review'")
    gen.add_argument("--word-limit", type=int)
    gen.add_argument("--examples-per-prompt", type=int, help="few-shot: seeds shown per prompt (k)")
    gen.add_argument("--diversity-period", type=int, help="zero-shot: diversity prompt every n outputs (0: never)")
    gen.add_argument("--prompt-form", choices=PROMPT_FORMS, help="few-shot: chat, or a numbered list to continue")
    gen.add_argument("--max-tokens", type=int)
    gen.add_argument("--timeout", type=float, help="seconds per request")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--price-prompt", type=float, help="price per 1k prompt tokens")
    gen.add_argument("--price-completion", type=float, help="price per 1k completion tokens")
    loop = gen.add_argument_group("the loop (README: \"The loop\")")
    loop.add_argument("--feedback", action=argparse.BooleanOptionalAction,
                      help="use people's verdicts on earlier rounds: confirmed items as examples, contradicted ones "
                           "as counter-examples, more texts for labels people doubt")
    loop.add_argument("--feedback-min-labels", type=int, help="human labels an earlier item needs (default 2)")
    loop.add_argument("--feedback-min-agreement", type=float,
                      help="instance agreement a confirmed item needs to be an example (default 0.6)")
    loop.add_argument("--counter-examples", type=int, dest="counter_examples_per_prompt",
                      help="counter-examples per prompt (default 2)")
    loop.add_argument("--grounding", choices=GROUNDINGS, help="retrieval: show real texts retrieved per call")
    loop.add_argument("--grounding-k", type=int, help="retrieved texts per call (default 3)")
    loop.add_argument("--grounding-candidates", type=int, help="nearest texts MMR picks from (default 20)")
    loop.add_argument("--mmr-lambda", type=float, help="1: most similar, 0: most varied (default 0.5)")
    loop.add_argument("--attributes", metavar="FILE.json", type=Path,
                      help='attribute lists, e.g. {"topic": ["sports", "politics"], "length": ["short", "long"]}')
    loop.add_argument("--calls-per-label", type=int, help="a fixed budget: at most this many calls per label")
    loop.add_argument("--batch", action=argparse.BooleanOptionalAction,
                      help="openai backend: submit through the Batch API, poll, ingest")
    loop.add_argument("--batch-poll", type=float, help="seconds between polls of a batch (default 30)")
    gen.add_argument("--resume", type=int, metavar="JOB_ID", help="continue a killed, failed or cancelled job")
    gen.add_argument("--background", action="store_true", help="start a detached job and return its id")
    gen.set_defaults(handler=_generate)

    ann = subparsers.add_parser("llm-annotate", parents=[common], help="label items with the LLM as an annotator")
    ann.add_argument("project")
    ann.add_argument("--backend", choices=BACKENDS)
    ann.add_argument("--model")
    ann.add_argument("--base-url")
    ann.add_argument("--api-key-env")
    ann.add_argument("--selection", choices=LLM_SELECTIONS)
    ann.add_argument("--items", help="comma-separated internal item ids (implies --selection ids)")
    ann.add_argument("--concurrency", type=int)
    ann.add_argument("--temperature", type=float)
    ann.add_argument("--overwrite", action="store_true", help="label again items this model already labelled")
    ann.add_argument("--panel", metavar="FILE.json",
                     help="run an LLM panel: a JSON list of members, each an object of LLM-annotator settings (backend,"
                          " model, base_url, api_key_env, temperature, instruction_variant, instruction …), run in "
                          "turn on the same items (default selection: synthetic)")
    ann.set_defaults(handler=_llm_annotate)


def _project_id(db: Any, name: str) -> int:
    return get_project(db, name).id


def _seeds_add(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project_id = _project_id(db, args.project)
    ids = seeds.pin(db, project_id, args.item_ids, added_by="cli", note=args.note)
    counts = seeds.seed_counts(db, project_id)
    return {"item_ids": ids, "counts": counts,
            "message": f"pinned {len(ids)} seed(s); per label: {_counts_line(counts)}"}


def _seeds_remove(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project_id = _project_id(db, args.project)
    removed = seeds.unpin_refs(db, project_id, [str(r) for r in args.item_ids])
    return {"removed": removed, "message": f"unpinned {removed} seed(s)"}


def _seeds_sample(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project_id = _project_id(db, args.project)
    result = seeds.sample_seeds(db, project_id, args.per_label, args.seed, added_by="cli",
                                examples_per_prompt=args.examples_per_prompt)
    added = sum(len(v) for v in result.added.values())
    lines = [f"added {added} seed(s); per label: {_counts_line(result.counts)}", *result.warnings]
    return {"added": result.added, "counts": result.counts, "warnings": result.warnings, "message": "\n".join(lines)}


def _seeds_list(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    project_id = _project_id(db, args.project)
    table = seeds.list_seeds(db, project_id)
    rows = [
        {"item_id": int(r.id), "external_id": r.external_id, "label": r.label,
         "instance_agreement": None if r.instance_agreement != r.instance_agreement else float(r.instance_agreement),
         "text": r.text}
        for r in table.itertuples()
    ]
    lines = [f"{r['item_id']}\t{r['external_id'] or ''}\t{r['label']}\t{r['text'][:70]}" for r in rows]
    return {"seeds": rows, "counts": seeds.seed_counts(db, project_id), "message": "\n".join(lines) or "no seeds"}


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _generate(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    started = time.monotonic()
    project = get_project(db, args.project)
    if args.resume is not None:
        if service.job_project_id(db, args.resume) != project.id:
            raise SynthloopError(f"job {args.resume} belongs to another project than {project.name!r}")
        job_id = service.resume_generation(db, args.resume, launch=args.background)
    else:
        if args.mode is None or args.per_label is None:
            raise SynthloopError("a new generation needs --mode zero-shot|few-shot and --per-label N "
                                 "(or --resume JOB_ID to continue one)")
        options = {
            "mode": args.mode, "per_label": args.per_label, "backend": args.backend, "model": args.model,
            "base_url": args.base_url, "api_key_env": args.api_key_env, "concurrency": args.concurrency,
            "temperature": args.temperature, "requests_per_minute": args.rpm, "style": args.style,
            "word_limit": args.word_limit, "examples_per_prompt": args.examples_per_prompt,
            "diversity_period": args.diversity_period, "prompt_form": args.prompt_form,
            "max_tokens": args.max_tokens, "timeout_s": args.timeout, "seed": args.seed,
            "price_prompt_per_1k": args.price_prompt, "price_completion_per_1k": args.price_completion,
            "labels": [s.strip() for s in args.labels.split(",") if s.strip()] if args.labels else None,
            "feedback": args.feedback, "feedback_min_labels": args.feedback_min_labels,
            "feedback_min_agreement": args.feedback_min_agreement,
            "counter_examples_per_prompt": args.counter_examples_per_prompt, "grounding": args.grounding,
            "grounding_k": args.grounding_k, "grounding_candidates": args.grounding_candidates,
            "mmr_lambda": args.mmr_lambda, "calls_per_label": args.calls_per_label, "batch": args.batch, "batch_poll_s": args.batch_poll,
            "attributes": read_attributes(args.attributes) if args.attributes else None,
        }
        job_id = service.start_generation(db, project.id, launch=args.background, **options)
    if args.background:
        return {"job_id": job_id, "status": "launched",
                "message": f"generation job {job_id} started in the background (watch: python -m core job list)"}
    summary = service.run_in_foreground(db, job_id)
    result = {
        "job_id": job_id,
        "round": summary.round,
        "status": summary.status,
        "accepted": summary.accepted,
        "accepted_per_label": summary.accepted_per_label,
        "target_per_label": summary.target_per_label,
        "targets": summary.targets,
        "rejected": summary.rejected,
        "calls": summary.calls,
        "failed_calls": summary.failed_calls,
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "cost": summary.cost,
        "seconds": round(time.monotonic() - started, 3),
    }
    per_label = ", ".join(f"{k} {v}/{summary.targets[k]}" for k, v in summary.accepted_per_label.items())
    rejected = ", ".join(f"{k} {v}" for k, v in summary.rejected.items() if k != service.SURPLUS_REASON) or "none"
    result["message"] = (f"job {job_id} (round {summary.round}) {summary.status}: accepted {summary.accepted} ({per_label}); "
                         f"rejected: {rejected}; surplus past the target: {summary.surplus}; "
                         f"{summary.calls} calls ({summary.failed_calls} failed), "
                         f"{summary.prompt_tokens}+{summary.completion_tokens} tokens, {result['seconds']:.1f} s")
    return result


def _llm_annotate(args: argparse.Namespace, db: Any) -> dict[str, Any]:
    from core import jobs as core_jobs

    project = get_project(db, args.project)
    item_ids = [int(i) for i in args.items.split(",") if i.strip()] if args.items else None
    if args.panel:
        return _llm_panel(args, db, project, item_ids)
    options = {"backend": args.backend, "model": args.model, "base_url": args.base_url, "api_key_env": args.api_key_env,
               "selection": "ids" if item_ids else args.selection, "item_ids": item_ids,
               "concurrency": args.concurrency, "temperature": args.temperature, "overwrite": args.overwrite or None}
    job_id = llm_annotator.start_llm_annotation(db, project.id, launch=False, **options)
    job = core_jobs.run(service.db_file(db), job_id)
    if job["status"] == "failed":
        raise SynthloopError(f"LLM annotation job {job_id} failed: {job['error'].splitlines()[0]}")
    result = {"job_id": job_id, "status": job["status"], **job["result"]}
    result["message"] = (f"job {job_id} {job['status']}: {result.get('labelled', 0)} labelled as "
                         f"{result.get('annotator')}, {result.get('unparsed', 0)} unparsed replies, "
                         f"{result.get('errors', 0)} failed calls")
    if result.get("warning"):
        result["message"] += f"\nwarning: {result['warning']}"
    return result


MEMBER_FLAGS = ("backend", "model", "base_url", "api_key_env", "concurrency", "temperature")


def _llm_panel(args: argparse.Namespace, db: Any, project: Any, item_ids: list[int] | None) -> dict[str, Any]:
    """``llm-annotate --panel FILE``: every member in turn, then the panel's figures."""
    from dataclasses import asdict

    from core.agreement.project import project_panel
    from core.generation import llm_panel

    given = [name for name in MEMBER_FLAGS if getattr(args, name) is not None]
    if given:
        raise SynthloopError(f"--panel takes each member's settings from the panel file: leave out "
                             f"--{given[0].replace('_', '-')} and set {given[0]!r} in the members instead")
    configs = llm_panel.panel_configs(project, llm_panel.read_panel_file(args.panel),
                                      selection="ids" if item_ids else args.selection, item_ids=tuple(item_ids or ()),
                                      overwrite=args.overwrite)
    runs = llm_panel.run_panel(db, project.id, configs)
    report = project_panel(db, project)
    calibration = report.calibration

    def fmt(value: float | None, pattern: str = ".3f") -> str:
        return "n/a" if value is None else format(value, pattern)

    summary = (f"panel of {len(report.members)} LLM annotators: {report.n_synthetic_labelled} of "
               f"{report.n_synthetic} synthetic items have panel labels, mean panel agreement with the intended label "
               f"{fmt(report.mean_panel_agreement)}, {report.n_panel_unanimous} unanimous; against people on "
               f"{calibration.n_items} items: accuracy {fmt(calibration.accuracy)}, Cohen's kappa "
               f"{fmt(calibration.cohen_kappa)}, Krippendorff's alpha {fmt(calibration.krippendorff_alpha)}, "
               f"ECE {fmt(calibration.ece)}")
    return {
        "members": [asdict(run) for run in runs],
        "panel": {"members": list(report.members), "n_synthetic": report.n_synthetic,
                  "n_synthetic_labelled": report.n_synthetic_labelled,
                  "mean_panel_agreement": report.mean_panel_agreement, "n_panel_unanimous": report.n_panel_unanimous,
                  "calibration": {**{k: v for k, v in asdict(calibration).items() if k != "reliability"},
                                  "reliability": calibration.reliability_frame().to_dict("records")}},
        "message": "\n".join([*(run.line() for run in runs), summary]),
    }
