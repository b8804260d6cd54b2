"""Generation through a provider's Batch API (OpenAI's ``/v1/files`` and ``/v1/batches``: about half the price,
answers within hours), the loop of a generation job whose config has ``batch`` on.

One round builds the prompts each label still needs (its remainder × ``OVERGENERATE``, within its call budget),
records them in the database, uploads them as a JSONL file, creates the batch, polls it every ``batch_poll_s``
(progress and cancel through the job table) and, when it ends, ingests every answer through the live loop's own
screening and writing (``GenerationRun._release``, ``_finish_call``, ``_flush``), so duplicates, filters,
provenance, tokens and cost are exactly those of live calls. Rounds repeat until every label has its target or has
spent its call budget. A batch that fails, expires or is cancelled at the provider fails the job with the
provider's reason (after keeping whatever answers it did return).

Resumable: the requests are recorded before anything is sent, and the provider's batch id as soon as it exists, so
a killed or cancelled job that is resumed polls its batch instead of paying for it again (a job killed in the
moment between the provider's answer and that write submits the same requests once more). A batch is marked
ingested in the transaction that writes its calls, so it is never ingested twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import SynthloopError
from core.generation import prompts
from core.generation.api_keys import redact_secrets
from core.generation.backends import (
    BackendCallError,
    Completion,
    ErrorCode,
    OpenAIBackend,
    chat_request_body,
    parse_chat_response,
)
from core.generation.jobs import CallResult, Slot, call_seed
from core.generation.seeds import SeedExample
from core.generation.steering import Steering
from db import generation_batch as batch_db
from db import items as items_db
from db import jobs as jobs_db
from db import transaction

if TYPE_CHECKING:
    from core.generation.jobs import GenerationRun

OVERGENERATE = 1.25  # requests per missing text: one round absorbs the usual rejects instead of a second day-long one
MAX_REQUESTS = 50_000  # OpenAI's limit per batch
ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
COMPLETED = "completed"
UNSUCCESSFUL = frozenset({"failed", "expired", "cancelled"})  # the provider's end states without (all) answers
WHY_UNSUCCESSFUL = {
    "failed": "the provider refused it",
    "expired": f"it did not finish within its completion window ({COMPLETION_WINDOW})",
    "cancelled": "it was cancelled at the provider",
}
STATUS_CODES: dict[int, ErrorCode] = {400: "bad_request", 401: "auth", 403: "auth", 404: "model", 408: "timeout",
                                      422: "bad_request", 429: "rate_limit"}

T = TypeVar("T")


@dataclass
class PendingBatch:
    """A batch recorded in the database and not yet ingested: its row, the provider's id once it has one, and the
    calls it carries by ``custom_id``."""

    batch_id: int
    provider_batch_id: str | None
    submitted_at: datetime | None
    slots: dict[str, Slot]


class BatchAPI:
    """The provider's files and batches endpoints, through the backend's own openai client (its key, retries and
    back-off) and error mapping."""

    def __init__(self, backend: object) -> None:
        if not isinstance(backend, OpenAIBackend):
            raise SynthloopError(f"the Batch API needs the openai backend, not {type(backend).__name__}: use "
                                 "{backend} openai or leave batch off", fields=("backend",))
        import openai

        self._openai = openai
        self.backend = backend
        self.where = backend.base_url

    def _call(self, doing: str, action: Callable[[], T], *, after: str = "") -> T:
        try:
            return action()
        except self._openai.NotFoundError:
            raise SynthloopError(f"{self.where} has no Batch API ({doing} answered 404): leave batch off, or use a "
                                 "provider that offers it" + after) from None
        except self._openai.OpenAIError as exc:
            raise SynthloopError(f"batch API: {doing} failed: {self.backend.map_error(exc)}{after}") from None

    def submit(self, jsonl: bytes, *, metadata: dict[str, str]) -> tuple[str, str, str]:
        """Upload the requests and create the batch: ``(batch id, input file id, status)``."""
        client = self.backend.client
        uploaded = self._call("uploading the requests", lambda: client.files.create(
            file=("requests.jsonl", jsonl, "application/jsonl"), purpose="batch"))
        batch = self._call("creating the batch", lambda: client.batches.create(
            input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW, metadata=metadata))
        return batch.id, uploaded.id, batch.status

    def retrieve(self, provider_batch_id: str) -> Any:
        return self._call(f"polling batch {provider_batch_id}",
                          lambda: self.backend.client.batches.retrieve(provider_batch_id),
                          after="; resume the job to poll it again")

    def download(self, file_id: str) -> str:
        return self._call(f"downloading file {file_id}", lambda: self.backend.client.files.content(file_id).text,
                          after="; resume the job to download it again")


# --- the provider's answers, as the live loop's call results (pure) --------------------------------------------


def request_error(status: object, error: object, where: str) -> BackendCallError:
    """One batch request's failure as the error a live call with the same answer would have."""
    details = error if isinstance(error, dict) else {}
    message = str(details.get("message") or details.get("code") or "no reason given")
    code: ErrorCode = STATUS_CODES.get(status, "server") if isinstance(status, int) else "server"
    shown = f"answered {status}" if isinstance(status, int) else "failed"
    return BackendCallError(code, f"{where}: a batch request {shown}: {message}")


