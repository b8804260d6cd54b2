"""The generation job runner (job kind ``generation``): calls the LLM concurrently, keeps every call, and stores
accepted outputs as synthetic items until each label reaches its target.

Design:
* worker threads only call the model (and wait on the requests-per-minute limiter); the main thread alone
  builds prompts, parses, deduplicates and writes, so accepted counts cannot overshoot under concurrency;
* each call is written with its accepted items in one transaction (calls finished close together share one), so
  a ``kill -9`` loses at most the calls in flight or not yet written, never half a call;
* the remainder is computed from the database at start, so running a killed or cancelled job again (resume)
  generates exactly what is missing per label — never more than the target, never a duplicate text;
* worker threads take the next prompt from a queue the main thread keeps topped up (one prompt ahead per worker),
  so a worker never waits for the main thread between calls, and database writes overlap model calls.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from core.errors import NotFoundError, SynthloopError
from core.generation import prompts, rounds, steering
from core.generation.backends import Backend, BackendCallError, Completion, make_backend
from core.generation.config import GenerationConfig
from core.generation.parsing import DuplicateIndex, Outcome, cached_hash, echo_phrases, extract_texts, screen
from core.generation.seeds import SeedExample, seed_examples
from core.vocab import HELD_OUT_SPLITS
from db import connection, transaction
from db import generation as gen_db
from db import generation_batch as generation_batch_db
from db import items as items_db
from db import jobs as jobs_db

PROGRESS_EVERY_S = 0.5
WAIT_TIMEOUT_S = 1.0
# Screened calls are written together every FLUSH_EVERY_S (one transaction, one statement per table): at
# 100+ calls/s, a transaction per call would make the writer the bottleneck. A kill -9 loses at most this
# window of calls, which the resumed job simply makes again.
FLUSH_EVERY_S = 0.25
FLUSH_MAX_CALLS = 256


class RateLimiter:
    """At most ``per_minute`` starts per minute, evenly spaced; ``acquire`` blocks the calling worker thread."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)
        return delay


@dataclass
class CallResult:
    completion: Completion | None
    error: BackendCallError | None


@dataclass
class Slot:
    """A call in flight: its conversation, prompt and number."""

    conversation: prompts.Conversation
    prompt: prompts.CallPrompt
    number: int


def call_seed(config: GenerationConfig, number: int) -> int:
    """The sampling seed sent with call ``number`` (live or in a batch), so every call samples differently."""
    return (config.seed + number) % 2**31


def call_model(backend: Backend, limiter: RateLimiter, prompt: prompts.CallPrompt, config: GenerationConfig,
               number: int) -> CallResult:
    """Worker-thread body: never raises, so one bad reply cannot stop the job."""
    limiter.acquire()
    try:
        completion = backend.complete(prompt.messages, temperature=config.temperature, max_tokens=config.max_tokens,
                                      seed=call_seed(config, number))
        return CallResult(completion, None)
    except BackendCallError as exc:
        return CallResult(None, exc)
    except Exception as exc:  # an unexpected client failure is this call's error, not the job's
        return CallResult(None, BackendCallError("malformed", f"{type(exc).__name__}: {exc}"))


@dataclass
class Finished:
    """A screened call waiting to be written (with the index positions of its accepted texts)."""

    slot: Slot
    result: CallResult
    texts: list[str]
    outcomes: list[Outcome]
    positions: list[int]


