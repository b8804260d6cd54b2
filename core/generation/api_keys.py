"""API keys: which environment variables may be sent to an LLM server, where a key is read from, and how a key
that a server echoes back is removed from messages.

``api_key_env`` is typed by whoever configures a job, so it must not be free text: a name such as
``AWS_SECRET_ACCESS_KEY`` or ``PATH`` would send that server secret to any URL. Only ``OPENAI_API_KEY`` and the
names the server's administrator lists are allowed: ``SYNTHLOOP_API_KEY_VARS=NAME1,NAME2`` in the environment
and/or ``api_key_vars = ["NAME1", "NAME2"]`` in ``.streamlit/secrets.toml``. Keys are never stored; every key
read here is remembered (in memory, for this process) so :func:`redact_secrets` can remove it from error text.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.errors import SynthloopError

DEFAULT_KEY_VARIABLE = "OPENAI_API_KEY"
KEY_VARIABLES_ENV = "SYNTHLOOP_API_KEY_VARS"  # the administrator's list of further allowed variables
SECRETS_KEY_VARIABLES = "api_key_vars"  # the same list in .streamlit/secrets.toml
KEY_ENV_FALLBACKS = ("OPENAI_API_KEY", "SYNTHLOOP_API_KEY")
REDACTED = "[redacted]"
MIN_KEY_PIECE = 8  # a run of this many characters of a key is taken for the key (servers echo prefixes)

ROOT = Path(__file__).resolve().parent.parent.parent
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# OpenAI-style keys, whole or masked ("sk-proj-Ab12****wxyz"): never shown, whichever key they are.
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_\-*•]+")
_KEYS_READ: set[str] = set()


def secrets_files() -> list[Path]:
    """Where ``secrets.toml`` is looked for: the working directory's ``.streamlit``, then the project's."""
    return list(dict.fromkeys([Path.cwd() / ".streamlit" / "secrets.toml", ROOT / ".streamlit" / "secrets.toml"]))


def _secrets() -> list[dict[str, Any]]:
    found = []
    for path in secrets_files():
        if not path.is_file():
            continue
        try:
            found.append(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return found


def _names(value: object) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return [item.strip() for item in items if isinstance(item, str) and _ENV_NAME.match(item.strip())]


def allowed_key_variables() -> tuple[str, ...]:
    """``OPENAI_API_KEY``, then the names listed in ``SYNTHLOOP_API_KEY_VARS`` and in ``secrets.toml``."""
    listed = _names(os.environ.get(KEY_VARIABLES_ENV, ""))
    for secrets in _secrets():
        listed += _names(secrets.get(SECRETS_KEY_VARIABLES))
    return tuple(dict.fromkeys([DEFAULT_KEY_VARIABLE, *listed]))


def check_key_variable(name: str) -> None:
    """Refuse a variable name that is not a name at all (a pasted key) or that the server does not allow."""
    if not _ENV_NAME.match(name):
        raise SynthloopError(f"API key variable {name!r} is not an environment variable name: give the variable's "
                             f"name (e.g. {DEFAULT_KEY_VARIABLE}), never the key itself", fields=("api_key_env",))
    if name == DEFAULT_KEY_VARIABLE:  # the common case reads no file
        return
    allowed = allowed_key_variables()
    if name not in allowed:
        choice = allowed[0] if len(allowed) == 1 else "one of " + ", ".join(allowed)
        raise SynthloopError(
            f"API key variable {name!r} is not one this server may send: set {{api_key_env}} to {choice}, or have "
            f"the server's administrator list it in {KEY_VARIABLES_ENV} (comma-separated names) or in "
            f"{SECRETS_KEY_VARIABLES} in .streamlit/secrets.toml", fields=("api_key_env",))


def resolve_api_key(env_name: str) -> str | None:
    """The key from ``$env_name``, then the usual variables, then ``secrets.toml`` (same names, or
    ``[openai] api_key``). Never logged or stored; remembered in memory so errors can be redacted."""
    key = _find_key(env_name)
    if key:
        _KEYS_READ.add(key)
    return key


def _find_key(env_name: str) -> str | None:
    for name in (env_name, *KEY_ENV_FALLBACKS):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    for secrets in _secrets():
        for name in (env_name, *KEY_ENV_FALLBACKS):
            if isinstance(secrets.get(name), str) and secrets[name].strip():
                return secrets[name].strip()
        section = secrets.get("openai")
        if isinstance(section, dict) and isinstance(section.get("api_key"), str) and section["api_key"].strip():
            return section["api_key"].strip()
    return None


def _key_spans(text: str, key: str) -> list[tuple[int, int]]:
    """Where ``text`` holds a run of at least ``MIN_KEY_PIECE`` characters of ``key`` (its start, its end, any
    part: servers echo a key whole, its prefix or its tail), longest first at each place."""
    spans, i = [], 0
    while i <= len(text) - MIN_KEY_PIECE:
        if text[i:i + MIN_KEY_PIECE] in key:
            end = i + MIN_KEY_PIECE
            while end < len(text) and text[i:end + 1] in key:
                end += 1
            spans.append((i, end))
            i = end
        else:
            i += 1
    return spans


def redact_secrets(text: str, keys: Iterable[str] | None = None) -> str:
    """``text`` with every ``sk-…`` token and every key read by this process (or the given ``keys``) replaced by
    ``[redacted]``: the key whole, or any run of 8+ of its characters; a shorter key only as a whole word."""
    for key in sorted(_KEYS_READ if keys is None else set(keys), key=len, reverse=True):
        if len(key) >= MIN_KEY_PIECE:
            for start, end in reversed(_key_spans(text, key)):
                text = text[:start] + REDACTED + text[end:]
        elif key:
            text = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", REDACTED, text)
    return _SK_TOKEN.sub(REDACTED, text)