def line_result(record: dict[str, Any], where: str, latency_s: float) -> CallResult:
    """One line of a batch's output or error file (``custom_id``, ``response {status_code, body}``, ``error``)."""
    response = record.get("response") if isinstance(record.get("response"), dict) else {}
    status, body = response.get("status_code"), response.get("body")
    if status != 200 or record.get("error"):
        error = record.get("error") or (body.get("error") if isinstance(body, dict) else None)
        return CallResult(None, request_error(status, error, where))
    try:
        text, prompt_tokens, completion_tokens, finish = parse_chat_response(body, where)
    except BackendCallError as exc:
        return CallResult(None, exc)
    return CallResult(Completion(text, prompt_tokens, completion_tokens, latency_s, finish == "length"), None)


def batch_results(jsonl: str, where: str, latency_s: float) -> dict[str, CallResult]:
    """``custom_id → CallResult`` of a batch's output or error file; a line without a custom id is no call's."""
    results = {}
    for line in jsonl.splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("custom_id"), str):
            results[record["custom_id"]] = line_result(record, where, latency_s)
    return results


def ended_reason(batch: Any) -> str:
    """Why a batch ended without (all) its answers, in the provider's words where it gave any."""
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    said = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in errors)
    return redact_secrets(f"batch {batch.id} {batch.status}: {said or WHY_UNSUCCESSFUL.get(batch.status, '')}")


# --- the rounds ---------------------------------------------------------------------------------------------------


def run_batches(run: GenerationRun) -> str:
    """``GenerationRun.run``'s loop when ``config.batch``: rounds of batches to the targets; "done" or "cancelled"."""
    api = BatchAPI(run.backend)
    run._progress()
    pending = restore_pending(run)
    while pending is not None or (pending := build_round(run)) is not None:
        if pending.provider_batch_id is None:
            submit(run, api, pending)
        batch = wait(run, api, pending)
        if batch is None:
            return "cancelled"  # the batch stays recorded: resuming the job polls and ingests it
        ingest(run, api, pending, batch)
        pending = None
        if run._progress():
            return "cancelled"
    return "done"


