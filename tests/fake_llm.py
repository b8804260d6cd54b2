"""A real, local OpenAI-compatible HTTP server for tests and benchmarks (stdlib only, 127.0.0.1, a free port).

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` and is programmable while it runs::

    with FakeLLMServer(latency_s=0.2) as server:
        server.base_url                      # "http://127.0.0.1:PORT/v1"
        server.reply = lambda request, n: f"text {n}"   # content for the n-th completion (0-based)
        server.inject(RateLimit(retry_after=0.1), times=2)  # the next two completions answer 429
        server.fault_when = lambda request, n: ServerError() if n % 7 == 3 else None
        server.requests                      # every request: RecordedRequest(path, headers, body, ...)

Behaviour, in order, for a completion: bad key (when ``api_key`` is set) → 401 (with ``echo_key_in_errors`` its
body repeats the key it was sent, as some servers do); unknown ``model`` → 404;
a queued fault (``inject``), else ``fault_when``'s fault; else wait ``latency_s`` and answer ``reply``.
``reply`` may return a string (the message content), a ``Choice(content, finish_reason)``, a list of those
(one choice each) or a Fault.
A labelling prompt (the LLM annotator's instruction, ``LABELLING_PROMPT``) is answered by ``labeller`` when one is
set, instead of ``reply``: a callable ``(model, text) -> answer``, a dict text → answer (every model alike) or a
dict model → (dict text → answer), so that two panel members can disagree; a text it does not know gets
``UNKNOWN_ANSWER``, which names no label.
Faults: ``RateLimit(retry_after)``, ``ServerError(status)``, ``Slow(seconds)`` (then a normal reply),
``Truncated()`` (promises more bytes than it sends), ``Garbage()`` (200 with a non-JSON body),
``EmptyChoices()`` (200 with ``choices: []``), ``Status(code, body)``.

The Batch API (as OpenAI's): ``POST /v1/files`` (multipart, ``purpose=batch``; the upload is kept in
``server.files``), ``POST /v1/batches`` (``server.batches[id].requests`` holds the uploaded JSONL lines),
``GET /v1/batches/{id}`` and ``GET /v1/files/{id}/content``. A batch is ``validating`` when created, ``in_progress``
(with ``request_counts``) on each poll, and ends at its ``server.batch_polls``-th poll (default 2; change it while
batches run to hold or release them): ``completed``, with an output file of one line per request —
``{custom_id, response: {status_code: 200, body: <the chat completion the live endpoint would give>}}``, through
the same completion numbering, faults, ``reply`` and ``labeller`` — and an error file for requests that got a fault
or an unknown model (``response.status_code`` 4xx/5xx with an error body); or, while ``server.batch_failure =
BatchFailure("failed" | "expired" | "cancelled", code, message)`` is set, that end with no output (``failed``
carries the code and message in the batch's ``errors``). ``server.batch_submissions()`` lists the batches created.
"""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = ["river", "market", "quiet", "engine", "garden", "winter", "signal", "copper", "theatre", "harbour", "lantern", "meadow", "orbit", "pepper", "canyon", "violin", "marble", "thunder", "ribbon", "compass", "glacier", "saddle", "falcon", "velvet", "cabin", "tunnel", "orchard", "beacon", "ladder", "whistle", "anchor", "pillow", "saffron", "blossom", "quarry", "feather", "mirror", "satchel", "cobalt", "puzzle", "timber", "lagoon", "ember", "parcel", "jigsaw", "nectar", "summit", "bramble", "trolley", "walnut", "galaxy", "pebble", "cactus", "fossil", "harvest", "kettle", "mosaic", "nomad", "oyster", "paddle", "quartz", "raven", "sketch", "tundra", "umbrella", "vapour", "wander", "yarn", "zephyr", "acorn", "biscuit", "cradle", "dolphin", "easel", "fiddle", "goblet", "hammock", "igloo", "jasmine", "kayak", "lemon", "mango", "noodle", "olive", "pirate", "quiver", "rocket", "scarf", "tulip", "urchin", "vessel", "waffle", "yodel", "zipper", "bamboo", "candle", "donkey", "eclipse", "fennel", "granite", "hazel", "indigo"]


@dataclass(frozen=True)
class RateLimit:
    retry_after: float = 0.05


@dataclass(frozen=True)
class ServerError:
    status: int = 500


@dataclass(frozen=True)
class Slow:
    seconds: float = 5.0


@dataclass(frozen=True)
class Truncated:
    pass


@dataclass(frozen=True)
class Garbage:
    body: str = "<html>this is not JSON{{"


@dataclass(frozen=True)
class EmptyChoices:
    pass


@dataclass(frozen=True)
class Status:
    code: int
    body: dict[str, Any] = field(default_factory=lambda: {"error": {"message": "fake error"}})


