"""Text normalisation shared by import, generation and dedup."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")
_PUNCT_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def normalise_text(text: str) -> str:
    """Casefolded, NFKC, whitespace collapsed, punctuation trimmed at the edges: equal for trivial variants."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACE.sub(" ", text).strip()
    return _PUNCT_EDGES.sub("", text)


def text_hash(text: str) -> str:
    """Stable hash of the normalised text (the dedup key stored in ``item.text_hash``)."""
    return hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=16).hexdigest()
