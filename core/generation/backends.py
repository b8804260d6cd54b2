"""LLM backends behind one small protocol: an OpenAI-compatible HTTP endpoint, the embedded SmolLM2 (llama.cpp on
CPU, through xllamacpp) and any causal LM through transformers.

``complete`` sends chat messages and returns the reply with token counts and latency, or raises
:class:`BackendCallError` with a code (``unreachable``, ``dropped``, ``auth``, ``model``, ``rate_limit``,
``server``, ``timeout``, ``malformed``, ``empty``, ``bad_request``, ``load``) and a message that says what to fix. ``check`` is the
page's "test connection". API keys come from the environment or ``.streamlit/secrets.toml`` and are never stored
(``core.generation.api_keys``); every error message is redacted of them when it is made.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from core.errors import BackendError, SynthloopError
from core.generation.api_keys import redact_secrets, resolve_api_key
from core.generation.config import EMBEDDED_MODEL
from core.models import embedded_smollm2_path

ErrorCode = Literal[
    "unreachable", "dropped", "auth", "model", "rate_limit", "server", "timeout", "malformed", "empty", "bad_request",
    "load",
]
# Errors that no retry can fix: the job stops at the first one instead of burning calls.
FATAL_CODES = frozenset({"auth", "model", "load", "bad_request"})
NO_KEY = "no-key-set"  # local servers (vLLM, Ollama, llama.cpp) accept any key; the client insists on one
EMBEDDED_CONTEXT = 4096


class BackendCallError(BackendError):
    """One call failed; ``code`` says why, ``fatal`` whether later calls would fail the same way."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        # The one place backend errors are cleaned: a server may echo the key (or its start) in an error body,
        # and these messages go to the database, job logs, pages and stderr.
        super().__init__(redact_secrets(message))
        self.code = code

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    truncated: bool = False  # stopped by the max-tokens cap: the last text is cut off


class Backend(Protocol):
    name: str
    model: str

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None
    ) -> Completion: ...

    def check(self) -> str: ...


# --- OpenAI-compatible -------------------------------------------------------------------------------


def _httpx_limits(connections: int) -> Any:
    import httpx2

    return httpx2.Limits(max_connections=max(connections, 100), max_keepalive_connections=connections)


