"""The language of a search query, to route it: English to MiniLM, the other languages USE
multilingual serves (``ml.multilingual``) to USE.

The rule, chosen by measurement (docs/model.md, "Queries in other languages"):

1. a letter of any script but Latin (Cyrillic, CJK, Arabic, Thai, Hangul, ...) -> not English. The
   script alone decides, so a Russian query with a Latin brand name in it ("кафе Starbucks") is
   never sent to MiniLM, and Cyrillic costs no detector;
2. Latin letters only -> lingua, restricted to the Latin-script languages USE serves, answering
   only when the best language leads the next by a relative distance of at least 0.15; English
   when it is unsure. Its low-accuracy mode asks first; a text it puts in another language is asked
   again of word frequencies (wordfreq's lists): the language its words are likeliest in, when they
   are at least 100 times likelier there than in English, else English (``QueryLanguage``, mode
   ``"low_then_words"``; until 2026-12-02 lingua's high-accuracy mode between English and the
   language low named, whose models loaded while serving and held the GIL for 0.4-1.2 s). English
   is the default because a misrouted English query loses little (USE through the bridge) while
   short English words ("pizza", "BMX") are the commonest ambiguous input.

On the 7,477 English captions of the dataset (500 test queries, 977 training captions, 6,000
Flickr8k extra captions) this sends none to USE (`python -m research.routing_detector`); it sends
all 161 Russian test queries to USE (the script decides).
"""
from __future__ import annotations

import re
import threading
import unicodedata
from functools import cache, lru_cache

import numpy as np

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


MODES = ("low_then_words", "low_then_pair", "low_then_high", "high", "low", "words")

