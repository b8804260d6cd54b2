"""The OpenAI-compatible backend against a real local HTTP server (tests/fake_llm.py): retries, timeouts,
malformed replies, bad key, unknown model, unreachable; API keys from the environment or secrets.toml."""

from __future__ import annotations

import time

import pytest

from core.generation.backends import BackendCallError, OpenAIBackend, resolve_api_key
from core.generation.jobs import RateLimiter
from tests.fake_llm import Choice, EmptyChoices, FakeLLMServer, Garbage, RateLimit, ServerError, Slow, Truncated

MESSAGES = [{"role": "user", "content": "Write one short review."}]


@pytest.fixture
def server():
    with FakeLLMServer(reply=lambda request, n: f"reply number {n} here") as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_keys(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "SYNTHLOOP_API_KEY", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here unless a test writes one


def backend(server, **kwargs) -> OpenAIBackend:
    return OpenAIBackend(base_url=server.base_url, model="fake-model", **{"timeout_s": 5.0, "max_retries": 3, **kwargs})


def test_a_call_returns_text_tokens_and_latency(server) -> None:
    reply = backend(server).complete(MESSAGES, temperature=0.7, max_tokens=20, seed=3)
    assert reply.text == "reply number 0 here"
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 4)
    assert 0 < reply.latency_s < 5
    body = server.completion_requests()[0].body
    assert body == {"model": "fake-model", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 20, "seed": 3}


def test_429_is_retried_honouring_retry_after(server) -> None:
    server.inject(RateLimit(retry_after=0.3), times=2)
    started = time.perf_counter()
    reply = backend(server).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
    assert reply.text == "reply number 2 here"
    assert server.completions == 3
    assert time.perf_counter() - started >= 0.55  # waited the server's retry-after twice


def test_500_is_retried_then_succeeds(server) -> None:
    server.inject(ServerError(500))
    assert backend(server).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None).text == "reply number 1 here"
    assert server.completions == 2


def test_persistent_429_and_500_become_clear_errors(server) -> None:
    server.inject(RateLimit(retry_after=0.01), times=3)
    with pytest.raises(BackendCallError, match="kept answering 429") as exc:
        backend(server, max_retries=2).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
    assert exc.value.code == "rate_limit" and not exc.value.fatal
    server.inject(ServerError(503), times=1)
    with pytest.raises(BackendCallError, match=r"answered 503 \(server error\)") as exc:
        backend(server, max_retries=0).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
    assert exc.value.code == "server"


def test_a_reply_slower_than_the_timeout_is_a_timeout_error(server) -> None:
    server.inject(Slow(3.0))
    started = time.perf_counter()
    with pytest.raises(BackendCallError, match="did not answer in time") as exc:
        backend(server, timeout_s=0.5, max_retries=0).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
    assert exc.value.code == "timeout"
    assert time.perf_counter() - started < 2.5


@pytest.mark.parametrize(("fault", "code", "message"), [
    (Garbage(), "malformed", "not JSON"),
    (EmptyChoices(), "empty", "no choices"),
    (Truncated(), "dropped", r"closed the connection in the middle of a reply \(truncated body\)"),
])
def test_malformed_and_empty_replies_raise_coded_errors(server, fault, code, message) -> None:
    server.inject(fault)
    if isinstance(fault, Truncated):  # a dropped connection is retried like any network error
        assert backend(server, max_retries=1).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None).text
        server.inject(fault)
    with pytest.raises(BackendCallError, match=message) as exc:
        backend(server, max_retries=0).complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
    assert exc.value.code == code


def test_check_reports_bad_key_unknown_model_and_unreachable(monkeypatch) -> None:
    with FakeLLMServer(api_key="right-key", models=("fake-model", "other")) as fake:
        monkeypatch.setenv("MY_KEY", "wrong-key")
        with pytest.raises(BackendCallError, match=r"rejected the API key \(401\): set MY_KEY to a valid key") as exc:
            backend(fake, api_key_env="MY_KEY").check()
        assert exc.value.fatal
        monkeypatch.delenv("MY_KEY")
        with pytest.raises(BackendCallError, match="no API key found: set the environment variable MY_KEY"):
            backend(fake, api_key_env="MY_KEY").check()
        monkeypatch.setenv("MY_KEY", "right-key")
        assert backend(fake, api_key_env="MY_KEY").check().startswith(f"connected to {fake.base_url}: model "
                                                                      "'fake-model' answered in")
        unknown = OpenAIBackend(base_url=fake.base_url, model="gpt-9", api_key_env="MY_KEY", max_retries=0)
        with pytest.raises(BackendCallError, match="does not serve model 'gpt-9': it lists fake-model, other"):
            unknown.check()
        with pytest.raises(BackendCallError, match=r"does not know model 'gpt-9' \(404\)") as exc:
            unknown.complete(MESSAGES, temperature=1.0, max_tokens=5, seed=None)
        assert exc.value.code == "model"
        port = fake.port
    gone = OpenAIBackend(base_url=f"http://127.0.0.1:{port}/v1", model="fake-model", max_retries=0, timeout_s=2)
    with pytest.raises(BackendCallError, match="cannot reach .* check that the server is running") as exc:
        gone.check()
    assert exc.value.code == "unreachable"


def test_api_key_comes_from_env_then_secrets_toml(monkeypatch, tmp_path) -> None:
    assert resolve_api_key("MY_KEY") is None
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('MY_KEY = "from-secrets"\n')
    assert resolve_api_key("MY_KEY") == "from-secrets"
    monkeypatch.setenv("SYNTHLOOP_API_KEY", "from-fallback-env")
    assert resolve_api_key("MY_KEY") == "from-fallback-env"
    monkeypatch.setenv("MY_KEY", "from-env")
    assert resolve_api_key("MY_KEY") == "from-env"
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[openai]\napi_key = "sectioned"\n')
    monkeypatch.delenv("MY_KEY")
    monkeypatch.delenv("SYNTHLOOP_API_KEY")
    assert resolve_api_key("MY_KEY") == "sectioned"
    with FakeLLMServer(api_key="sectioned") as fake:
        assert backend(fake, api_key_env="MY_KEY").complete(MESSAGES, temperature=1, max_tokens=5, seed=1).text
        assert fake.requests[-1].headers["authorization"] == "Bearer sectioned"


def test_rate_limiter_spaces_starts() -> None:
    limiter = RateLimiter(per_minute=600)  # one start every 0.1 s
    started = time.perf_counter()
    waits = [limiter.acquire() for _ in range(5)]
    assert time.perf_counter() - started >= 0.39
    assert waits[0] == 0.0
    assert RateLimiter(None).acquire() == 0.0


def test_a_reply_cut_off_by_max_tokens_is_marked_truncated() -> None:
    with FakeLLMServer(reply=lambda request, n: Choice("1. one two\n2. three fo", "length")) as fake:
        reply = backend(fake).complete(MESSAGES, temperature=1.0, max_tokens=8, seed=None)
    assert reply.truncated and reply.text == "1. one two\n2. three fo"
