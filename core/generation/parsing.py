"""Turning a raw LLM reply into candidate texts and deciding, for each, accepted or rejected with a reason.

Pure and total: nothing here raises on odd input; a bad output becomes a rejected outcome with a reason code
(``core.vocab.RejectReason``).
Near-duplicates are found by character 4-gram Jaccard similarity on normalised text; a MinHash/LSH index keeps
the lookup fast against a whole project, and every candidate it proposes is verified with the exact Jaccard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from core.data.text import normalise_text, text_hash
from core.vocab import RejectReason

SHINGLE_SIZE = 4

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok|absolutely|alright|no problem)\s*[!.,:][^\n]*|"
    r"(?:here(?:'s| is| are)|below (?:is|are)|this is|the following)\b[^\n]*?(?::|\.\.\.|!)\s*)$",
    re.IGNORECASE,
)
_INLINE_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok|absolutely)[!.,]?\s*)?"
    r"(?:here(?:'s| is| are)|below (?:is|are))\b[^:\n]{0,80}:\s*",
    re.IGNORECASE,
)
_COURTESY = re.compile(r"^\s*(?:sure|certainly|of course|absolutely)\s*[!.,]\s*", re.IGNORECASE)
_POSTAMBLE = re.compile(
    r"^\s*(?:i hope (?:this|these|that)|let me know|feel free|(?:please )?note(?::| that)|"
    r"this (?:text|review|example|response) (?:is|has|expresses|conveys)|(?:hope|enjoy)\b)", re.IGNORECASE,
)
_MARKER = re.compile(
    r"^\s*(?:\(?\d{1,3}[.):\]](?=\s|$)|[-*\u2022](?=\s)|#\d{1,3}[.:)]?(?=\s)|"
    r"(?:text|example|review|sentence|output|sample|headline|tweet|message)\s*#?\d{1,3}\s*[:.)\-\u2013])\s*",
    re.IGNORECASE,
)
_LEAD_NAME = re.compile(
    r"^\s*(?:text|example|review|sentence|output|answer|sample|headline|tweet|message|response|generated text)"
    r"\s*#?\d{0,3}\s*[:\-\u2013]\s+",
    re.IGNORECASE,
)
_LABEL_LINE = re.compile(r"^\s*\**(?:label|category|class|sentiment|intended label)\**\s*:\s*[^\n]*$",
                         re.IGNORECASE | re.MULTILINE)
_TRAILING_LABEL = re.compile(r"\s*[\[(]\s*(?:label|category|sentiment)\s*:\s*[^\])]+[\])]\s*$", re.IGNORECASE)
_QUOTES = (('"', '"'), ("\u201c", "\u201d"), ("'", "'"), ("\u00ab", "\u00bb"), ("\u2018", "\u2019"), ("`", "`"))
_EMPHASIS = re.compile(r"^(\*\*|__|\*|_)(.+)\1$", re.DOTALL)
_SPACES = re.compile(r"\s+")
_REFUSAL = re.compile(
    r"^(?:(?:i'?m|i am) (?:sorry|afraid)\b[^.!?\n]{0,40}?\b(?:i|we) (?:can(?:'?t|not| not)|am (?:not able|unable)"
    r"|won'?t|do not|don'?t|must decline)"
    r"|i (?:can(?:'?t|not| not)|won'?t|am unable to|am not able to|must decline to) (?:help|assist|provide|generate"
    r"|write|create|fulfil|fulfill|comply|produce|do that)"
    r"|i apologi[sz]e,? (?:but|for)"
    r"|(?:sorry|unfortunately),? (?:but )?i (?:can(?:'?t|not| not)|am unable|won'?t))"
    r"|\bas an ai\b|\bas a(?:n ai)? language model\b|\bi'?m an ai\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Outcome:
    """The verdict on one candidate text; ``match_id`` is the item (or seed) it duplicates, if any."""

    text: str
    accepted: bool
    reason: RejectReason | None = None
    match_id: int | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "accepted": self.accepted, "reason": self.reason, "match_id": self.match_id,
                "similarity": None if self.similarity is None else round(float(self.similarity), 4)}


def _strip_quotes(text: str) -> str:
    changed = True
    while changed and len(text) >= 2:
        changed = False
        emphasis = _EMPHASIS.match(text)
        if emphasis:
            text, changed = emphasis.group(2).strip(), True
            continue
        for left, right in _QUOTES:
            if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
                inner = text[len(left):-len(right)]
                # Only a pair that wraps the whole text: '"Great" acting, "bad" plot' keeps its quotes.
                if left not in inner and right not in inner:
                    text, changed = inner.strip(), True
                    break
    return text


@lru_cache(maxsize=64)
def _label_patterns(label_names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """'positive: …' / '[positive] …' at the start and '(positive)' at the end, for any of the labels."""
    if not label_names:
        return None
    names = "|".join(re.escape(name) for name in sorted(label_names, key=len, reverse=True))
    lead = re.compile(rf"^(?:[\[(]\s*(?:{names})\s*[\])]\s*[:\-\u2013]?\s*|(?:{names})\s*[:\-\u2013]\s+)",
                      re.IGNORECASE)
    trail = re.compile(rf"\s*[\[(]\s*(?:{names})\s*[\])]\s*$", re.IGNORECASE)
    return lead, trail


def clean_text(text: str, label_names: Sequence[str] = ()) -> str:
    """One candidate without numbering, label lines and prefixes, wrapping quotes and extra whitespace."""
    text = _LABEL_LINE.sub("", text or "")
    text = _SPACES.sub(" ", text).strip()
    patterns = _label_patterns(tuple(label_names))
    for _ in range(3):  # prefixes can stack: '1. Review: "…"'
        before = text
        text = _MARKER.sub("", text, count=1).strip()
        text = _LEAD_NAME.sub("", text, count=1).strip()
        text = _TRAILING_LABEL.sub("", text).strip()
        if patterns is not None:
            text = patterns[1].sub("", patterns[0].sub("", text, count=1)).strip()
        text = _strip_quotes(text)
        if text == before:
            break
    return text


def split_reply(raw: str) -> list[str]:
    """The reply's candidate texts (uncleaned): list items when it is a list, else the reply as one text.

    Leading preambles ("Sure! Here is …:") and trailing courtesy lines ("I hope this helps") are dropped.
    Text before the first list marker counts as an item: a model continuing "4." starts without a number.
    """
    if raw is None:
        return []
    text = str(raw).replace("\r\n", "\n").replace("\r", "\n").strip()
    lines = [line for line in text.split("\n")]
    while lines and (not lines[0].strip() or (_PREAMBLE.match(lines[0]) and len([ln for ln in lines if ln.strip()]) > 1)):
        lines.pop(0)
    while lines and (not lines[-1].strip() or (_POSTAMBLE.match(lines[-1]) and len([ln for ln in lines if ln.strip()]) > 1)):
        lines.pop()
    if not lines:
        return []
    markers = [i for i, line in enumerate(lines) if _MARKER.match(line) and _MARKER.sub("", line, count=1).strip()]
    if len(markers) >= 2:
        items: list[str] = []
        head = "\n".join(lines[: markers[0]]).strip()
        if head and not _PREAMBLE.match(head):
            items.append(head)
        for start, end in zip(markers, [*markers[1:], len(lines)], strict=True):
            items.append("\n".join(lines[start:end]).strip())
        items = [item for item in items if not _POSTAMBLE.match(item)]
        return items
    joined = "\n".join(lines).strip()
    joined = _INLINE_PREAMBLE.sub("", joined, count=1)
    joined = _COURTESY.sub("", joined, count=1) if _COURTESY.match(joined) and len(joined.split()) > 3 else joined
    return [joined]


def extract_texts(raw: str | None, label_names: Sequence[str] = (), *, multi: bool = True) -> list[str]:
    """Candidate texts of a reply, cleaned; with ``multi=False`` only the first. Empty candidates stay (as '')."""
    try:
        parts = split_reply(raw or "")
        texts = [clean_text(part, label_names) for part in parts]
    except Exception:  # parsing must never take a job down; the reply is kept raw anyway
        texts = [(raw or "").strip()]
    if not texts:
        texts = [""]
    return texts if multi else texts[:1]


@lru_cache(maxsize=8192)
def cached_hash(text: str) -> str:
    """``core.text.text_hash``, cached: a job hashes each text several times."""
    return text_hash(text)


@lru_cache(maxsize=8192)
def normalised(text: str) -> str:
    """``core.data.text.normalise_text``, cached like :func:`cached_hash`."""
    return normalise_text(text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@lru_cache(maxsize=1024)
def _instruction_pieces(instruction: str) -> frozenset[str]:
    """An instruction whole, each of its lines and each sentence of each line, normalised (cached: a
    conversation sends the same messages call after call)."""
    lines = [line for line in instruction.splitlines() if line.strip()]
    pieces = [instruction, *lines, *(sentence for line in lines for sentence in _SENTENCE_END.split(line))]
    return frozenset(piece for piece in map(normalised, pieces) if piece)


def echo_phrases(label_texts: Iterable[str], instructions: Iterable[str] = (), *,
                 examples: Iterable[str] = ()) -> frozenset[str]:
    """What a reply must not merely repeat, normalised: each label name and description, and each instruction
    (the prompt's system and user messages) whole, line by line and sentence by sentence.

    Pieces of the ``examples`` the prompt shows (seed texts) are left out: repeating a seed is judged as a seed
    copy, and a sentence that happens to occur in a seed is no instruction.
    """
    shown = [normalised(example) for example in examples]
    pieces = frozenset().union(*map(_instruction_pieces, instructions))
    return frozenset(piece for piece in map(normalised, label_texts) if piece) | {
        piece for piece in pieces if not any(piece in example for example in shown)}


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search((text or "").translate(_APOSTROPHES).strip()))


def word_count(text: str) -> int:
    return len(text.split())


MIN_DISTINCT_TRIGRAMS = 0.5


def is_repetitive(text: str, *, min_distinct: float = MIN_DISTINCT_TRIGRAMS) -> bool:
    """True when fewer than ``min_distinct`` of the text's word trigrams are distinct: the loops that small
    models fall into ("I will be your friend. I will be your friend. …"). Texts under 8 trigrams are never."""
    words = normalise_text(text).split()
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    return len(trigrams) >= 8 and len(set(trigrams)) / len(trigrams) < min_distinct


# --- similarity --------------------------------------------------------------------------------------

_NUM_PERM = 64
_PERM_RNG = np.random.default_rng(20231007)
_PERM_A = _PERM_RNG.integers(1, 2**63, size=_NUM_PERM, dtype=np.uint64) | np.uint64(1)
_PERM_B = _PERM_RNG.integers(0, 2**63, size=_NUM_PERM, dtype=np.uint64)


@lru_cache(maxsize=8192)
def shingles(text: str, n: int = SHINGLE_SIZE) -> frozenset[int]:
    """The hashed character ``n``-grams of the normalised text.

    Python's string hash is salted per process, which is fine: shingles and signatures live only in memory.
    Cached, because a job looks at the same texts several times (screening, lookups, verification).
    """
    norm = normalise_text(text or "")
    if len(norm) <= n:
        return frozenset((hash(norm),)) if norm else frozenset()
    return frozenset(hash(norm[i:i + n]) for i in range(len(norm) - n + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Jaccard similarity of two shingle sets."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def text_similarity(a: str, b: str) -> float:
    return jaccard(shingles(a), shingles(b))


def _minhash(sh: frozenset[int]) -> np.ndarray:
    if not sh:
        return np.full(_NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    values = np.fromiter(sh, dtype=np.int64, count=len(sh)).view(np.uint64)
    with np.errstate(over="ignore"):
        return (_PERM_A[:, None] * values[None, :] + _PERM_B[:, None]).min(axis=1)


@lru_cache(maxsize=8192)
def signature(text: str) -> np.ndarray:
    """The MinHash signature (``_NUM_PERM`` values) of a text's shingles; cached like :func:`shingles`."""
    sig = _minhash(shingles(text))
    sig.flags.writeable = False
    return sig


_BAND_MULT = _PERM_RNG.integers(1, 2**63, size=_NUM_PERM, dtype=np.uint64) | np.uint64(1)
# Candidates whose estimated Jaccard (share of equal MinHash values) is this far below the threshold are
# dropped before the exact check: the estimate's standard deviation is ≤ 0.0625 with 64 values, so a pair at
# the threshold is dropped with probability < 1e-4 — while unrelated texts that met in one band cost nothing.
_ESTIMATE_MARGIN = 0.25


@dataclass(frozen=True)
class Match:
    kind: Literal["duplicate", "near_duplicate"]
    item_id: int | None
    similarity: float


class DuplicateIndex:
    """Exact (normalised hash) and near (4-gram Jaccard ≥ threshold) duplicate lookup over many texts.

    MinHash with ``rows`` values per LSH band, ``rows`` chosen from the threshold so that a pair at the
    threshold is missed with probability below ~1e-5; candidates are verified with the exact Jaccard.
    """

    def __init__(self, threshold: float, items: Iterable[tuple[int | None, str]] = ()) -> None:
        self.threshold = float(threshold)
        self.rows = max(1, int(math.floor(math.log(0.5) / math.log(self.threshold)))) if self.threshold < 1 else 8
        self.bands = _NUM_PERM // self.rows
        self._hashes: dict[str, int] = {}  # text hash → position
        self._texts: list[tuple[int | None, str]] = []
        self._signatures = np.zeros((1024, _NUM_PERM), dtype=np.uint64)  # row = position; grows by doubling
        self._buckets: dict[tuple[int, int], list[int]] = {}
        for item_id, text in items:
            self.add(item_id, text)

    def __len__(self) -> int:
        return len(self._texts)

    def _band_keys(self, sig: np.ndarray) -> list[tuple[int, int]]:
        used = self.bands * self.rows
        with np.errstate(over="ignore"):
            hashed = (sig[:used] * _BAND_MULT[:used]).reshape(self.bands, self.rows).sum(axis=1)
        return list(enumerate(hashed.tolist()))

    def add(self, item_id: int | None, text: str) -> int:
        """Index a text; returns its position (for :meth:`set_id` once the item id is known)."""
        digest = cached_hash(text)
        position = len(self._texts)
        self._hashes.setdefault(digest, position)
        self._texts.append((item_id, text))
        sig = signature(text)
        if position == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.zeros_like(self._signatures)])
        self._signatures[position] = sig
        for key in self._band_keys(sig):
            self._buckets.setdefault(key, []).append(position)
        return position

    def set_id(self, position: int, item_id: int) -> None:
        self._texts[position] = (item_id, self._texts[position][1])

    def find(self, text: str) -> Match | None:
        """The exact duplicate, else the most similar text at or above the threshold, else None."""
        digest = cached_hash(text)
        if digest in self._hashes:
            return Match("duplicate", self._texts[self._hashes[digest]][0], 1.0)
        sig = signature(text)
        candidates: set[int] = set()
        for key in self._band_keys(sig):
            candidates.update(self._buckets.get(key, ()))
        if not candidates:
            return None
        positions = sorted(candidates)
        estimates = (self._signatures[positions] == sig).mean(axis=1)
        sh = shingles(text)
        best: Match | None = None
        for position, estimate in zip(positions, estimates.tolist(), strict=True):
            if estimate < self.threshold - _ESTIMATE_MARGIN:
                continue
            item_id, other = self._texts[position]
            similarity = jaccard(sh, shingles(other))
            if similarity >= self.threshold and (best is None or similarity > best.similarity):
                best = Match("near_duplicate", item_id, similarity)
        return best