# The second opinion of "low_then_words": wordfreq's "small" word lists (words of frequency 1e-6 and
# up) for the Latin-script languages; a word missing from a language's list counts as frequency 1e-8.
WORD_LANGUAGES = ("en", "de", "es", "fr", "it", "nl", "pl", "pt", "tr")
UNKNOWN_WORD_LOG10 = -8.0
# A text goes to another language when its words are this much likelier there than in English (log10:
# 100 times). On the routing measurement English texts scored at most 1.10 ("piano"), other languages'
# texts at least 3.52 ("bisikletli adam").
MIN_WORDS_LOG10_RATIO = 2.0
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def _return_freed_memory() -> None:
    """glibc keeps freed heap memory (here the ~6 MB of temporaries of the word tables' build) in
    the process; ``malloc_trim`` gives it back. Elsewhere a no-op."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class WordFrequencies:
    """How frequent each word of a text is in each of ``WORD_LANGUAGES`` (wordfreq's small lists).

    The lists are read straight from wordfreq's package folder (gzip + msgpack, ~20 ms each) into two
    arrays, sorted hashes of the 274k distinct words and their frequencies per language in steps of
    3 centibels, one byte each (4.4 MB together), so a process keeps no Python object per word; a
    lookup is one ``searchsorted`` (15-18 us per text). Building them takes 0.15-0.4 s of Python
    (other threads run between its bytecodes) and grows a process's RSS by ~7 MB. Python's ``hash``
    is salted per process, which is fine: the arrays are built in the process that looks words up.
    """

    def __init__(self) -> None:
        import gzip
        from importlib.metadata import distribution

        import msgpack

        wordfreq = distribution("wordfreq")
        hashes, codes = [], []
        for language in WORD_LANGUAGES:
            path = wordfreq.locate_file(f"wordfreq/data/small_{language}.msgpack.gz")
            with gzip.open(path, "rb") as f:  # one bucket's words alive at a time
                unpacker = msgpack.Unpacker(f, raw=False)
                n_buckets = unpacker.read_array_header() - 1
                unpacker.skip()  # the header
                sizes = []

                def words(unpacker=unpacker, sizes=sizes, n_buckets=n_buckets):
                    for _ in range(n_buckets):
                        bucket = unpacker.unpack()  # the words of frequency 10**(-index/100)
                        sizes.append(len(bucket))
                        yield from bucket

                hashes.append(np.fromiter((hash(word) for word in words()), dtype=np.int64))
            # centibels in steps of 3 (0.03 in log10), so one byte holds them (the lists stop at 600)
            codes.append(np.repeat(np.maximum((np.arange(n_buckets) + 1) // 3, 1).astype(np.uint8), sizes))
        keys, rows = np.unique(np.concatenate(hashes), return_inverse=True)
        table = np.zeros((len(keys), len(WORD_LANGUAGES)), dtype=np.uint8)  # 0: not in the language's list
        table[rows, np.repeat(np.arange(len(WORD_LANGUAGES)), [len(h) for h in hashes])] = np.concatenate(codes)
        self._keys, self._table = keys, table
        del hashes, codes, rows
        _return_freed_memory()

    def log10_frequencies(self, text: str) -> np.ndarray:
        """(words, languages) log10 frequencies of the words of ``text``; UNKNOWN_WORD_LOG10 where missing."""
        words = _WORD.findall(unicodedata.normalize("NFC", text).casefold())
        hashes = np.fromiter((hash(w) for w in words), dtype=np.int64, count=len(words))
        at = np.minimum(np.searchsorted(self._keys, hashes), len(self._keys) - 1)
        codes = np.where((self._keys[at] == hashes)[:, None], self._table[at], 0)
        return np.where(codes > 0, codes * -0.03, UNKNOWN_WORD_LOG10)

    def language(self, text: str) -> str | None:
        """The language of ``WORD_LANGUAGES`` other than English whose words ``text``'s are likeliest
        in, when they are at least 10**MIN_WORDS_LOG10_RATIO times likelier there than in English;
        else None (English)."""
        totals = self.log10_frequencies(text).sum(axis=0)
        best = 1 + int(np.argmax(totals[1:]))
        return WORD_LANGUAGES[best] if totals[best] - totals[0] >= MIN_WORDS_LOG10_RATIO else None


class QueryLanguage:
    """``detect(text)`` -> an ISO 639-1 code (``"en"``, ``"ru"``, ``"de"``, ...) or ``"und"``.

    ``mode`` (research.routing_detector measures each; docs/model.md has the table):

    - ``"low_then_words"`` (served): lingua's low-accuracy mode (trigrams, ~15 MB, ~0.2 s to load)
      first; a text it puts in another language than English is asked again of word frequencies
      (``WordFrequencies``: wordfreq's lists of the nine languages, 4.4 MB of arrays, ~7 MB of RSS,
      0.15-0.4 s, built with lingua's models at warm-up), which send it to the language its words
      are likeliest in when that is at least 100 times likelier than English, else to English.
      Nothing loads while serving;
    - ``"low_then_pair"`` (served until 2026-12-02): the same, the second opinion asked of lingua's
      high-accuracy mode between English and the language low accuracy named. Those two languages'
      models (20-65 MB, 0.4-1.2 s, the GIL held throughout) load on the first text that needs them;
    - ``"low_then_high"``: the same, the second opinion from all nine languages in high accuracy
      (~280 MB and 2-7 s to load, at the first text that needs it);
    - ``"high"``: high-accuracy mode for every Latin-script text (served until issue 18);
    - ``"low"``: low-accuracy mode alone;
    - ``"words"``: word frequencies alone, for every Latin-script text (no lingua).
    """

    def __init__(self, mode: str = "low_then_words") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown language detection mode {mode!r}; choose one of {MODES}")
        self.mode = mode
        self._lock = threading.Lock()
        self._detectors: dict[tuple, object] = {}
        self._words: WordFrequencies | None = None

    def load(self) -> QueryLanguage:
        """Load the models every Latin-script query needs (a server's warm-up)."""
        if self.mode != "words":
            self._latin_detector(low=self.mode != "high").detect_language_of("warm up")
        if self.mode in ("low_then_words", "words"):
            self._word_frequencies()
        return self

    def _word_frequencies(self) -> WordFrequencies:
        if self._words is None:
            with self._lock:
                if self._words is None:
                    self._words = WordFrequencies()
        return self._words

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

    def _latin_code(self, text: str) -> str | None:
        """The ISO 639-1 code of a Latin-script text's language (``"en"`` or None when English or unsure):
        the first opinion and, for a text it puts in another language, the mode's second."""
        if self.mode == "words":
            return self._word_frequencies().language(text)
        if self.mode == "high":
            return _code(self._latin_detector(low=False).detect_language_of(text))
        language = self._latin_detector(low=True).detect_language_of(text)
        if self.mode == "low" or language is None or language.iso_code_639_1.name == "EN":
            return _code(language)
        if self.mode == "low_then_words":
            return self._word_frequencies().language(text)
        if self.mode == "low_then_pair":  # high accuracy between English and that language alone
            return _code(self._latin_detector(low=False, languages=("ENGLISH", language.name)).detect_language_of(text))
        return _code(self._latin_detector(low=False).detect_language_of(text))

    def detect(self, text: str) -> str:
        script = non_latin_script(text)
        if script is not None:
            if script == "CJK" and any(_script(ch) in ("HIRAGANA", "KATAKANA") for ch in text):
                return "ja"
            return SCRIPT_LANGUAGES.get(script, script.lower())
        if not any(ch.isalpha() for ch in text):
            return UNDETERMINED
        return self._latin_code(text) or ENGLISH

    def is_english(self, text: str) -> bool:
        return self.detect(text) in (ENGLISH, UNDETERMINED)


def _code(language) -> str | None:
    """A lingua ``Language`` as its lowercase ISO 639-1 code; None for no answer."""
    return None if language is None else language.iso_code_639_1.name.lower()


@cache
def shared_detector() -> QueryLanguage:
    """The process's detector: the query router and the description writers share its models."""
    return QueryLanguage()