class GenerationRun:
    """One run of a generation job in this process, from the database state to the target (or cancel)."""

    def __init__(self, db_path: str, job_id: int, *, backend: Backend | None = None,
                 embedder: Any = None) -> None:
        self.db_path = db_path
        self.job_id = job_id
        self.db = connection.connect(db_path)
        generation_job = gen_db.get_generation_job_by_job(self.db, job_id)
        if generation_job is None:
            self.db.conn.close()
            raise NotFoundError(f"job {job_id} is not a generation job")
        self.generation_job_id = int(generation_job["id"])
        self.project_id = int(generation_job["project_id"])
        self.config = GenerationConfig.from_dict(generation_job["config"])
        self.backend = backend
        self.embedder = embedder  # grounding: the sentence embedder (default: the embedded MiniLM)
        self.seeds: list[SeedExample] = []
        self.counter_examples: dict[str, list[SeedExample]] = {}
        self.grounder: steering.Grounder | None = None
        self.seed_text: dict[int, str] = {}
        self.started = time.monotonic()
        self.accepted_this_run = 0
        self.consecutive_errors = 0
        self.last_error: BackendCallError | None = None
        self.unsaved: list[Finished] = []
        self.meta = json.dumps({"job_id": job_id, "model": self.config.model,
                                "backend": self.config.backend, "temperature": self.config.temperature,
                                "prompt_form": self.config.prompt_form})

    # --- state from the database ---
    def _load(self) -> None:
        config = self.config
        if config.mode == "few-shot":
            self.seeds = seed_examples(self.db, self.project_id)
            if not self.seeds:
                raise SynthloopError("few-shot generation needs seeds, and this project has none: pin some on the "
                                     "Seeds page or run `python -m core seeds sample PROJECT --per-label N`")
            # Earlier rounds' items that people confirmed are examples too (frozen in the config at the start).
            for examples in rounds.feedback_examples(self.db, config.feedback_example_ids).values():
                self.seeds.extend(examples)
            self.seed_text = {s.item_id: s.text for s in self.seeds}
        self.counter_examples = rounds.feedback_examples(self.db, config.counter_example_ids)
        if config.grounding == "retrieval":
            self.grounder = self._grounder()
        self.accepted = Counter({label: 0 for label in config.labels})
        self.accepted.update({k: v for k, v in gen_db.accepted_per_label(self.db, self.generation_job_id).items()
                              if k in self.accepted})
        self.remaining = {label: max(0, config.target_for(label) - self.accepted[label]) for label in config.labels}
        self.call_budget = {label: config.max_calls(n) if n else 0 for label, n in self.remaining.items()}
        if config.calls_per_label is not None:  # a fixed budget, counted across resumes
            made = gen_db.calls_per_label(self.db, self.generation_job_id)
            self.call_budget = {label: min(budget, max(0, config.calls_per_label - made.get(label, 0)))
                                for label, budget in self.call_budget.items()}
        self.calls_issued: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.idle: dict[str, list[prompts.Conversation]] = {label: [] for label in config.labels}
        self.index = DuplicateIndex(config.near_duplicate_threshold, gen_db.project_texts(self.db, self.project_id))
        # Running totals live in memory (seeded from the database) so progress costs no aggregate queries.
        self.rejected: Counter[str] = Counter(gen_db.rejected_by_reason(self.db, self.generation_job_id))
        self.totals = Counter(gen_db.call_totals(self.db, self.generation_job_id))
        self.totals.pop("mean_latency_s", None)
        # Call numbers continue across resumes so re-sampled seeds differ from the first run's.
        # A batch's unanswered requests (it expired or failed) are not calls, yet their numbers were used: a reused
        # number would send the same prompt with the same seed again.
        self.next_number = max(int(self.totals["calls"]),
                               generation_batch_db.next_call_number(self.db, self.generation_job_id))

    def _grounder(self) -> steering.Grounder:
        from core.analysis.embeddings import embed_texts, l2_normalise, load_embedder

        # Held-out texts are never shown: one retrieved into a training text would leak into the evaluation.
        corpus = gen_db.grounding_texts(self.db, self.project_id, held_out=HELD_OUT_SPLITS,
                                        up_to_item=self.config.grounding_up_to_item)
        if not corpus:
            raise SynthloopError("grounding by retrieval needs real texts outside the held-out splits (test, dev), "
                                 "and this project has none: import some (labelled or not) or set {grounding} none",
                                 fields=("grounding",))
        jobs_db.update_progress(self.db, self.job_id, done=0, total=self.config.target_total,
                                message=f"embedding {len(corpus)} real texts for grounding")
        embedder = self.embedder or load_embedder()
        ids, texts, labels = zip(*corpus, strict=True)
        vectors = embed_texts(self.db, list(texts), embedder=embedder).vectors
        config = self.config
        return steering.Grounder(ids, texts, l2_normalise(vectors), labels=labels, k=config.grounding_k,
                                 candidates=config.grounding_candidates, trade_off=config.mmr_lambda)

    def _steering(self, label: str, number: int) -> steering.Steering:
        return steering.steer(self.config, label, number, grounder=self.grounder,
                              counter_examples=self.counter_examples.get(label, []))

    # --- scheduling ---
    def _wants(self, label: str) -> bool:
        return self.in_flight[label] < self.remaining[label] and self.calls_issued[label] < self.call_budget[label]

    def _next_label(self) -> str | None:
        wanting = [label for label in self.config.labels if self._wants(label)]
        if not wanting:
            return None
        return min(wanting, key=lambda label: (self.in_flight[label], -self.remaining[label]))

    def _fill(self, ready: queue.SimpleQueue) -> None:
        """Queue prompts until every worker is busy and ``prefetch`` more wait, so a worker that finishes a call
        starts the next at once instead of waiting for this (main) thread."""
        while self.outstanding < self.config.concurrency + self.prefetch:
            label = self._next_label()
            if label is None:
                return
            ready.put(self._issue(label))
            self.outstanding += 1

    def _issue(self, label: str) -> Slot:
        """The next call of ``label`` (a pooled conversation or a new one), counted as issued and in flight."""
        conversation = self.idle[label].pop() if self.idle[label] else prompts.new_conversation(self.config, label)
        number = self.next_number
        self.next_number += 1
        prompt = prompts.next_call(self.config, conversation, self.seeds, call_number=number,
                                   steering=self._steering(label, number))
        self.in_flight[label] += 1
        self.calls_issued[label] += 1
        return Slot(conversation, prompt, number)

    def _take_back(self, ready: queue.SimpleQueue) -> None:
        """On cancel or a fatal error: withdraw the queued prompts no worker has started."""
        while True:
            try:
                slot = ready.get_nowait()
            except queue.Empty:
                return
            label = slot.prompt.label
            self.outstanding -= 1
            self.in_flight[label] -= 1
            self.calls_issued[label] -= 1

    def _worker(self, ready: queue.SimpleQueue, finished: queue.SimpleQueue, limiter: RateLimiter) -> None:
        while (slot := ready.get()) is not None:
            finished.put((slot, call_model(self.backend, limiter, slot.prompt, self.config, slot.number)))

    # --- one finished call: released at once, screened next, written with the next batch ---
    def _release(self, slot: Slot, result: CallResult) -> None:
        """Cheap bookkeeping done before the next calls are submitted: the conversation goes back to the pool.

        The call still counts as in flight for its label until it is screened, so the calls submitted in
        between can never exceed what the label may still need.
        """
        label = slot.prompt.label
        if result.error is not None:
            self.consecutive_errors += 1
            self.last_error = result.error
            self.idle[label].append(slot.conversation)  # the same turn is tried again
        else:
            self.consecutive_errors = 0
            if prompts.record_reply(self.config, slot.conversation, slot.prompt, result.completion.text):
                self.idle[label].append(slot.conversation)

    def _finish_call(self, slot: Slot, result: CallResult) -> None:
        label = slot.prompt.label
        self.in_flight[label] -= 1
        texts: list[str] = []
        outcomes: list[Outcome] = []
        if result.completion is not None:
            texts = extract_texts(result.completion.text, self.config.labels)
            shown = slot.prompt.steering
            # Retrieved real texts are shown like seeds, so the seed-copy filter guards them too.
            seeds_shown = [(i, self.seed_text[i]) for i in slot.prompt.seed_item_ids if i in self.seed_text]
            seeds_shown += [(e.item_id, e.text) for e in (*shown.retrieved, *shown.counter_examples)]
            # What the model was told (not its own earlier replies, nor the seeds it was shown) must not come back
            # as a text: a label name, a description or a sentence of the instruction is no example.
            echoes = echo_phrases(
                (*self.config.labels, *self.config.label_descriptions.values()),
                [m["content"] for m in slot.prompt.messages if m.get("role") != "assistant"],
                examples=[text for _, text in seeds_shown])
            outcomes = screen(texts, min_words=self.config.min_words, max_words=self.config.max_words,
                              index=self.index, seeds=seeds_shown, seed_copy_threshold=self.config.seed_copy_threshold,
                              remaining=self.remaining[label], truncated=result.completion.truncated, echoes=echoes)
        # Accepted texts join the index now, so the next reply is checked against them before they are written.
        positions = [self.index.add(None, o.text) for o in outcomes if o.accepted]
        n_accepted = len(positions)
        self.accepted[label] += n_accepted
        self.remaining[label] -= n_accepted
        self.accepted_this_run += n_accepted
        self.rejected.update(o.reason for o in outcomes if not o.accepted)
        completion = result.completion
        self.totals["calls"] += 1
        self.totals["failed_calls"] += int(result.error is not None)
        self.totals["prompt_tokens"] += completion.prompt_tokens if completion else 0
        self.totals["completion_tokens"] += completion.completion_tokens if completion else 0
        self.unsaved.append(Finished(slot, result, texts, outcomes, positions))

    def _flush(self) -> None:
        """Write every screened call with its accepted items in one transaction (all or nothing per call)."""
        if not self.unsaved:
            return
        batch, self.unsaved = self.unsaved, []
        calls = []
        for done in batch:
            completion, error = done.result.completion, done.result.error
            n_accepted = len(done.positions)
            calls.append({
                "label": done.slot.prompt.label, "messages": done.slot.prompt.messages,
                "seed_item_ids": done.slot.prompt.seed_item_ids,
                "counter_example_ids": done.slot.prompt.steering.counter_example_ids,
                "retrieved_ids": done.slot.prompt.steering.retrieved_ids,
                "attributes": done.slot.prompt.steering.attributes,
                "raw_output": completion.text if completion else None, "parsed": done.texts,
                "outcomes": [o.to_dict() for o in done.outcomes], "n_accepted": n_accepted,
                "n_rejected": len(done.outcomes) - n_accepted,
                "prompt_tokens": completion.prompt_tokens if completion else 0,
                "completion_tokens": completion.completion_tokens if completion else 0,
                "latency_s": completion.latency_s if completion else None,
                "error": f"{error.code}: {error}" if error else "",
            })
        with transaction(self.db):
            call_ids = gen_db.insert_calls(self.db, self.generation_job_id, calls)
            rows, positions = [], []
            for done, call_id in zip(batch, call_ids, strict=True):
                accepted = [o for o in done.outcomes if o.accepted]
                rows.extend({"text": o.text, "text_hash": cached_hash(o.text), "source": "synthetic", "split": "train",
                             "reference_label": done.slot.prompt.label, "generation_call_id": call_id,
                             "generation_mode": self.config.mode, "generation_job_id": self.generation_job_id,
                             "meta": self.meta} for o in accepted)
                positions.extend(done.positions)
            item_ids = items_db.insert_items(self.db, self.project_id, rows) if rows else []
            prompt_tokens = sum(c["prompt_tokens"] for c in calls)
            completion_tokens = sum(c["completion_tokens"] for c in calls)
            gen_db.add_call_totals(
                self.db, self.generation_job_id, n_calls=len(calls),
                n_failed_calls=sum(bool(c["error"]) for c in calls),
                n_accepted=sum(c["n_accepted"] for c in calls), n_rejected=sum(c["n_rejected"] for c in calls),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                cost=self.config.cost(prompt_tokens, completion_tokens))
        for position, item_id in zip(positions, item_ids, strict=True):
            self.index.set_id(position, item_id)

    # --- progress ---
    def summary(self, status: str) -> dict[str, Any]:
        config = self.config
        elapsed = time.monotonic() - self.started
        remaining_total = sum(max(0, n) for n in self.remaining.values())
        rate = self.accepted_this_run / elapsed if elapsed > 0 and self.accepted_this_run else 0.0
        eta = round(remaining_total / rate, 1) if rate and remaining_total else (None if remaining_total else 0.0)
        return {
            "job_id": self.job_id,
            "generation_job_id": self.generation_job_id,
            "status": status,
            "accepted": int(sum(self.accepted.values())),
            "accepted_per_label": {label: int(self.accepted[label]) for label in config.labels},
            "target_per_label": config.per_label,
            "targets": {label: config.target_for(label) for label in config.labels},
            "rejected": dict(sorted(self.rejected.items())),
            "calls": int(self.totals["calls"]),
            "failed_calls": int(self.totals["failed_calls"]),
            "prompt_tokens": int(self.totals["prompt_tokens"]),
            "completion_tokens": int(self.totals["completion_tokens"]),
            "cost": round(config.cost(self.totals["prompt_tokens"], self.totals["completion_tokens"]), 6),
            "seconds": round(elapsed, 3),
            "eta_s": eta,
            "last_error": str(self.last_error) if self.last_error else "",
        }

    def _progress(self, status: str = "running") -> bool:
        summary = self.summary(status)
        per_label = ", ".join(f"{label} {summary['accepted_per_label'][label]}/{self.config.target_for(label)}"
                              for label in self.config.labels)
        return jobs_db.update_progress(self.db, self.job_id, done=summary["accepted"],
                                       total=self.config.target_total, message=per_label, result=summary)

    # --- the run ---
    def run(self) -> dict[str, Any]:
        try:
            gen_db.set_status(self.db, self.generation_job_id, "running")
            self._load()
            if self.backend is None:
                self.backend = make_backend(self.config)
            status = self._loop_batches() if self.config.batch else self._loop()
            gen_db.set_status(self.db, self.generation_job_id, status)
            result = self.summary(status)
            stopped = [label for label in self.config.labels
                       if self.remaining[label] > 0 and self.calls_issued[label] >= self.call_budget[label]]
            if stopped and self.config.calls_per_label is not None:
                result["message"] = (f"stopped before the target for {', '.join(stopped)}: the fixed budget of "
                                     f"{self.config.calls_per_label} calls per label is spent")
            elif stopped:
                result["message"] = (f"stopped before the target for {', '.join(stopped)}: the call budget "
                                     f"({self.config.max_calls_per_text:g} calls per missing text) ran out; "
                                     "most outputs were rejected — see the reasons")
            jobs_db.update_progress(self.db, self.job_id, done=result["accepted"], total=self.config.target_total,
                                    result=result)
            return result
        except BaseException:
            gen_db.set_status(self.db, self.generation_job_id, "failed")
            raise
        finally:
            self.db.conn.close()

    def _loop_batches(self) -> str:
        from core.generation.batch import run_batches  # it builds on this module

        return run_batches(self)

    def _loop(self) -> str:
        limiter = RateLimiter(self.config.requests_per_minute)
        ready: queue.SimpleQueue[Slot | None] = queue.SimpleQueue()
        finished: queue.SimpleQueue[tuple[Slot, CallResult]] = queue.SimpleQueue()
        self.outstanding = 0  # prompts queued or being called
        self.prefetch = self.config.concurrency
        cancelled = False
        fatal: BackendCallError | None = None
        max_consecutive = max(10, 2 * self.config.concurrency)
        last_flush = last_progress = time.monotonic()
        workers = [threading.Thread(target=self._worker, args=(ready, finished, limiter), daemon=True,
                                    name=f"generate-{i}") for i in range(self.config.concurrency)]
        for worker in workers:
            worker.start()
        self._progress()
        try:
            self._fill(ready)
            while self.outstanding:
                done = []
                try:
                    done.append(finished.get(timeout=WAIT_TIMEOUT_S))
                    while True:
                        done.append(finished.get_nowait())
                except queue.Empty:
                    pass
                for slot, result in done:
                    self.outstanding -= 1
                    self._release(slot, result)
                    if result.error is not None and result.error.fatal:
                        fatal = fatal or result.error
                if self.consecutive_errors >= max_consecutive:
                    fatal = fatal or self.last_error
                if not (cancelled or fatal):
                    self._fill(ready)  # conservative: the finished calls still count until screened
                for slot, result in done:
                    self._finish_call(slot, result)
                if cancelled or fatal:
                    self._take_back(ready)
                else:
                    self._fill(ready)
                now = time.monotonic()
                if now - last_flush >= FLUSH_EVERY_S or len(self.unsaved) >= FLUSH_MAX_CALLS or not self.outstanding:
                    self._flush()
                    last_flush = now
                if now - last_progress >= PROGRESS_EVERY_S or not self.outstanding:
                    last_progress = now
                    if self._progress() and not cancelled:
                        cancelled = True
                        self._take_back(ready)
        finally:
            self._take_back(ready)  # on an exception too: no queued prompt is started after this
            for _ in workers:
                ready.put(None)
        for worker in workers:
            worker.join()
        self._flush()
        if fatal is not None:
            raise SynthloopError(f"generation stopped: {fatal}")
        return "cancelled" if cancelled else "done"


def run_generation(db_path: str, job_id: int) -> dict[str, Any]:
    """``JOB_RUNNERS["generation"]``: run (or resume) a generation job to its target."""
    return GenerationRun(db_path, job_id).run()


def run_generation_with_backend(db_path: str, job_id: int, backend: Backend, *,
                                embedder: Any = None) -> dict[str, Any]:
    """The same run with a given backend (and grounding embedder) object (tests, benchmarks)."""
    return GenerationRun(db_path, job_id, backend=backend, embedder=embedder).run()