def screen(
    texts: Sequence[str],
    *,
    min_words: int,
    max_words: int,
    index: DuplicateIndex,
    seeds: Sequence[tuple[int, str]] = (),
    seed_copy_threshold: float = 0.6,
    remaining: int | None = None,
    truncated: bool = False,
    echoes: frozenset[str] = frozenset(),
) -> list[Outcome]:
    """Verdicts for the candidate texts of one reply, in order.

    Checks, first failing wins: empty, cut off by the token cap (the last text of a ``truncated`` reply), refusal,
    an echo (the normalised text is one of ``echoes``, see :func:`echo_phrases`), too short / too long (words), a
    copy of a seed shown in the prompt (exact or Jaccard ≥ ``seed_copy_threshold``), a duplicate or
    near-duplicate of an indexed text or of an earlier candidate of the same reply, and — when ``remaining`` is
    given — the label's target already met. The index is not changed: the caller adds accepted texts once they
    are stored.
    """
    seed_shingles = [(seed_id, cached_hash(seed_text), shingles(seed_text)) for seed_id, seed_text in seeds]
    accepted_here: list[str] = []
    outcomes: list[Outcome] = []
    for position, text in enumerate(texts):
        if truncated and position == len(texts) - 1 and shingles((text or "").strip()):
            outcomes.append(Outcome((text or "").strip(), False, "truncated"))
            continue
        outcome = _verdict(text, min_words=min_words, max_words=max_words, index=index, local=accepted_here,
                           seed_shingles=seed_shingles, seed_copy_threshold=seed_copy_threshold, echoes=echoes)
        if outcome.accepted and remaining is not None and remaining <= 0:
            outcome = Outcome(text, False, "target_reached")
        if outcome.accepted:
            accepted_here.append(outcome.text)
            if remaining is not None:
                remaining -= 1
        outcomes.append(outcome)
    return outcomes


