"""The content rule (service/policy.py): whole words and their forms block, substrings never do."""

import pytest

from service import policy
from service.policy import NOTICE, is_about_children, matched_terms

MUST_BLOCK = [
    "Two boys play soccer",
    "A toddler's shoes",
    "KIDS at the beach",
    "a 7-year-old on a bike",
    "Little girl in pink",
    "teenagers skateboarding",
    "the children's playground",
    "an infant sleeping",
    "babies",
    "A child runs through the sprinkler",
    "a boy jumps into the pool",
    "kid",
    "the kids' room",
    "kiddo with ice cream",
    "a newborn in a blanket",
    "a teen on a skateboard",
    "a pre-teen reading",
    "preteen",
    "tweens at the mall",
    "a schoolgirl in uniform",
    "schoolchildren crossing the road",
    "five-year-old twins",
    "a 5 year old",
    "an 18 month old",
    "a 3-month-old asleep",
    "photos of under 16s",
    "under-16s football",
    "youngsters on a trampoline",
    "a baby in a stroller",
    "my little son",
    "little ones at the park",
    "childhood photo",
    "boy-scout camp",
    "school-girl",
    "ＫＩＤＳ on a bus",  # fullwidth letters, folded by NFKC
    "a kid’s bike",  # typographic apostrophe
    "Baby's first steps",
    "a juvenile court",
    "девочка с собакой",
    "Ребёнок на пляже",
    "дети играют в снегу",
    "des enfants au parc",
    "👧 with a balloon",
    "a kindergartner painting",
]

MUST_NOT_BLOCK = [
    "cowboy",
    "cowboys on horses",
    "kidney",
    "kidding around",
    "Babylon",
    "boycott",
    "skid",
    "skids on ice",
    "A man rides a horse",
    "skidding car",
    "a dog runs through the snow",
    "an adult woman",
    "a 30-year-old man",
    "a twenty-two-year-old woman",
    "a 1,000-year-old tree",
    "a sixteen year old car",
    "",
    "   \t\n ",
    "🐶🌊☀️",
    "'; DROP TABLE photos; --",
    "SELECT * FROM kidneys WHERE id = 1",
    "a minor league baseball game",
    "a man and his boyfriend",
    "my girlfriend at dinner",
    "a young man climbs a rock",
    "father and son",
    "the pupil of an eye",
    "finished in under 10 minutes",
    "a kidnap thriller poster",
    "a kind of blue",
]


@pytest.mark.parametrize("query", MUST_BLOCK)
def test_blocks_queries_about_children(query):
    assert is_about_children(query) is True
    assert matched_terms(query) != []


@pytest.mark.parametrize("query", MUST_NOT_BLOCK)
def test_near_misses_pass(query):
    assert is_about_children(query) is False
    assert matched_terms(query) == []


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("Two boys play soccer", ["boys"]),
        ("A toddler's shoes", ["toddler"]),
        ("KIDS at the beach", ["kids"]),
        ("a 7-year-old on a bike", ["7-year-old"]),
        ("a pre-teen reading", ["pre-teen"]),
        ("boy-scout camp", ["boy"]),
        ("A boy and a girl and another boy", ["boy", "girl"]),
        ("my little son", ["little son"]),
        ("under  5   years old", ["under 5", "5 years old"]),
        ("Ребёнок на пляже", ["ребенок"]),
    ],
)
def test_matched_terms_are_exact(query, terms):
    assert matched_terms(query) == terms


def test_notice_text_is_the_legal_wording():
    assert NOTICE == "This image is unavailable in your country in compliance with local laws"


def test_word_lists_are_frozensets_and_disjoint():
    assert isinstance(policy.BLOCK_WORDS, frozenset)
    assert not policy.BLOCK_WORDS & policy._NOT_BLOCKED
    # Every word the module says it deliberately lets through really does pass on its own.
    assert not [w for w in policy._NOT_BLOCKED if is_about_children(w)]