@dataclass(frozen=True)
class Choice:
    """A reply choice with its own finish reason (``"length"``: cut off by max_tokens)."""

    content: str
    finish_reason: str = "stop"


Fault = RateLimit | ServerError | Slow | Truncated | Garbage | EmptyChoices | Status
Reply = Callable[[dict[str, Any], int], "str | Choice | list[str | Choice] | Fault"]
Labeller = Callable[[str, str], str] | Mapping[str, str] | Mapping[str, Mapping[str, str]]
LABELLING_PROMPT = "Classify the text into exactly one of these labels"
UNKNOWN_ANSWER = "I cannot tell"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any] | None
    received_at: float
    index: int | None  # the completion number (None for other paths)


def varied_text(n: int, words: int = 14, *, prefix: str = "") -> str:
    """A deterministic, distinct-looking text for completion ``n`` (no near-duplicates between numbers)."""
    rng = random.Random(n * 7919 + 17)
    body = " ".join(rng.sample(WORDS, words))
    return f"{prefix}{body[0].upper()}{body[1:]}."


def default_reply(request: dict[str, Any], n: int) -> str:
    return varied_text(n)


def _last_user(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def chat_completion(body: dict[str, Any], n: int, content: Any, *, empty: bool = False) -> dict[str, Any]:
    """The chat completion body for completion ``n`` whose ``reply`` was ``content`` (live, or one batch answer);
    token counts are words."""
    choices = [c if isinstance(c, Choice) else Choice(str(c)) for c in (content if isinstance(content, list)
                                                                          else [content])]
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    completion_tokens = sum(len(c.content.split()) for c in choices)
    return {
        "id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model"),
        "choices": [] if empty else [
            {"index": i, "message": {"role": "assistant", "content": c.content}, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


# ==== Batch API (files and batches endpoints) ===================================================================
# POST /v1/files, POST /v1/batches, GET /v1/batches/{id}, GET /v1/files/{id}/content; see the module docstring.


@dataclass(frozen=True)
class BatchFailure:
    """How the next batches to end do so instead of completing: ``failed`` (with ``code``/``message`` in the batch's
    ``errors``), ``expired`` or ``cancelled``."""

    status: str = "failed"
    code: str = "invalid_request"
    message: str = "The batch input file is invalid."


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    requests: list[dict[str, Any]]  # the uploaded JSONL, one dict a line
    metadata: dict[str, Any]
    created_at: int
    status: str = "validating"
    polls: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        ended = {"completed": "completed_at", "failed": "failed_at", "expired": "expired_at",
                 "cancelled": "cancelled_at"}.get(self.status)
        return {
            "id": self.id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": self.input_file_id,
            "completion_window": "24h", "status": self.status, "created_at": self.created_at,
            "expires_at": self.created_at + 86_400, "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "metadata": self.metadata,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "request_counts": {"total": len(self.requests), "completed": self.completed, "failed": self.failed},
            **({ended: int(time.time())} if ended else {}),
        }


class BatchEndpoints:
    """The Batch API half of :class:`FakeLLMServer` (state set up by ``_init_batches``)."""

    def _init_batches(self) -> None:
        self.batch_polls = 2  # a batch completes (or meets batch_failure) at its batch_polls-th poll
        self.batch_failure: BatchFailure | None = None
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, FakeBatch] = {}
        self._batch_lock = threading.Lock()

    def batch_submissions(self) -> list[RecordedRequest]:
        """Every ``POST /v1/batches`` (a batch created)."""
        return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/").endswith("/batches")]

    # --- routing (called by the handler first; False: not a batch route) ---
    def _batch_route(self, handler: Any, raw: bytes) -> bool:
        path = handler.path.split("?")[0].rstrip("/")
        routes = [("POST", r".*/files", self._upload), ("POST", r".*/batches", self._create_batch),
                  ("GET", r".*/batches/([^/]+)", self._poll_batch), ("GET", r".*/files/([^/]+)/content", self._file)]
        for method, pattern, action in routes:
            found = re.fullmatch(pattern, path)
            if found and handler.command == method:
                if handler._authorised():
                    action(handler, raw, *found.groups())
                return True
        return False

    def _upload(self, handler: Any, raw: bytes) -> None:
        head = f"Content-Type: {handler.headers.get('Content-Type', '')}\r\n\r\n".encode()
        form = BytesParser(policy=HTTP).parsebytes(head + raw)
        fields = {part.get_param("name", header="content-disposition"): part
                  for part in (form.iter_parts() if form.is_multipart() else [])}
        purpose = fields["purpose"].get_content().strip() if "purpose" in fields else None
        handler._record({"purpose": purpose}, None)
        if "file" not in fields or purpose != "batch":
            handler._error(400, "send a multipart form with a file and purpose=batch", "invalid_request")
            return
        data = fields["file"].get_payload(decode=True) or b""
        with self._batch_lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        handler._send_json(200, {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                 "filename": fields["file"].get_filename() or "upload", "purpose": "batch",
                                 "status": "processed"})

    def _create_batch(self, handler: Any, raw: bytes) -> None:
        body = json.loads(raw or b"{}")
        handler._record(body, None)
        data = self.files.get(body.get("input_file_id", ""))
        if data is None:
            handler._error(400, f"no file {body.get('input_file_id')!r}", "invalid_request")
            return
        requests = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        with self._batch_lock:
            batch = FakeBatch(f"batch_{len(self.batches) + 1}", body["input_file_id"], requests,
                              body.get("metadata") or {}, int(time.time()))
            self.batches[batch.id] = batch
        handler._send_json(200, batch.to_dict())

    def _poll_batch(self, handler: Any, raw: bytes, batch_id: str) -> None:
        handler._record(None, None)
        with self._batch_lock:
            batch = self.batches.get(batch_id)
            if batch is not None and batch.status in ("validating", "in_progress"):
                batch.polls += 1
                if batch.polls >= self.batch_polls:
                    self._end_batch(batch)
                else:
                    batch.status = "in_progress"
                    batch.completed = len(batch.requests) * batch.polls // self.batch_polls
        if batch is None:
            handler._error(404, f"No batch found with id '{batch_id}'.", "not_found")
            return
        handler._send_json(200, batch.to_dict())

    def _file(self, handler: Any, raw: bytes, file_id: str) -> None:
        handler._record(None, None)
        data = self.files.get(file_id)
        if data is None:
            handler._error(404, f"No file found with id '{file_id}'.", "not_found")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # --- answers ---
    def _end_batch(self, batch: FakeBatch) -> None:
        failure = self.batch_failure
        if failure is not None:
            batch.status = failure.status
            if failure.status == "failed":
                batch.errors = [{"code": failure.code, "message": failure.message, "line": None, "param": None}]
            return
        answers, errors = [], []
        for request in batch.requests:
            status, body = self._batch_answer(request.get("body") or {})
            line = {"id": f"batch_req_{len(answers) + len(errors)}", "custom_id": request.get("custom_id"),
                    "response": {"status_code": status, "request_id": f"req_{batch.id}", "body": body}, "error": None}
            (answers if status == 200 else errors).append(json.dumps(line))
        batch.status, batch.completed, batch.failed = "completed", len(answers), len(errors)
        for lines, kind in ((answers, "output"), (errors, "error")):
            if lines:
                file_id = f"file-{batch.id}-{kind}"
                self.files[file_id] = ("\n".join(lines) + "\n").encode()
                setattr(batch, f"{kind}_file_id", file_id)

    def _batch_answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of one batch request: the live endpoint's answer to the same body (its faults, then
        ``reply`` / ``labeller`` through the same completion numbering)."""
        n, fault = self._next_completion(body)
        if body.get("model") not in self.models:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                   "code": "model_not_found"}}
        content = fault if fault is not None and not isinstance(fault, Slow | EmptyChoices) else self._content(body, n)
        if isinstance(content, Status):
            return content.code, content.body
        if isinstance(content, RateLimit):
            return 429, {"error": {"message": "Rate limit reached.", "code": "rate_limit_exceeded"}}
        if isinstance(content, ServerError | Garbage | Truncated):
            return getattr(content, "status", 500), {"error": {"message": "The server had an error.",
                                                               "code": "server_error"}}
        return 200, chat_completion(body, n, content, empty=isinstance(fault, EmptyChoices))


# ==== end of the Batch API ========================================================================================


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent clients: the default backlog of 5 drops connections
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that was killed or timed out resets its connection: expected here, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeLLMServer(BatchEndpoints):
    """Start with ``with FakeLLMServer(...) as server`` (or ``start()``/``stop()``); see the module docstring."""

    def __init__(
        self,
        *,
        models: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
        latency_s: float = 0.0,
        reply: Reply | None = None,
        fault_when: Callable[[dict[str, Any], int], Fault | None] | None = None,
        record_bodies: bool = True,
        echo_key_in_errors: bool = False,
        labeller: Labeller | None = None,
    ) -> None:
        self.models = tuple(models)
        self.api_key = api_key
        self.echo_key_in_errors = echo_key_in_errors
        self.latency_s = latency_s
        self.reply: Reply = reply or default_reply
        self.labeller = labeller
        self._init_batches()  # the Batch API's state (BatchEndpoints)
        self.fault_when = fault_when
        self.record_bodies = record_bodies
        self.requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._completions = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ---
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completions(self) -> int:
        """How many completion requests arrived (including ones answered with a fault)."""
        return self._completions

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` completion requests with ``fault``."""
        with self._lock:
            self._faults.extend([fault] * times)

    def completion_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FakeLLMServer:
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- behaviour ---
    def _content(self, body: dict[str, Any], n: int) -> Any:
        """The labeller's answer to a labelling prompt when there is a labeller, else ``reply``'s."""
        prompt = _last_user(body)
        if self.labeller is None or LABELLING_PROMPT not in prompt:
            return self.reply(body, n)
        text = labelled_text(prompt)
        model = str(body.get("model"))
        if callable(self.labeller):
            return self.labeller(model, text)
        answers = self.labeller.get(model) if isinstance(self.labeller.get(model), Mapping) else self.labeller
        return answers.get(text, UNKNOWN_ANSWER)

    def _next_completion(self, body: dict[str, Any]) -> tuple[int, Fault | None]:
        with self._lock:
            n = self._completions
            self._completions += 1
            fault = self._faults.popleft() if self._faults else None
        if fault is None and self.fault_when is not None:
            fault = self.fault_when(body, n)
        return n, fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers: clients reuse connections
            # Headers and body leave in one segment and without Nagle's delay; otherwise every reply waits
            # ~40 ms for the client's delayed ACK and the server, not the client, sets the throughput.
            disable_nagle_algorithm = True
            wbufsize = -1

            def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
                return

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
                self._send_json(status, {"error": {"message": message, "type": "invalid_request_error",
                                                   "code": code}}, headers)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                sent = self.headers.get("Authorization", "")
                if sent == f"Bearer {server.api_key}":
                    return True
                presented = sent.removeprefix("Bearer ")
                self._error(401, f"Incorrect API key provided: {presented}. Your key starts with {presented[:10]}."
                            if server.echo_key_in_errors else "Incorrect API key provided.", "invalid_api_key")
                return False

            def _record(self, body: dict[str, Any] | None, index: int | None) -> None:
                with server._lock:
                    server.requests.append(RecordedRequest(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                        body if server.record_bodies else None, time.time(), index))

            def do_GET(self) -> None:
                if server._batch_route(self, b""):
                    return
                self._record(None, None)
                if not self.path.rstrip("/").endswith("/models"):
                    self._error(404, f"no route {self.path}", "not_found")
                    return
                if not self._authorised():
                    return
                self._send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if server._batch_route(self, raw):
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._record(None, None)
                    self._error(400, "request body is not JSON", "bad_request")
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._record(body, None)
                    self._error(404, f"no route {self.path}", "not_found")
                    return
                n, fault = server._next_completion(body)
                self._record(body, n)
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._complete(body, n, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _complete(self, body: dict[str, Any], n: int, fault: Fault | None) -> None:
                if not self._authorised():
                    return
                model = body.get("model")
                if model not in server.models:
                    self._error(404, f"The model `{model}` does not exist or you do not have access to it.",
                                "model_not_found")
                    return
                if isinstance(fault, RateLimit):
                    self._error(429, "Rate limit reached, retry later.", "rate_limit_exceeded",
                                {"retry-after": f"{fault.retry_after:g}",
                                 "retry-after-ms": str(int(fault.retry_after * 1000))})
                    return
                if isinstance(fault, ServerError):
                    self._error(fault.status, "The server had an error while processing your request.", "server_error")
                    return
                if isinstance(fault, Status):
                    self._send_json(fault.code, fault.body)
                    return
                if isinstance(fault, Slow):
                    time.sleep(fault.seconds)
                if server.latency_s:
                    time.sleep(server.latency_s)
                if isinstance(fault, Garbage):
                    data = fault.body.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                content = server._content(body, n)
                if isinstance(content, RateLimit | ServerError | Slow | Truncated | Garbage | EmptyChoices | Status):
                    self._complete(body, n, content)
                    return
                payload = chat_completion(body, n, content, empty=isinstance(fault, EmptyChoices))
                if isinstance(fault, Truncated):
                    data = json.dumps(payload).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send_json(200, payload)

        return Handler


def labelled_text(prompt: str) -> str:
    """The text a labelling prompt asks about: what follows its last ``Text: `` up to ``Label:`` (the whole
    prompt when it has no ``Text: ``)."""
    _, found, rest = prompt.rpartition("Text: ")
    return rest.split("\nLabel:")[0].strip() if found else prompt.strip()


def last_user_message(request: dict[str, Any]) -> str:
    """The content of the last user message of a recorded chat request (handy in ``reply`` functions)."""
    return _last_user(request)


def main(argv: list[str] | None = None) -> None:
    """``python tests/fake_llm.py --latency 0.2``: serve in its own process (benchmarks keep the server's work off
    the client's GIL); prints the base URL as the first line of stdout, then serves until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    server = FakeLLMServer(latency_s=args.latency, models=tuple(args.model or ["fake-model"]), api_key=args.api_key,
                           record_bodies=False)
    server.start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.stdout.write("stopped\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