def round_size(run: GenerationRun, label: str) -> int:
    """Requests for ``label`` in the next batch: its remainder with some to spare, within its call budget."""
    left = run.call_budget[label] - run.calls_issued[label]
    if run.remaining[label] <= 0 or left <= 0:
        return 0
    return min(left, math.ceil(run.remaining[label] * OVERGENERATE), MAX_REQUESTS // len(run.config.labels))


def custom_id(slot: Slot) -> str:
    return f"call-{slot.number}"


def prompt_record(slot: Slot) -> dict[str, Any]:
    """What a request needs to be ingested by a later process: the prompt with its seeds and steering."""
    prompt = slot.prompt
    return {"messages": prompt.messages, "user_message": prompt.user_message, "seed_item_ids": prompt.seed_item_ids,
            "retrieved_ids": prompt.steering.retrieved_ids, "counter_example_ids": prompt.steering.counter_example_ids,
            "attributes": prompt.steering.attributes, "conversation_outputs": slot.conversation.outputs}


def build_round(run: GenerationRun) -> PendingBatch | None:
    """The next round's calls, recorded (not yet submitted); None when no label needs (or may make) more."""
    slots = {}
    for label in run.config.labels:
        for _ in range(round_size(run, label)):
            slot = run._issue(label)
            slots[custom_id(slot)] = slot
    if not slots:
        return None
    requests = [{"custom_id": key, "label": slot.prompt.label, "call_number": slot.number,
                 "prompt": prompt_record(slot)} for key, slot in slots.items()]
    return PendingBatch(batch_db.create_batch(run.db, run.generation_job_id, requests), None, None, slots)


def restore_slot(request: dict[str, Any], texts: dict[int, tuple[str, str | None]]) -> Slot:
    """A recorded request as the live loop's call: the prompt as sent, the examples it showed, its conversation."""
    record, label = request["prompt"], request["label"]

    def examples(ids: list[int]) -> tuple[SeedExample, ...]:
        return tuple(SeedExample(i, texts[i][0], texts[i][1] or "") for i in ids if i in texts)

    steering = Steering(retrieved=examples(record["retrieved_ids"]),
                        counter_examples=examples(record["counter_example_ids"]), attributes=record["attributes"])
    prompt = prompts.CallPrompt(label, record["messages"], record["user_message"], record["seed_item_ids"], steering)
    # A chat prompt is its conversation plus one user turn (a list-form conversation is never continued).
    conversation = prompts.Conversation(label, record["messages"][:-1], record["conversation_outputs"])
    return Slot(conversation, prompt, int(request["call_number"]))


def restore_pending(run: GenerationRun) -> PendingBatch | None:
    """The batch a killed or cancelled run of this job recorded and did not ingest, counted as issued again."""
    row = batch_db.unfinished_batch(run.db, run.generation_job_id)
    if row is None:
        return None
    shown = [i for r in row["requests"] for key in ("retrieved_ids", "counter_example_ids") for i in r["prompt"][key]]
    texts = {row["id"]: (row["text"], row["reference_label"]) for row in items_db.get_items(run.db, shown)}
    slots = {r["custom_id"]: restore_slot(r, texts) for r in row["requests"]}
    for slot in slots.values():
        run.in_flight[slot.prompt.label] += 1
        run.calls_issued[slot.prompt.label] += 1
        run.next_number = max(run.next_number, slot.number + 1)  # its calls are not in the call table yet
    submitted = datetime.fromisoformat(row["submitted_at"]) if row["submitted_at"] else None
    return PendingBatch(int(row["id"]), row["provider_batch_id"], submitted, slots)


def request_lines(run: GenerationRun, pending: PendingBatch) -> bytes:
    config = run.config
    return "".join(json.dumps({
        "custom_id": key, "method": "POST", "url": ENDPOINT,
        "body": chat_request_body(config.model, slot.prompt.messages, temperature=config.temperature,
                                  max_tokens=config.max_tokens, seed=call_seed(config, slot.number)),
    }) + "\n" for key, slot in pending.slots.items()).encode()


def submit(run: GenerationRun, api: BatchAPI, pending: PendingBatch) -> None:
    metadata = {"synthloop_job": str(run.job_id), "synthloop_batch": str(pending.batch_id)}
    provider_batch_id, input_file_id, status = api.submit(request_lines(run, pending), metadata=metadata)
    batch_db.set_submitted(run.db, pending.batch_id, provider_batch_id=provider_batch_id, input_file_id=input_file_id,
                           status=status)
    pending.provider_batch_id, pending.submitted_at = provider_batch_id, datetime.now(UTC)


def wait(run: GenerationRun, api: BatchAPI, pending: PendingBatch) -> Any:
    """Poll until the batch ends (returns the provider's batch) or the job is cancelled (returns None)."""
    assert pending.provider_batch_id is not None
    while True:
        batch = api.retrieve(pending.provider_batch_id)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        total = counts.total if counts and counts.total else len(pending.slots)
        batch_db.set_polled(run.db, pending.batch_id, status=batch.status, n_done=done)
        cancelled = jobs_db.update_progress(
            run.db, run.job_id, done=int(sum(run.accepted.values())), total=run.config.target_total,
            message=f"batch {batch.id}: {batch.status}, {done}/{total} requests done", result=run.summary("running"))
        if batch.status == COMPLETED or batch.status in UNSUCCESSFUL:
            return batch
        if cancelled:
            return None
        time.sleep(run.config.batch_poll_s)


def ingest(run: GenerationRun, api: BatchAPI, pending: PendingBatch, batch: Any) -> None:
    """Screen and write every answer the batch returned, and mark it ingested, in one transaction; then stop the
    job when the batch ended unsuccessfully or its answers say that later ones would fail the same way."""
    submitted = pending.submitted_at or datetime.now(UTC)
    latency_s = max(0.0, (datetime.now(UTC) - submitted).total_seconds())  # the wait for the batch is the call's
    results: dict[str, CallResult] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            results.update(batch_results(api.download(file_id), api.where, latency_s))
    answered = [(slot, results[key]) for key, slot in pending.slots.items() if key in results]
    for key, slot in pending.slots.items():
        if key not in results:  # never answered (the batch ended early): no call was made
            run.in_flight[slot.prompt.label] -= 1
    for slot, result in answered:
        run._release(slot, result)
    for slot, result in answered:
        run._finish_call(slot, result)
    error = "" if batch.status == COMPLETED else ended_reason(batch)
    with transaction(run.db):
        if not batch_db.finish_batch(run.db, pending.batch_id, status=batch.status, error=error):
            raise SynthloopError(f"batch {batch.id} was already ingested: not writing its answers twice")
        run._flush()
    if error:
        raise SynthloopError(f"generation stopped: {error}")
    fatal = next((result.error for _, result in answered if result.error and result.error.fatal), None)
    if fatal is None and not any(result.completion for _, result in answered):
        last = answered[-1][1].error if answered else "no answers at all"
        raise SynthloopError(f"generation stopped: no request of batch {batch.id} was answered ({last})")
    if fatal is not None:
        raise SynthloopError(f"generation stopped: {fatal}")
