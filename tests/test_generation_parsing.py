"""Parsing replies into texts and screening them: exact outputs on small inputs; never raises."""

from __future__ import annotations

import random

import pytest

from core.generation.parsing import (
    DuplicateIndex,
    Outcome,
    extract_texts,
    is_refusal,
    is_repetitive,
    screen,
    split_reply,
    text_similarity,
)

LABELS = ["positive", "negative"]


@pytest.mark.parametrize(("raw", "texts"), [
    ("Sure! Here is a positive review:\n\nGreat film, loved it.", ["Great film, loved it."]),
    ("Sure! Here's a review: Great film, loved every minute.", ["Great film, loved every minute."]),
    ('1. First text here\n2. "Second text"\n3) Third one', ["First text here", "Second text", "Third one"]),
    ("a great one\n5. another one\n6. third one", ["a great one", "another one", "third one"]),
    ("Positive: What a wonderful film", ["What a wonderful film"]),
    ('Review: "Loved it all"\nLabel: positive', ["Loved it all"]),
    ('"Great" acting, "bad" plot', ['"Great" acting, "bad" plot']),
    ("Great movie with a strong cast.\n\nI hope this helps!", ["Great movie with a strong cast."]),
    ("- one text here\n- two text here", ["one text here", "two text here"]),
    ('**"Bold and quoted text"**', ["Bold and quoted text"]),
    ("Here are 3 reviews:\n1. one a\n2. two b\n3. three c\nLet me know if you need more!", ["one a", "two b", "three c"]),
    ("(positive) Such a joy to watch", ["Such a joy to watch"]),
    ("Such a joy to watch (Label: positive)", ["Such a joy to watch"]),
    ("Text 1: alpha beta\nText 2: gamma delta", ["alpha beta", "gamma delta"]),
    ("3.5 stars from me, decent film", ["3.5 stars from me, decent film"]),
    ("A review in\ntwo lines", ["A review in two lines"]),
    ("Okay, fine movie I guess.", ["Okay, fine movie I guess."]),
    ("", [""]),
    (None, [""]),
    ("  \n ", [""]),
])
def test_extract_texts(raw, texts) -> None:
    assert extract_texts(raw, LABELS) == texts


def test_extract_texts_single_keeps_only_the_first() -> None:
    assert extract_texts("1. one two\n2. three four", LABELS, multi=False) == ["one two"]


@pytest.mark.parametrize("raw", ["\x00\x01garbage{{", "1.\n2.\n3.", "*" * 5000, "\n".join(["- "] * 50),
                                 "“unbalanced quote", "[positive]", "Label: negative"])
def test_parsing_and_screening_never_raise(raw) -> None:
    texts = extract_texts(raw, LABELS)
    outcomes = screen(texts, min_words=1, max_words=50, index=DuplicateIndex(0.8))
    assert len(outcomes) == len(texts) and all(isinstance(o, Outcome) for o in outcomes)


def test_split_reply_drops_preambles() -> None:
    assert split_reply("Here is a review:") == [""]  # nothing but a preamble: rejected later as empty
    assert split_reply("Certainly! Here are two:\n\n1. aa bb\n2. cc dd") == ["1. aa bb", "2. cc dd"]


@pytest.mark.parametrize(("text", "refusal"), [
    ("I'm sorry, but I can't help with that.", True),
    ("I’m sorry, I cannot write that review.", True),
    ("As an AI language model, I do not have opinions.", True),
    ("I cannot fulfill this request.", True),
    ("I apologize, but that is not something I can do.", True),
    ("I'm sorry but this movie was awful.", False),
    ("I cannot recommend this film enough!", False),
    ("Sorry to say the sequel is a mess.", False),
])
def test_refusals(text, refusal) -> None:
    assert is_refusal(text) is refusal