def _verdict(
    text: str,
    *,
    min_words: int,
    max_words: int,
    index: DuplicateIndex,
    local: Sequence[str],
    seed_shingles: list[tuple[int, str, frozenset[int]]],
    seed_copy_threshold: float,
    echoes: frozenset[str],
) -> Outcome:
    text = (text or "").strip()
    if not shingles(text):  # nothing left after normalising (cached: the lookups below need it anyway)
        return Outcome(text, False, "empty")
    if is_refusal(text):
        return Outcome(text, False, "refusal")
    if echoes and normalised(text) in echoes:
        return Outcome(text, False, "echo")
    words = word_count(text)
    if words < min_words:
        return Outcome(text, False, "too_short")
    if words > max_words:
        return Outcome(text, False, "too_long")
    if is_repetitive(text):
        return Outcome(text, False, "repetitive")
    digest = cached_hash(text)
    sh = shingles(text)
    for seed_id, seed_digest, seed_sh in seed_shingles:
        similarity = 1.0 if digest == seed_digest else jaccard(sh, seed_sh)
        if similarity >= seed_copy_threshold:
            return Outcome(text, False, "seed_copy", seed_id, similarity)
    match = index.find(text)
    if match is not None:
        return Outcome(text, False, match.kind, match.item_id, match.similarity)
    # Earlier texts of the same reply (a handful): compared directly.
    for other in local:
        similarity = 1.0 if cached_hash(other) == digest else jaccard(sh, shingles(other))
        if similarity >= index.threshold:
            return Outcome(text, False, "duplicate" if similarity == 1.0 else "near_duplicate", None, similarity)
    return Outcome(text, True)