class OpenAIBackend:
    """Any server speaking ``/v1/chat/completions`` (OpenAI, Azure-compatible proxies, vLLM, Ollama, llama.cpp).

    The ``openai`` client retries 408/409/429/5xx and connection errors ``max_retries`` times with exponential
    back-off, honouring ``retry-after``; what still fails is mapped to a :class:`BackendCallError`.
    """

    name = "openai"

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_retries: int = 4, max_connections: int = 100) -> None:
        import openai

        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self._openai = openai
        self._key_given = resolve_api_key(api_key_env) is not None
        # One pooled connection per concurrent worker, kept alive between calls.
        http_client = openai.DefaultHttpxClient(limits=_httpx_limits(max(max_connections, 1)))
        self._client = openai.OpenAI(base_url=base_url, api_key=resolve_api_key(api_key_env) or NO_KEY,
                                     timeout=timeout_s, max_retries=max_retries, http_client=http_client)

    @property
    def client(self) -> Any:
        """The configured ``openai.OpenAI`` client (the Batch API runner, ``core.generation.batch``, uses it)."""
        return self._client

    def map_error(self, exc: Exception) -> BackendCallError:
        openai = self._openai
        where = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return BackendCallError("timeout", f"{where} did not answer in time: raise the timeout or lower concurrency")
        if isinstance(exc, openai.APIConnectionError) and "RemoteProtocolError" in type(exc.__cause__).__name__:
            return BackendCallError("dropped", f"{where} closed the connection in the middle of a reply (truncated "
                                    f"body) even after retries: {_short(exc.__cause__)}")
        if isinstance(exc, openai.APIConnectionError):
            return BackendCallError("unreachable", f"cannot reach {where}: check that the server is running and the "
                                    "base URL is right (it usually ends in /v1)")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            hint = (f"set {self.api_key_env} to a valid key" if self._key_given
                    else f"no API key found: set the environment variable {self.api_key_env} or put it in "
                    ".streamlit/secrets.toml")
            return BackendCallError("auth", f"{where} rejected the API key ({exc.status_code}): {hint}; the server "
                                    f"said: {_server_message(exc)}")
        if isinstance(exc, openai.NotFoundError):
            return BackendCallError("model", f"{where} does not know model {self.model!r} (404): pick a model the "
                                    "server lists (test connection shows them) or fix the base URL")
        if isinstance(exc, openai.RateLimitError):
            return BackendCallError("rate_limit", f"{where} kept answering 429 (rate limited) after retries: lower the "
                                    "requests per minute or the concurrency")
        if isinstance(exc, openai.InternalServerError):
            return BackendCallError("server", f"{where} answered {exc.status_code} (server error) after retries")
        if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            return BackendCallError("bad_request", f"{where} refused the request ({exc.status_code}): {_short(exc)}")
        if isinstance(exc, openai.APIStatusError):
            return BackendCallError("server", f"{where} answered {exc.status_code}: {_short(exc)}")
        return BackendCallError("malformed", f"{where} sent a reply that is not a chat completion: {_short(exc)}")

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None
    ) -> Completion:
        body = chat_request_body(self.model, messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        started = time.perf_counter()
        try:
            # The client's plain ``post`` keeps its retries, back-off, timeouts and error classes but skips
            # building typed request/response models (~1 ms of CPU per call, which matters at 100+ calls/s
            # on a small machine). The reply is validated below instead.
            response = self._client.post("/chat/completions", body=body, cast_to=object)
        except self._openai.OpenAIError as exc:
            raise self.map_error(exc) from None
        except ValueError as exc:  # a body that is not JSON
            raise BackendCallError("malformed", f"{self.base_url} sent a reply that is not JSON: {_short(exc)}") from None
        latency = time.perf_counter() - started
        text, prompt_tokens, completion_tokens, finish = parse_chat_response(response, self.base_url)
        return Completion(text, prompt_tokens, completion_tokens, latency, finish == "length")

    def list_models(self) -> list[str]:
        try:
            return sorted(model.id for model in self._client.models.list())
        except self._openai.OpenAIError as exc:
            raise self.map_error(exc) from None

    def check(self) -> str:
        """Reach the server, check the key and the model; a message saying what works, or BackendCallError."""
        try:
            models = self.list_models()
        except BackendCallError as exc:
            if exc.code != "model":  # some servers have no /models: fall back to a one-token call below
                raise
            models = []
        if models and self.model not in models:
            shown = ", ".join(models[:10]) + (" …" if len(models) > 10 else "")
            raise BackendCallError("model", f"{self.base_url} does not serve model {self.model!r}: it lists {shown}")
        reply = self.complete([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=2, seed=0)
        return f"connected to {self.base_url}: model {self.model!r} answered in {reply.latency_s:.2f} s"


def chat_request_body(model: str, messages: list[dict[str, str]], *, temperature: float, max_tokens: int,
                      seed: int | None) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body a call sends (live, or as one line of a batch)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        body["seed"] = seed
    return body


def parse_chat_response(response: object, where: str) -> tuple[str, int, int, str | None]:
    """``(text, prompt_tokens, completion_tokens, finish_reason)`` of a chat completion body, or
    BackendCallError."""
    if not isinstance(response, dict):
        raise BackendCallError("malformed", f"{where} sent a reply that is not a JSON object")
    choices = response.get("choices")
    if not isinstance(choices, list):
        raise BackendCallError("malformed", f"{where} sent a reply without a choices list")
    if not choices:
        raise BackendCallError("empty", f"{where} sent a reply with no choices")
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    text = message.get("content")
    if text is not None and not isinstance(text, str):
        raise BackendCallError("malformed", f"{where} sent a reply whose content is not text")
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}

    def count(key: str) -> int:
        value = usage.get(key)
        return int(value) if isinstance(value, int | float) and value >= 0 else 0

    finish = first.get("finish_reason")
    return text or "", count("prompt_tokens"), count("completion_tokens"), finish if isinstance(finish, str) else None


def _server_message(exc: Any, limit: int = 200) -> str:
    """The message of an error body (``{"error": {"message": …}}``), else the exception's text; shortened."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message if isinstance(message, str) and message.strip() else exc).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] + ("…" if len(text) > limit else "")


# --- embedded (llama.cpp through xllamacpp) ----------------------------------------------------------

_LOAD_LOCK = threading.Lock()
_LLAMA_SERVERS: dict[tuple[str, int, int], Any] = {}


def llama_threads() -> int:
    """Threads for llama.cpp: ``SYNTHLOOP_LLAMA_THREADS``, else half the cores (llama.cpp's own default).

    llama.cpp's worker threads spin while they wait; on a busy 2-core machine two threads ran at 0.8 tokens/s
    where one ran at 12-19, so using every core is only right on an otherwise idle machine.
    """
    value = os.environ.get("SYNTHLOOP_LLAMA_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, (os.cpu_count() or 2) // 2)


def llama_server_params(path: Path, n_ctx: int, n_threads: int) -> Any:
    """``xllamacpp.CommonParams`` for one in-process llama.cpp server: one slot, quiet, ``n_threads`` throughout."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx
    params.n_parallel = 1  # one slot: calls are serialised anyway, and it keeps the previous prompt's cache
    # Prompt evaluation too: its own thread count otherwise defaults to every core, which spins the same way.
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    # llama.cpp's "extra buffer types" (AMX / repacked weights) crashed in decode on a VM that reports AMX
    # (Firecracker guest, segfault on the first token). Plain CPU buffers work everywhere;
    # SYNTHLOOP_LLAMA_EXTRA_BUFTS=1 turns them back on.
    params.no_extra_bufts = os.environ.get("SYNTHLOOP_LLAMA_EXTRA_BUFTS", "") != "1"
    params.prefill_assistant = True  # a final assistant message is continued, not answered
    params.verbosity = -1
    # Saved prompt states for other slots: there is one slot, and the default keeps up to 8 GiB of them.
    params.cache_ram_mib = 0
    # The server also listens on a random loopback port; nothing here uses it (calls go in-process, past the
    # key check), so a random key keeps other local users out of it.
    params.api_keys = [secrets.token_urlsafe(32)]
    params.n_threads_http = 1
    return params


def load_llama_server(path: Path, n_ctx: int = EMBEDDED_CONTEXT, n_threads: int | None = None) -> Any:
    """One ``xllamacpp.Server`` (llama.cpp's server, in process) per (file, context, threads) per process, loaded
    on first use."""
    n_threads = n_threads or llama_threads()
    key = (str(path), n_ctx, n_threads)
    with _LOAD_LOCK:
        if key not in _LLAMA_SERVERS:
            try:
                import xllamacpp
            except ImportError as exc:
                raise BackendCallError("load", "the embedded generator needs xllamacpp (llama.cpp's prebuilt "
                                       f"wheels), which cannot be imported ({_short(exc)}): run "
                                       "`pip install -r requirements.txt`, or pick another backend") from None
            try:
                _LLAMA_SERVERS[key] = xllamacpp.Server(llama_server_params(path, n_ctx, n_threads))
            except (RuntimeError, ValueError) as exc:
                # xllamacpp says only "Failed to init server" (its log, which would say why, is silenced).
                raise BackendCallError("load", f"llama.cpp could not load {path} as a GGUF model ({_short(exc)}): "
                                       "give the path of a complete .gguf model file") from None
        return _LLAMA_SERVERS[key]


def prefill_split(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], str | None]:
    """``(turns, prefill)``: a final assistant message is the start of the reply, to be continued."""
    if messages and messages[-1].get("role") == "assistant":
        return messages[:-1], messages[-1].get("content", "")
    return messages, None


def llama_chat_request(
    messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None
) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body for the in-process server (the bench replays exactly these)."""
    request: dict[str, Any] = {"messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        request["seed"] = seed
    return request


class EmbeddedBackend:
    """SmolLM2-135M-Instruct (GGUF) on CPU through llama.cpp's server, in process (xllamacpp). One model per
    process; calls are serialised (the CPU is the bottleneck, so concurrency above 1 buys nothing here).

    A final assistant message is continued (prefill) rather than answered, which the list prompt form uses; the
    returned text is the continuation only.
    """

    name = "embedded"
    where = "the embedded model"

    def __init__(self, model: str = EMBEDDED_MODEL, n_ctx: int = EMBEDDED_CONTEXT) -> None:
        self.model = model
        if model == EMBEDDED_MODEL:
            try:
                self.path = embedded_smollm2_path()
            except BackendError as exc:
                raise BackendCallError("load", str(exc)) from None
        else:
            self.path = Path(model).expanduser()
        if not self.path.is_file():
            raise BackendCallError("load", f"no GGUF file at {self.path}: give the path of a .gguf model file")
        self.n_ctx = n_ctx
        self._lock = threading.Lock()

    @property
    def server(self) -> Any:
        return load_llama_server(self.path, self.n_ctx)

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None
    ) -> Completion:
        server = self.server
        request = llama_chat_request(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)
        with self._lock:
            started = time.perf_counter()
            try:
                response = server.handle_chat_completions(request)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise BackendCallError("bad_request", f"{self.where} refused the request: {_short(exc)}") from None
            latency = time.perf_counter() - started
        error = response.get("error") if isinstance(response, dict) else None
        if isinstance(error, dict):  # e.g. the prompt exceeds the context window (code 400)
            code: ErrorCode = "bad_request" if error.get("code") == 400 else "server"
            raise BackendCallError(code, f"{self.where} refused the prompt: {_short(error.get('message', error))}")
        text, prompt_tokens, completion_tokens, finish = parse_chat_response(response, self.where)
        _, prefill = prefill_split(messages)
        if prefill and text.startswith(prefill):  # llama.cpp's server returns the prefill with its continuation
            text = text[len(prefill):]
        return Completion(text, prompt_tokens, completion_tokens, latency, finish == "length")

    def check(self) -> str:
        started = time.perf_counter()
        reply = self.complete([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=8, seed=0)
        return (f"embedded {self.model} ({self.path.name}) loaded and answered in {time.perf_counter() - started:.2f} s"
                f" ({reply.completion_tokens} tokens)")


# --- transformers ------------------------------------------------------------------------------------

_HF_CACHE: dict[str, tuple[Any, Any, str]] = {}


def load_transformers(model: str) -> tuple[Any, Any, str]:
    """Tokenizer, model and device for a local folder or hub id; offline, with a plain error when it is absent."""
    with _LOAD_LOCK:
        if model in _HF_CACHE:
            return _HF_CACHE[model]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = Path(model).expanduser()
        # Nothing is downloaded at run time unless the user allows it: a hub id must already be in the local
        # Hugging Face cache (the target machines have no network).
        kwargs: dict[str, Any] = {"local_files_only": os.environ.get("SYNTHLOOP_ALLOW_DOWNLOADS", "") != "1"}
        if local.is_file() and local.suffix == ".gguf":
            source, kwargs["gguf_file"] = str(local.parent), local.name
        else:
            source = str(local) if local.exists() else model
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            if not local.exists():
                raise BackendCallError(
                    "load", f"model {model!r} is not a local folder nor in the Hugging Face cache, and it cannot be "
                    "downloaded here (downloads are off; there may be no network): download it on a machine with "
                    "network access and give its folder path, or set SYNTHLOOP_ALLOW_DOWNLOADS=1"
                ) from None
            raise BackendCallError("load", f"cannot load model from {model!r}: {_short(exc)}") from None
        device = "cuda" if torch.cuda.is_available() else "cpu"
        lm.to(device).eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        _HF_CACHE[model] = (tokenizer, lm, device)
        return _HF_CACHE[model]


class TransformersBackend:
    """A causal LM via transformers, on the GPU when there is one (calls serialised, one model per process)."""

    name = "transformers"

    def __init__(self, model: str) -> None:
        self.model = model
        self._lock = threading.Lock()

    def _prompt(self, tokenizer: Any, messages: list[dict[str, str]]) -> str:
        turns, prefill = prefill_split(messages)
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        else:
            # A base model without a chat template: the turns as plain text, ending where the reply begins.
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in turns]
            prompt = "\n\n".join(lines) + "\n\nAssistant:"
        return prompt + (prefill or "")

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int, seed: int | None
    ) -> Completion:
        import torch

        tokenizer, lm, device = load_transformers(self.model)
        with self._lock:
            started = time.perf_counter()
            inputs = tokenizer(self._prompt(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            if seed is not None:
                torch.manual_seed(seed)
            sample = temperature > 0
            with torch.inference_mode():
                output = lm.generate(**inputs, max_new_tokens=max_tokens, do_sample=sample,
                                     temperature=temperature if sample else None, top_p=0.95 if sample else None,
                                     pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[0, inputs["input_ids"].shape[1]:]
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            latency = time.perf_counter() - started
        ended = new_tokens.shape[0] > 0 and int(new_tokens[-1]) == tokenizer.eos_token_id
        return Completion(text, int(inputs["input_ids"].shape[1]), int(new_tokens.shape[0]), latency,
                          not ended and int(new_tokens.shape[0]) >= max_tokens)

    def check(self) -> str:
        reply = self.complete([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=4, seed=0)
        return f"transformers model {self.model!r} loaded and answered in {reply.latency_s:.2f} s"


class BackendSettings(Protocol):
    """What choosing a backend needs (a GenerationConfig or an LLMAnnotatorConfig)."""

    backend: str
    model: str
    base_url: str
    api_key_env: str
    timeout_s: float
    max_retries: int


def make_backend(config: BackendSettings) -> Backend:
    if config.backend == "openai":
        return OpenAIBackend(base_url=config.base_url, model=config.model, api_key_env=config.api_key_env,
                             timeout_s=config.timeout_s, max_retries=config.max_retries,
                             max_connections=getattr(config, "concurrency", 100))
    if config.backend == "embedded":
        return EmbeddedBackend(config.model)
    if config.backend == "transformers":
        return TransformersBackend(config.model)
    raise SynthloopError(f"unknown backend {config.backend!r}")