def test_screen_gives_each_rejection_its_reason_in_order() -> None:
    index = DuplicateIndex(0.8, [(10, "The plot was thin but the actors carried every scene with real charm."),
                                 (11, "An exact copy that already exists in the project.")])
    seeds = [(7, "A warm and funny film about two sisters running a bakery in Lyon.")]
    texts = [
        "",
        "I'm sorry, but I can't write that.",
        "Too short",
        " ".join(["word"] * 31),
        "A warm and funny film about two sisters running a bakery in Lyon!",     # the seed, re-punctuated
        "A warm and funny film about two brothers running a bakery in Lyon.",    # a light rewrite of the seed
        "an exact copy that already exists in the project",                     # normalised duplicate
        "The plot was thin but the actors carried every single scene with real charm.",  # near-duplicate
        "A fresh and original text about a rainy harbour town festival.",
        "A fresh and original text about a rainy harbour town festival.",       # repeats an earlier line
        "Another entirely new sentence describing a noisy night market stall.",
    ]
    outcomes = screen(texts, min_words=3, max_words=30, index=index, seeds=seeds, seed_copy_threshold=0.6,
                      remaining=1)
    assert [(o.accepted, o.reason) for o in outcomes] == [
        (False, "empty"), (False, "refusal"), (False, "too_short"), (False, "too_long"), (False, "seed_copy"),
        (False, "seed_copy"), (False, "duplicate"), (False, "near_duplicate"), (True, None), (False, "duplicate"),
        (False, "target_reached"),
    ]
    assert outcomes[4].match_id == 7 and outcomes[4].similarity == 1.0
    assert outcomes[6].match_id == 11
    near = outcomes[7]
    assert near.match_id == 10
    assert near.similarity == pytest.approx(text_similarity(texts[7], index._texts[0][1]))
    assert 0.8 <= near.similarity < 1.0
    assert outcomes[8].to_dict() == {"text": texts[8], "accepted": True, "reason": None, "match_id": None,
                                     "similarity": None}
    # The index itself is untouched: the caller adds texts once they are stored.
    assert len(index) == 2


def test_similarity_is_character_4gram_jaccard() -> None:
    assert text_similarity("abcde", "abcde") == 1.0
    # 4-grams of "abcde": abcd, bcde; of "abcdf": abcd, bcdf → 1 shared of 3.
    assert text_similarity("abcde", "abcdf") == pytest.approx(1 / 3)
    assert text_similarity("Hello  World", "hello world") == 1.0  # normalised first


def test_duplicate_index_finds_near_duplicates_among_many_and_ignores_unrelated_texts() -> None:
    rng = random.Random(5)
    vocabulary = [f"w{i}x" for i in range(3000)]
    texts = [" ".join(rng.sample(vocabulary, 15)) for _ in range(2000)]
    index = DuplicateIndex(0.8, enumerate(texts))
    for position in (3, 777, 1999):
        variant = texts[position] + " extra"
        truth = text_similarity(variant, texts[position])
        assert truth >= 0.8
        match = index.find(variant)
        assert match is not None and (match.kind, match.item_id) == ("near_duplicate", position)
        assert match.similarity == pytest.approx(truth)
    for _ in range(50):
        assert index.find(" ".join(rng.sample(vocabulary, 15))) is None
    position = index.add(None, "brand new text to be stored later")
    index.set_id(position, 4242)
    assert index.find("Brand new text to be stored later!").item_id == 4242


def test_the_last_text_of_a_truncated_reply_is_rejected() -> None:
    outcomes = screen(["a whole first text", "a second text cut of"], min_words=1, max_words=50,
                      index=DuplicateIndex(0.8), truncated=True)
    assert [(o.accepted, o.reason) for o in outcomes] == [(True, None), (False, "truncated")]
    assert screen([""], min_words=1, max_words=5, index=DuplicateIndex(0.8), truncated=True)[0].reason == "empty"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Love my family and friends, I will make them happy. " * 3, True),  # 27 trigrams, 9 distinct
        ("Win a free cruise today: reply YES to claim your prize before midnight, limited offer", False),
        ("ha ha ha ha ha ha", False),  # 4 trigrams: too short to judge
        ("a b c d e f g h i j a b c d e f g h i j", False),  # 18 trigrams, 10 distinct: 0.56
        ("a b c a b c a b c a b c", True),  # 10 trigrams, 3 distinct
    ],
)
def test_is_repetitive_flags_loops_of_small_models(text: str, expected: bool) -> None:
    assert is_repetitive(text) is expected
