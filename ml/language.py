"""The language of a search query, to route it: English to MiniLM, the other languages USE
multilingual serves (``ml.multilingual``) to USE.

The rule, chosen by measurement (docs/model.md, "Queries in other languages"):

1. a letter of any script but Latin (Cyrillic, CJK, Arabic, Thai, Hangul, ...) -> not English. The
   script alone decides, so a Russian query with a Latin brand name in it ("кафе Starbucks") is
   never sent to MiniLM, and Cyrillic costs no detector;
2. Latin letters only -> lingua, restricted to the Latin-script languages USE serves, answering
   only when the best language leads the next by a relative distance of at least 0.15; English
   when it is unsure. Its low-accuracy mode asks first; a text it puts in another language is asked
   again in high-accuracy mode between English and that language alone (``QueryLanguage``, mode
   ``"low_then_pair"``). English is the default because a misrouted English query loses little
   (USE through the bridge) while short English words ("pizza", "BMX") are the commonest
   ambiguous input.

On the 7,477 English captions of the dataset (500 test queries, 977 training captions, 6,000
Flickr8k extra captions) this sends 2 to USE (`python -m research.routing_detector`); it sends
all 161 Russian test queries to USE (the script decides).
"""
from __future__ import annotations

import threading
import unicodedata
from functools import cache, lru_cache

ENGLISH = "en"
UNDETERMINED = "und"  # no letters at all ("123", "!!!"): served as English

# The Latin-script languages of USE multilingual v3 (its other ones, ar, ja, ko, ru, th, zh, are
# told apart from English by their script).
LATIN_LANGUAGES = ("ENGLISH", "DUTCH", "FRENCH", "GERMAN", "ITALIAN", "POLISH", "PORTUGUESE", "SPANISH", "TURKISH")
MIN_RELATIVE_DISTANCE = 0.15


@lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def non_latin_script(text: str) -> str | None:
    """The first script other than Latin among the letters of ``text`` (e.g. ``"CYRILLIC"``), or None."""
    for ch in text:
        if ch.isalpha() and not ch.isascii():
            script = _script(ch)
            if script != "LATIN":
                return script
    return None


# Scripts whose language is one (in USE's set): reported as the query's language.
SCRIPT_LANGUAGES = {"CYRILLIC": "ru", "HANGUL": "ko", "THAI": "th", "ARABIC": "ar", "HIRAGANA": "ja", "KATAKANA": "ja",
                    "CJK": "zh"}


MODES = ("low_then_pair", "low_then_high", "high", "low")


class QueryLanguage:
    """``detect(text)`` -> an ISO 639-1 code (``"en"``, ``"ru"``, ``"de"``, ...) or ``"und"``.

    ``mode`` (research.routing_detector measures each; docs/model.md has the table):

    - ``"low_then_pair"`` (served): lingua's low-accuracy mode (trigrams, ~15 MB, ~0.2 s to load)
      first; a text it puts in another language than English is asked again in high-accuracy mode
      between English and that language alone, whose answer stands. Those two languages' models
      (~30-60 MB, under a second) load on the first text that needs them, so a server's warm-up
      and cold start wait for none, and a process holds the languages its traffic brought;
    - ``"low_then_high"``: the same, the second opinion from all nine languages in high accuracy
      (~280 MB and 2-7 s to load, at the first text that needs it);
    - ``"high"``: high-accuracy mode for every Latin-script text (served until issue 18);
    - ``"low"``: low-accuracy mode alone.
    """

    def __init__(self, mode: str = "low_then_pair") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown language detection mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        self._lock = threading.Lock()
        self._detectors: dict[tuple, object] = {}

    def load(self) -> QueryLanguage:
        """Load the models every Latin-script query needs (a server's warm-up)."""
        self._latin_detector(low=self.mode != "high").detect_language_of("warm up")
        return self

    def _latin_detector(self, *, low: bool, languages: tuple[str, ...] = LATIN_LANGUAGES):
        key = (languages, low)
        detector = self._detectors.get(key)
        if detector is None:
            with self._lock:
                detector = self._detectors.get(key)
                if detector is None:
                    from lingua import Language, LanguageDetectorBuilder

                    builder = (LanguageDetectorBuilder
                               .from_languages(*(getattr(Language, name) for name in languages))
                               .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE))
                    if languages == LATIN_LANGUAGES:  # else lazily: only the two languages' models load
                        builder = builder.with_preloaded_language_models()
                    detector = (builder.with_low_accuracy_mode() if low else builder).build()
                    self._detectors[key] = detector
        return detector

    def _latin(self, text: str):
        if self.mode == "high":
            return self._latin_detector(low=False).detect_language_of(text)
        language = self._latin_detector(low=True).detect_language_of(text)
        if self.mode == "low" or language is None or language.iso_code_639_1.name == "EN":
            return language
        if self.mode == "low_then_pair":  # high accuracy between English and that language alone
            return self._latin_detector(low=False, languages=("ENGLISH", language.name)).detect_language_of(text)
        return self._latin_detector(low=False).detect_language_of(text)

    def detect(self, text: str) -> str:
        script = non_latin_script(text)
        if script is not None:
            if script == "CJK" and any(_script(ch) in ("HIRAGANA", "KATAKANA") for ch in text):
                return "ja"
            return SCRIPT_LANGUAGES.get(script, script.lower())
        if not any(ch.isalpha() for ch in text):
            return UNDETERMINED
        language = self._latin(text)
        return ENGLISH if language is None else language.iso_code_639_1.name.lower()

    def is_english(self, text: str) -> bool:
        return self.detect(text) in (ENGLISH, UNDETERMINED)


@cache
def shared_detector() -> QueryLanguage:
    """The process's detector: the query router and the description writers share its models."""
    return QueryLanguage()
