"""Generate: backend settings and "test connection", editable prompt templates, a preview of both settings'
prompts before any call, a price table, and generation jobs (start, cancel, resume) with live progress.
LLM text is shown only as plain text (code blocks and dataframes), never as HTML."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core.errors import SynthloopError
from core.generation import llm_annotator, service
from core.generation.config import DEFAULT_OPENAI_BASE_URL, EMBEDDED_MODEL, TEMPLATE_FIELDS, parse_attributes
from core.vocab import ACTIVE_STATUSES, BACKENDS, GROUNDINGS, LLM_SELECTIONS, MODES, PROMPT_FORMS
from pages._common import (
    GENERATE_JOB,
    CacheKey,
    cache_derived,
    current_project,
    database,
    escape_markdown,
    page_guard,
    project_cache_key,
    show_error,
)

user = page_guard(__file__)
with database() as db:
    project = current_project(db)

BACKEND_TEXT = {"embedded": "embedded SmolLM2-135M (CPU, offline)", "openai": "OpenAI-compatible URL",
                "transformers": "transformers (local folder or hub id)"}
MODEL_HINT = {"embedded": EMBEDDED_MODEL, "openai": "the served model name, e.g. gpt-4o-mini",
              "transformers": "a local folder or hub id"}
JOB_PICK = "generate_job_pick"  # the Jobs tab's job picker (its widget key)
POLL_S = 2  # seconds between redraws of the Jobs tab while a job is queued or running
FIELD_LABELS = {"api_key_env": "API key variable"}  # how errors that name a setting name its field here

st.title(f"Generate · {escape_markdown(project.name)}")
settings_tab, templates_tab, jobs_tab, annotator_tab = st.tabs(
    ["Settings and preview", "Prompt templates", "Jobs", "LLM annotator"])


@cache_derived()
def _preview(_db, key: CacheKey, options_json: str) -> service.PromptPreview:
    """The prompt preview, read again only when the project's data (items, labels, seeds, settings) or the form's
    values change: with feedback on it reads every human label of the earlier rounds."""
    return service.preview_prompts(_db, key.project.id, **json.loads(options_json))


def _index(options: tuple[str, ...] | list[str], value: object) -> int:
    return list(options).index(value) if value in options else 0


with settings_tab:
    st.subheader("Backend")
    # Outside the form, so that switching backend redraws the form with that backend's own model and base URL.
    backend = st.selectbox("Backend", BACKENDS, index=_index(BACKENDS, service.form_values(project)["backend"]),
                           format_func=BACKEND_TEXT.__getitem__, key="generate_backend")
    values = service.form_values(project, backend)
    with st.form("generate_settings"):
        left, right = st.columns(2)
        model = left.text_input("Model", value=values["model"], key=f"generate_model_{backend}",
                                placeholder=MODEL_HINT[backend],
                                help="embedded: blank for the embedded model; OpenAI-compatible: the served model "
                                     "name; transformers: a local folder or hub id")
        base_url = right.text_input("Base URL", value=values["base_url"], key=f"generate_base_url_{backend}",
                                    placeholder=DEFAULT_OPENAI_BASE_URL, disabled=backend != "openai",
                                    help="OpenAI-compatible backend only; blank: OpenAI's API "
                                         "(a local server: e.g. http://localhost:8000/v1)")
        left, middle, right = st.columns(3)
        api_key_env = left.text_input("API key variable", value=values["api_key_env"],
                                      help="the NAME of the environment variable (or .streamlit/secrets.toml entry) "
                                           "holding the key; the key itself is never stored. OPENAI_API_KEY, or a "
                                           "name the server's administrator allowed (SYNTHLOOP_API_KEY_VARS)")
        timeout_s = middle.number_input("Timeout per request (s)", 0.5, 3600.0, float(values["timeout_s"]))
        max_retries = right.number_input("Retries (429 / 5xx / network)", 0, 20, int(values["max_retries"]))

        st.subheader("What to generate")
        left, middle, right = st.columns(3)
        mode = left.radio("Setting", MODES, index=_index(MODES, values["mode"]), horizontal=True)
        form_options = ["auto", *PROMPT_FORMS]
        prompt_form = middle.selectbox("Few-shot prompt form", form_options,
                                       index=_index(form_options, values["prompt_form"] or "auto"),
                                       help="chat: examples with labels and an instruction; list: the label's "
                                            "seed texts as a numbered list to continue (for small local models); "
                                            "auto: list for the embedded model, chat otherwise")
        per_label = right.number_input("Texts per label (target)", 1, 1_000_000, int(values["per_label"]))
        labels = st.multiselect("Labels", project.label_names,
                                default=[lb for lb in values["labels"] if lb in project.label_names])
        left, middle, right = st.columns(3)
        style = left.text_input("Style (what to write)", value=values["style"], help="e.g. movie review, tweet")
        word_limit = middle.number_input("Word limit", 1, 5000, int(values["word_limit"]))
        temperature = right.slider("Temperature", 0.0, 2.0, float(values["temperature"]), 0.05)
        left, middle, right = st.columns(3)
        examples_per_prompt = left.number_input("Few-shot: seeds per prompt (k)", 1, 50,
                                                int(values["examples_per_prompt"]))
        diversity_period = middle.number_input("Zero-shot: diversity prompt every n outputs (0 = never)", 0, 10_000,
                                               int(values["diversity_period"]))
        conversation_turns = right.number_input("Turns per conversation (0 = auto)", 0, 1000,
                                                int(values["conversation_turns"] or 0),
                                                help="auto: 10 for zero-shot, 1 for few-shot")

        st.subheader("Throughput, filters and price")
        left, middle, right = st.columns(3)
        concurrency = left.number_input("Concurrent requests", 1, 256, int(values["concurrency"]))
        rpm = middle.number_input("Requests per minute (0 = no limit)", 0.0, 1_000_000.0,
                                  float(values["requests_per_minute"] or 0.0))
        max_tokens = right.number_input("Max tokens per reply", 1, 32_768, int(values["max_tokens"]))
        left, middle, right = st.columns(3)
        min_words = left.number_input("Reject texts under (words)", 0, 10_000, int(values["min_words"]))
        max_words = middle.number_input("Reject texts over (words)", 1, 100_000, int(values["max_words"]))
        near_dup = right.slider("Near-duplicate threshold (4-gram Jaccard)", 0.05, 1.0,
                                float(values["near_duplicate_threshold"]), 0.05)
        left, middle, right = st.columns(3)
        seed_copy = left.slider("Seed-copy threshold", 0.05, 1.0, float(values["seed_copy_threshold"]), 0.05)
        price_prompt = middle.number_input("Price per 1k prompt tokens", 0.0, 1000.0,
                                           float(values["price_prompt_per_1k"]), format="%.5f")
        price_completion = right.number_input("Price per 1k completion tokens", 0.0, 1000.0,
                                              float(values["price_completion_per_1k"]), format="%.5f")
        seed = st.number_input("Random seed", 0, 2**32 - 1, int(values["seed"]))

        st.subheader("The loop: feedback, grounding, attributes")
        left, middle, right = st.columns(3)
        feedback = left.checkbox("Learn from people's verdicts on earlier rounds", value=bool(values["feedback"]),
                                 help="confirmed items become few-shot examples, contradicted ones counter-examples, "
                                      "and labels people doubt get more texts")
        feedback_min_labels = middle.number_input("Human labels an earlier item needs", 1, 1000,
                                                  int(values["feedback_min_labels"]))
        feedback_min_agreement = right.slider("Agreement an example needs", 0.0, 1.0,
                                              float(values["feedback_min_agreement"]), 0.05)
        left, middle, right = st.columns(3)
        counter_examples = left.number_input("Counter-examples per prompt", 0, 50,
                                             int(values["counter_examples_per_prompt"]))
        grounding = middle.selectbox("Grounding in real texts", GROUNDINGS, index=_index(GROUNDINGS,
                                                                                         values["grounding"]),
                                     help="retrieval: each call shows real texts of this project (not the test "
                                          "split), retrieved by similarity to a sampled one and varied by MMR")
        grounding_k = right.number_input("Retrieved texts per call", 1, 50, int(values["grounding_k"]))
        left, middle, right = st.columns(3)
        grounding_candidates = left.number_input("Nearest texts MMR picks from", 1, 10_000,
                                                 int(values["grounding_candidates"]))
        mmr_lambda = middle.slider("MMR: similar (1) or varied (0)", 0.0, 1.0, float(values["mmr_lambda"]), 0.05)
        calls_per_label = right.number_input("Fixed calls per label (0 = until the target)", 0, 10_000_000,
                                             int(values["calls_per_label"] or 0),
                                             help="a fixed budget, to compare settings at the same cost")
        attributes_text = st.text_area(
            "Attributes (JSON: lists of values, one of each sampled per call)",
            value=json.dumps({k: list(v) for k, v in dict(values["attributes"]).items()}, indent=1)
            if values["attributes"] else "",
            placeholder='{"topic": ["sports", "politics"], "length": ["short", "long"]}', height=90)
        left, right = st.columns(2)
        batch = left.checkbox("Offline batch (OpenAI Batch API: about half the price, answers within hours)",
                              value=bool(values["batch"]), disabled=backend != "openai")
        batch_poll_s = right.number_input("Seconds between batch polls", 0.01, 3600.0, float(values["batch_poll_s"]),
                                          disabled=backend != "openai")
        buttons = st.columns(4)
        save = buttons[0].form_submit_button("Save as project defaults", icon=":material/save:")
        test = buttons[1].form_submit_button("Test connection", icon=":material/cable:")
        show_preview = buttons[2].form_submit_button("Preview prompts", icon=":material/visibility:")
        start = buttons[3].form_submit_button("Start generation", type="primary", icon=":material/play_arrow:",
                                              help="starts a job, the next round of the loop, and keeps these "
                                                   "settings as the project's defaults for the next one")

    options = {
        "saved_defaults": False,  # the form started from them: its "auto" and blank values are meant as sent
        "backend": backend, "model": model, "base_url": base_url, "api_key_env": api_key_env,
        "timeout_s": float(timeout_s), "max_retries": int(max_retries), "mode": mode,
        "prompt_form": None if prompt_form == "auto" else prompt_form, "per_label": int(per_label),
        "labels": labels, "style": style, "word_limit": int(word_limit), "temperature": float(temperature),
        "examples_per_prompt": int(examples_per_prompt), "diversity_period": int(diversity_period),
        "conversation_turns": int(conversation_turns) or None, "concurrency": int(concurrency),
        "requests_per_minute": float(rpm) or None, "max_tokens": int(max_tokens), "min_words": int(min_words),
        "max_words": int(max_words), "near_duplicate_threshold": float(near_dup),
        "seed_copy_threshold": float(seed_copy), "price_prompt_per_1k": float(price_prompt),
        "price_completion_per_1k": float(price_completion), "seed": int(seed),
        "feedback": feedback, "feedback_min_labels": int(feedback_min_labels),
        "feedback_min_agreement": float(feedback_min_agreement), "counter_examples_per_prompt": int(counter_examples),
        "grounding": grounding, "grounding_k": int(grounding_k), "grounding_candidates": int(grounding_candidates),
        "mmr_lambda": float(mmr_lambda), "calls_per_label": int(calls_per_label) or None,
        "batch": bool(batch) and backend == "openai", "batch_poll_s": float(batch_poll_s),
    }
    if backend == "openai":
        st.caption("API key: " + ("found" if service.api_key_present(api_key_env) else
                                  f"not found — set {escape_markdown(api_key_env)} in the server's environment or in "
                                  ".streamlit/secrets.toml (local servers usually need none)"))
    try:
        options["attributes"] = parse_attributes(attributes_text)
        with database() as db:
            if save:
                service.save_options(db, project.id, **options)
                st.toast("Saved as this project's defaults.")
            if test:
                with st.spinner("Calling the backend…"):
                    st.success(service.test_connection(db, project.id, **options), icon=":material/check:")
            if start:
                job_id = service.start_generation(db, project.id, **options)
                # The next round most often repeats this one: its settings become the form's starting values.
                service.save_options(db, project.id, **options)
                st.session_state[GENERATE_JOB] = job_id
                st.session_state[JOB_PICK] = job_id  # the Jobs tab's picker shows the new job, and stays on it
                st.success(f"Generation job {job_id} started: follow it in the Jobs tab.", icon=":material/rocket:")
    except SynthloopError as exc:
        show_error(exc, FIELD_LABELS)
    try:
        options.setdefault("attributes", {})  # attributes that did not parse: the error above says so
        with database() as db:
            config = service.build_config(project, **options)
            preview = _preview(db, project_cache_key(db, project), json.dumps(options, sort_keys=True))
    except SynthloopError as exc:
        st.info(f"No preview for these settings: {escape_markdown(str(exc))}")
        preview = None

    if preview is not None:
        st.subheader("Price")
        chosen = preview.settings.get("list" if config.prompt_form == "list" else config.mode)
        # A feedback round's targets (more texts for labels people doubt) are part of what it costs.
        targeted = config.replace(label_targets=preview.feedback.label_targets) if preview.feedback else config
        estimate = service.estimate_cost(targeted, chosen[0] if chosen else None)
        st.dataframe(pd.DataFrame([
            {"": "price per 1k tokens", "prompt": config.price_prompt_per_1k,
             "completion": config.price_completion_per_1k, "cost": None},
            {"": f"estimate for {estimate['calls']:,} texts (upper bound)", "prompt": estimate["prompt_tokens"],
             "completion": estimate["completion_tokens"], "cost": estimate["cost"]},
        ]), hide_index=True)

        feedback_seen = preview.feedback
        if feedback_seen is not None:
            st.subheader("Feedback from earlier rounds")
            st.caption(f"{feedback_seen.n_judged} earlier synthetic items have enough human labels. A round started "
                       "now takes, per label:")
            st.dataframe(pd.DataFrame([
                {"label": label, "label fidelity": feedback_seen.fidelity.get(label),
                 "examples (confirmed)": len(feedback_seen.example_ids.get(label, ())),
                 "counter-examples (contradicted)": len(feedback_seen.counter_example_ids.get(label, ())),
                 "target": feedback_seen.label_targets.get(label, config.per_label)}
                for label in config.labels]), hide_index=True)

        st.subheader("Prompt preview" + (" (as requested)" if show_preview else ""))
        st.caption("Exactly what the first calls would send for the first label (placeholders stand for replies "
                   "and for the real texts grounding retrieves). Nothing is sent to any model for this preview.")
        for warning in preview.warnings:
            st.warning(warning)
        titles = {"zero-shot": "Zero-shot", "few-shot": "Few-shot (chat)", "list": "Few-shot (numbered list)"}
        for name, calls in preview.settings.items():
            with st.expander(titles[name], expanded=(name == config.mode)):
                for number, call in enumerate(calls, start=1):
                    st.markdown(f"**Call {number}** · label {escape_markdown(call.label)} · seeds {call.seed_item_ids or 'none'}")
                    for message in call.messages:
                        st.caption(message["role"])
                        st.code(message["content"], language=None, wrap_lines=True)

with templates_tab:
    st.caption("Templates use {placeholders}; literal braces are written {{ and }}. Saved per project; new jobs "
               "freeze the templates they start with.")
    templates = service.get_templates(project).to_dict()
    with st.form("generate_templates"):
        edited = {}
        for name in TEMPLATE_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS[name]))
            edited[name] = st.text_area(name.replace("_", " ").capitalize(), value=templates[name], height=110,
                                        help=f"placeholders: {allowed}")
        left, right = st.columns(2)
        save_templates = left.form_submit_button("Save templates", type="primary", icon=":material/save:")
        reset = right.form_submit_button("Reset to the paper's defaults", icon=":material/restart_alt:")
    if save_templates or reset:
        try:
            with database() as db:
                if reset:
                    service.reset_templates(db, project.id)
                else:
                    service.save_templates(db, project.id, edited)
        except SynthloopError as exc:
            show_error(exc)
        else:
            st.toast("Templates reset." if reset else "Templates saved.")
            st.rerun()

with jobs_tab:
    with database() as db:  # read after the settings form, so a job started in this run is listed
        polling = bool(service.list_generation_jobs(db, project.id)["status"].isin(ACTIVE_STATUSES).any())

    @st.fragment(run_every=POLL_S if polling else None)
    def _jobs_panel(polling: bool) -> None:
        """The jobs table and the watched job's progress, re-read at every redraw (every few seconds while a job
        is queued or running): a redraw of this fragment alone must show the jobs as they are now."""
        with database() as db:
            jobs = service.list_generation_jobs(db, project.id)
        if jobs.empty:
            st.info("No generation jobs yet: start one in *Settings and preview* "
                    "(or `python -m core generate PROJECT …`).")
            return
        st.dataframe(jobs, hide_index=True)
        job_ids = [int(j) for j in jobs["job_id"]]
        if st.session_state.get(JOB_PICK) not in job_ids:  # first visit, or its job was deleted
            watched = st.session_state.get(GENERATE_JOB)
            st.session_state[JOB_PICK] = watched if watched in job_ids else job_ids[0]
        job_id = st.selectbox("Job", job_ids, format_func=lambda j: f"job {j}", key=JOB_PICK)
        st.session_state[GENERATE_JOB] = job_id
        with database() as db:
            summary = service.job_summary(db, job_id)
            rejected = service.rejected_outputs(db, job_id)
        st.markdown(f"**Status:** {summary.status} · {summary.mode} · {summary.backend} · "
                    f"{escape_markdown(summary.model)}")
        if summary.error:
            st.error(escape_markdown(summary.error.splitlines()[0]))
        st.caption(f"Round {summary.round} of this project's loop")
        for label, n in summary.accepted_per_label.items():
            target = summary.targets[label]
            st.progress(min(1.0, n / target), text=f"{escape_markdown(label)}: {n} / {target}")
        cols = st.columns(4)
        cols[0].metric("Accepted", summary.accepted)
        cols[1].metric("Rejected by the filters", summary.rejected_by_filters)
        cols[2].metric("Surplus", summary.surplus, help="texts that passed the filters after their label's target"
                                                        " was reached: kept in the calls, not as items")
        eta = summary.eta_s
        cols[3].metric("ETA", "—" if eta is None else f"{eta:.0f} s")
        cols = st.columns(4)
        cols[0].metric("Calls", summary.calls)
        cols[1].metric("Failed calls", summary.failed_calls)
        cols[2].metric("Tokens", f"{summary.prompt_tokens + summary.completion_tokens:,}",
                       help=f"{summary.prompt_tokens:,} prompt + {summary.completion_tokens:,} completion")
        cols[3].metric("Cost", f"{summary.cost:.4f}")
        if summary.rejected:
            st.caption("Rejected texts by reason")
            st.dataframe(pd.DataFrame({"reason": list(summary.rejected),
                                       "texts": list(summary.rejected.values())}), hide_index=True)
        if not rejected.empty:
            with st.expander("Recent rejected outputs and failed calls"):
                st.dataframe(rejected, hide_index=True)

        left, right = st.columns(2)
        cancel = left.button("Cancel job", disabled=not summary.active, icon=":material/stop:")
        resume = right.button("Resume job", disabled=not summary.resumable, icon=":material/replay:",
                              help="generates only what is still missing per label")
        if cancel or resume:
            try:
                with database() as db:
                    if cancel:
                        service.cancel_generation(db, job_id)
                    else:
                        service.resume_generation(db, job_id)
            except SynthloopError as exc:
                show_error(exc)
            else:
                st.toast("Cancel requested." if cancel else f"Job {job_id} resumed.")
                st.rerun(scope="app")
        if polling and not jobs["status"].isin(ACTIVE_STATUSES).any():
            st.rerun(scope="app")  # every job has ended: redraw the page once, which stops the polling

    _jobs_panel(polling)

with annotator_tab:
    st.caption("The LLM labels chosen items as annotator `llm:<model>`, so its agreement with people is measured "
               "like anyone's (Agreement page). Every LLM annotator is a member of the project's LLM panel: run "
               "several models, or one model with several instruction variants, on the synthetic items; the "
               "Agreement page calibrates the panel against people, and Review and Train filter on it.")
    saved = llm_annotator.settings(project)
    with st.form("generate_llm_annotator"):
        left, middle, right = st.columns(3)
        ann_backend = left.selectbox("Backend ", BACKENDS, index=_index(BACKENDS, saved.get("backend", backend)),
                                     format_func=BACKEND_TEXT.__getitem__)
        ann_model = middle.text_input("Model ", value=saved.get("model", model))
        ann_url = right.text_input("Base URL ", value=saved.get("base_url", base_url))
        left, middle, right = st.columns(3)
        ann_key = left.text_input("API key variable ", value=saved.get("api_key_env", api_key_env))
        selections = [s for s in LLM_SELECTIONS if s != "ids"]
        selection = middle.selectbox("Items", selections, index=_index(selections, saved.get("selection", "pool")),
                                     help="pool: the annotation pool; unlabelled: items no person labelled yet")
        ann_concurrency = right.number_input("Concurrent requests ", 1, 256, int(saved.get("concurrency", 4)))
        variant = st.text_input("Instruction variant (for a panel member with a prompt of its own)",
                                value=saved.get("instruction_variant", ""), max_chars=32,
                                help="a-z, 0-9, _ and -: the labels go to annotator llm:<model>/<variant>, so several "
                                     "prompts of one model are several panel members")
        instruction = st.text_area("Instruction (blank: the built-in one)", value=saved.get("instruction", ""),
                                   placeholder=llm_annotator.DEFAULT_INSTRUCTION, height=110,
                                   help="with {label_lines} and {text}; needs a variant name")
        left, right = st.columns(2)
        save_ann = left.form_submit_button("Save setting", icon=":material/save:")
        run_ann = right.form_submit_button("Label now", type="primary", icon=":material/smart_toy:")
    if save_ann or run_ann:
        ann_options = {"backend": ann_backend, "model": ann_model, "base_url": ann_url, "api_key_env": ann_key,
                       "selection": selection, "concurrency": int(ann_concurrency),
                       "instruction_variant": variant.strip(), "instruction": instruction}
        try:
            with database() as db:
                llm_annotator.save_settings(db, project.id, **ann_options)
                if run_ann:
                    ann_job = llm_annotator.start_llm_annotation(db, project.id, **ann_options)
                    st.success(f"LLM annotation job {ann_job} started.")
                else:
                    st.toast("Saved.")
        except SynthloopError as exc:
            show_error(exc, FIELD_LABELS)
    with database() as db:
        ann_jobs = llm_annotator.list_jobs(db, project.id)
        latest = ann_jobs[0] if ann_jobs else None
        unlabelled = llm_annotator.job_calls(db, latest["id"], unlabelled_only=True) if latest else None
    if ann_jobs:
        st.dataframe(pd.DataFrame([{"job": j["id"], "status": j["status"], "done": j["progress_done"],
                                    "total": j["progress_total"], "labelled": j["result"].get("labelled"),
                                    "unparsed": j["result"].get("unparsed"), "failed calls": j["result"].get("errors"),
                                    "problem": (j["error"] or j["result"].get("warning") or "").split("\n")[0]}
                                   for j in ann_jobs]), hide_index=True)
        # The latest job's problem, with the model's own words: escaped, never rendered (LLM output is untrusted).
        if latest["status"] == "failed":
            first_line = (latest["error"] or "").split("\n")[0]
            st.error(escape_markdown(f"LLM annotation job {latest['id']} failed: {first_line}"))
        elif latest["result"].get("warning"):
            st.warning(escape_markdown(f"LLM annotation job {latest['id']}: {latest['result']['warning']}"))
        if unlabelled is not None and not unlabelled.empty:
            with st.expander(f"Replies of job {latest['id']} that named no label, and failed calls "
                             f"({len(unlabelled)})"):
                st.dataframe(unlabelled[["item_id", "raw_output", "error"]], hide_index=True)
