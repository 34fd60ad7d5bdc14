"""The content rule: a query about children (anyone under 16) gets no photos, only NOTICE.

The rule exists for legal compliance, so where a word usually refers to a young person in photo
captions we block it and accept the odd false positive: a false positive costs the user one
notice, a false negative may show a child. Words are matched whole (with their forms), never as
substrings, so "cowboy", "kidney" and "kidding" pass.

Russian is served the same way: every case form of each word is listed (a stem would block
"деталь" with "дети"), ё is read as е, and the borderline decisions are listed beside the English ones.
"""

import re
import unicodedata

NOTICE = "This image is unavailable in your country in compliance with local laws"

_CORE_WORDS = frozenset({
    "child", "children", "kid", "kids", "kiddo", "kiddos", "kiddie", "kiddies", "kiddy",
    "toddler", "toddlers", "infant", "infants", "baby", "babies", "babys", "newborn", "newborns",
    "teen", "teens", "teenage", "teenaged", "teenager", "teenagers",
    "preteen", "preteens", "tween", "tweens",
    "schoolboy", "schoolboys", "schoolgirl", "schoolgirls", "schoolchild", "schoolchildren",
    "schoolkid", "schoolkids", "kindergartner", "kindergartners", "kindergartener",
    "kindergarteners", "preschooler", "preschoolers", "youngster", "youngsters",
    "boy", "boys",
})

# Borderline words that ARE blocked, each with the reason.
_BORDERLINE_BLOCKED = frozenset({
    # In Flickr-style captions "girl" is overwhelmingly a young girl ("a little girl in pink");
    # adults are "woman". "Girls' night out" is a false positive we accept.
    "girl", "girls",
    # "Childhood photo", "boyhood home": such queries are after pictures of the person as a child.
    "childhood", "childhoods", "boyhood", "girlhood",
    # "baby" always blocks, even in "baby blue" or "baby elephant": an exception list would be a
    # second policy to maintain, and the cost of a miss is higher than a notice.
    # Babysitting scenes show the baby, so they block too.
    "babysitter", "babysitters", "babysitting", "babysit",
    # Places and services defined by young children: their photos show the children.
    "kindergarten", "kindergartens", "preschool", "preschools", "daycare", "childcare",
    # "Juvenile" is mostly about young people (a "juvenile hawk" is a false positive we accept).
    "juvenile", "juveniles",
    # "Youth team", "youths": young people, typically under 16 in sport and schooling contexts.
    "youth", "youths",
    # Plural "minors" is nearly always people; singular "minor" is left out (see below).
    "minors",
    # Other languages, cheaply (Russian has its own list below). Only words that are not
    # also English words (German "Kind"/"Kinder" would block "kind of", so it is left out).
    "enfant", "enfants", "bébé", "bébés", "niño", "niña", "niños", "niñas",
})

# Borderline words deliberately NOT blocked (kept here so the decision is visible and tested):
#  minor            - mostly "minor league", "minor injury", "A minor"; "minors" is blocked.
#  son, daughter,   - age-neutral relations (adults have parents too); blocked only after a youth
#  grandchild...      modifier, e.g. "little son", "young daughter" (see _RELATION_WORDS).
#  pupil            - also the eye's pupil and university students; schoolchild/schoolkid cover it.
#  childish, boyish - describe manner, usually of adults.
#  boyfriend, girlfriend - adults.
#  kidnap, cowboy, kidney, kidding, Babylon, boycott, skid - contain a blocked word only as a
#                     substring, which never counts.
#
# Russian, blocked (the lists in _RUSSIAN), with the reasons that are not obvious:
#  детская площадка без людей - blocked, as "an empty children's playground" is in English: "детская"
#                     blocks in every phrase. The search cannot honour "без людей" (a sentence encoder
#                     barely registers negation), so it would return playgrounds with children in them.
#  девочки, девчонки - blocked although women call each other so ("девочки с работы"), as "girls".
#  детка, малышка   - endearments for adults too; blocked, as "baby".
#  сынок, дочка, доченька, дочурка, внучок - diminutives: in a search they mean a small child, and
#                     an adult child is "сын", "дочь". "Дочка невесты" is a false positive we accept.
#  ясли             - also the manger of a nativity scene; blocked, as "daycare".
#  детство          - blocked, as "childhood".
#  пятилетний, 5-летний, годовалый, 3-х месячный, "до 16 лет" - ages under 16, as "5-year-old" and
#                     "under 16". "Пятилетний план" is a false positive we accept.
#
# Russian, deliberately NOT blocked:
#  сын, дочь, внук, внучка, брат, сестра - age-neutral, as "son", "daughter"; blocked after
#                     маленький, юный, крошечный (see _YOUTH_MODIFIERS). "Младший брат" passes, as
#                     "younger brother" does.
#  девушка, парень, юноша, молодежь, молодой человек - young adults, as "young woman", "young man",
#                     "young people". The adjective юношеский is blocked, as "youth" is: "юношеская
#                     сборная" is a youth team (under 17 or 19), "юношеский максимализм" a false positive.
#  ребята, пацан    - "guys", said of and by adults as much as of children; the collectives that only
#                     mean children (ребятишки, ребятня, детвора, пацаненок) are blocked.
#  ученик, ученица  - also students and apprentices, as "pupil"; школьник, первоклассник cover school.
#  мальчишник       - a stag party (adults); мальчишеский (boyish), детище (brainchild), детеныш
#                     (an animal's young), щенок, котенок - not about children.
#  садик            - also a small garden; "детский садик" blocks through "детский".
#  крошка, кроха    - also a crumb; малыш and карапуз cover the child.
#  деталь, детектив, Детройт, подъезд, Малышев (a surname) - other words; forms are matched whole.
_NOT_BLOCKED = frozenset({
    "minor", "son", "daughter", "pupil", "pupils", "childish", "childlike", "boyish",
    "boyfriend", "boyfriends", "girlfriend", "girlfriends", "kidnap", "kidnapped",
    "сын", "дочь", "внук", "внучка", "брат", "сестра", "девушка", "парень", "юноша", "молодежь",
    "ребята", "пацан", "ученик", "ученица", "мальчишник", "мальчишеский", "детище", "детеныш",
    "садик", "крошка", "кроха", "деталь", "детектив", "малышев",
})


def _forms(stem: str, endings: str) -> set[str]:
    return {stem + e for e in endings.split(",")}


# Russian, folded to lower case with ё written е (see _normalise). Every form of each word is listed
# (all six cases, singular and plural): Russian changes the ending, and a stem prefix would block
# other words ("дет-" would block "деталь", "детектив").
_NOUN = ",а,у,ом,е,и,ы,ов,ам,ами,ах"  # мальчик(и), школьник(и), карапуз(ы), тинейджер(ы)...
_NOUN_KA = "а,и,е,у,ой,ою,,ам,ами,ах"  # feminine in -ка: stem + "" is the genitive plural, given apart
_ADJ = "ый,ий,ая,яя,ое,ее,ые,ие,ого,его,ой,ей,ому,ему,ым,им,ом,ем,ую,юю,ых,их,ыми,ими"
_AGE_WORDS = ("полутора двух трех четырех пяти шести семи восьми девяти десяти одиннадцати двенадцати "
              "тринадцати четырнадцати пятнадцати").split()


def _ka(stem: str, genitive_plural: str) -> set[str]:
    """A feminine noun in -ка and its forms: _ka("малышк", "малышек")."""
    return (_forms(stem, _NOUN_KA) - {stem}) | {genitive_plural}


_RUSSIAN = frozenset(
    # ребёнок, дети and their diminutives and collectives
    _forms("ребенок", "")
    | _forms("ребенк", "а,у,ом,е")
    | _forms("ребеночек", "") | _forms("ребеночк", "а,у,ом,е,и,ов,ам,ами,ах")
    | _forms("ребятишк", "и,ам,ами,ах") | {"ребятишек"}
    | _forms("ребятн", "я,и,е,ю,ей,ею")
    | _forms("ребятенок", "") | _forms("ребятенк", "а,у,ом,е")
    | {"дети", "детей", "детям", "детьми", "детях"}
    | _forms("детишк", "и,ам,ами,ах") | {"детишек"}
    | _ka("детк", "деток")
    | _forms("детвор", "а,ы,е,у,ой,ою")
    | {"дитя", "дитяти", "дитятей", "дитятею", "дите", "дитятко", "дитятка"}
    # children's: детская площадка, детский сад, детская (the nursery); детсад, ясли
    | _forms("детск", "ий,ая,ое,ие,ого,ой,ому,им,ом,ую,их,ими")
    | _forms("детсад", _NOUN) | _forms("детсадовск", _ADJ) | _forms("детсадовц", "а,у,ем,е,ы,ев,ам,ами,ах") | {"детсадовец"}
    | {"ясли", "яслей", "яслям", "яслями", "яслях"}
    # childhood, infancy (as English "childhood")
    | _forms("детств", "о,а,у,ом,е") | _forms("младенчеств", "о,а,у,ом,е")
    # boys
    | _forms("мальчик", _NOUN)
    | _ka("мальчишк", "мальчишек")
    | _forms("мальчуган", _NOUN) | _forms("мальчонк", "а,и,е,у,ой,ам,ами,ах") | {"мальчонок"}
    | _forms("пацаненок", "") | _forms("пацаненк", "а,у,ом,е") | _forms("пацанят", "а,ам,ами,ах")
    # girls
    | _forms("девоч", "ка,ки,ке,ку,кой,кою,ек,кам,ками,ках")
    | _ka("девчонк", "девчонок") | _ka("девчушк", "девчушек") | _ka("девчурк", "девчурок")
    # babies and toddlers
    | _forms("малыш", ",а,у,ом,е,и,ей,ам,ами,ах")
    | _ka("малышк", "малышек")
    | _forms("малышн", "я,и,е,ю,ей,ею")
    | _ka("малявк", "малявок")
    | _forms("карапуз", _NOUN)
    | _forms("младен", "ец,ца,цу,цем,це,цы,цев,цам,цами,цах")
    | _forms("новорожденн", _ADJ)
    | _forms("грудничок", "") | _forms("грудничк", "а,у,ом,е,и,ов,ам,ами,ах")
    # teenagers, schoolchildren, minors
    | _forms("подрост", "ок,ка,ку,ком,ке,ки,ков,кам,ками,ках")
    | _forms("подростков", _ADJ)
    | _forms("тинейджер", _NOUN)
    | _forms("юношеск", "ий,ая,ое,ие,ого,ой,ому,им,ом,ую,их,ими")
    | _forms("школьник", _NOUN)
    | _forms("школьниц", "а,ы,е,у,ей,ам,ами,ах")
    | _forms("школот", "а,ы,е,у,ой")
    | _forms("первоклассник", _NOUN) | _forms("первоклассниц", "а,ы,е,у,ей,ам,ами,ах") | _ka("первоклашк", "первоклашек")
    | _forms("младшеклассник", _NOUN) | _forms("младшеклассниц", "а,ы,е,у,ей,ам,ами,ах")
    | _forms("старшеклассник", _NOUN) | _forms("старшеклассниц", "а,ы,е,у,ей,ам,ами,ах")
    | _forms("дошкольник", _NOUN) | _forms("дошкольниц", "а,ы,е,у,ей,ам,ами,ах")
    | _forms("несовершеннолетн", _ADJ) | _forms("малолетн", _ADJ) | _ka("малолетк", "малолеток")
    # diminutives of son, daughter, grandson: in a search they mean a small child; the plain words
    # are age-neutral (see _RU_RELATION_WORDS)
    | _forms("сынок", "") | _forms("сынк", "а,у,ом,е,и,ов,ам,ами,ах")
    | _forms("сыночек", "") | _forms("сыночк", "а,у,ом,е,и,ов,ам,ами,ах")
    | _ka("сынишк", "сынишек")
    | _ka("дочк", "дочек") | _ka("доченьк", "доченек") | _ka("дочурк", "дочурок") | _ka("дочечк", "дочечек")
    | _forms("внучок", "") | _forms("внучонок", "") | _forms("внучонк", "а,у,ом,е")
    # ages as adjectives: пятилетний, полуторагодовалый, трехмесячный (as English "5-year-old", which
    # blocks even in "a 5 year old car": "пятилетний план" is a false positive we accept)
    | {w + "летн" + e for w in _AGE_WORDS for e in _ADJ.split(",") if e[0] in "иеяю"}
    | {w + "годовал" + e for w in ["", "полу", *_AGE_WORDS] for e in _ADJ.split(",") if e[0] in "ыоау"}
    | {w + "месячн" + e for w in ["одно", *_AGE_WORDS] for e in _ADJ.split(",") if e[0] in "ыоау"}
)

BLOCK_WORDS = _CORE_WORDS | _BORDERLINE_BLOCKED | _RUSSIAN

# Age-neutral words that only block after a youth modifier ("little son", "tiny ones").
# Russian follows the same rule: сын, дочь, брат, сестра, внук, внучка block only after маленький,
# юный or крошечный ("маленькая дочь", "с маленьким сыном"). "Младший" (younger) and "молодой" do
# not count: "младший брат" is as often an adult as "younger brother" is.
_SHORT_ADJ = "ый,ая,ое,ые,ого,ой,ому,ым,ую,ых,ыми,ом"
_YOUTH_MODIFIERS = frozenset(
    {"little", "young", "small", "tiny"}
    | _forms("маленьк", "ий,ая,ое,ие,ого,ой,ому,им,ую,их,ими,ом") | _forms("юн", _SHORT_ADJ)
    | _forms("крошечн", _SHORT_ADJ)
)
_RELATION_WORDS = frozenset(
    {"son", "sons", "daughter", "daughters", "brother", "brothers", "sister", "sisters",
     "sibling", "siblings", "grandson", "grandsons", "granddaughter", "granddaughters",
     "grandchild", "grandchildren", "grandkid", "grandkids"}
    | _forms("сын", _NOUN) | _forms("сыновь", "я,ям,ями,ях") | {"сыновей"}
    | {"дочь", "дочери", "дочерью", "дочерей", "дочерям", "дочерьми", "дочерях"}
    | _forms("брат", ",а,у,ом,е,ья,ьев,ьям,ьями,ьях")
    | _forms("сестр", "а,ы,е,у,ой,ам,ами,ах") | {"сестер"}
    | _forms("внук", _NOUN) | _ka("внучк", "внучек")
)
# "Young one(s)" is said of animals; "little/tiny one(s)" of children.
_ONE_MODIFIERS = frozenset({"little", "tiny"})

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS = {w: n for n, w in enumerate(_UNITS)} | {w: 10 * n for n, w in enumerate(_TENS, 2)}
# No thousands separators: the lookbehind below makes "1,000-year-old" match nothing at all.
_NUMBER = rf"\d+(?:\.\d+)?|(?:(?:{'|'.join(_TENS)})[\s-]+)?[a-z]+"

# Apostrophes, hyphens and underscores join parts of one word: "kid's", "pre-teen", "6-year-old".
_TOKEN = re.compile(r"[^\W_]+(?:['_-][^\W_]+)*")
_SEPARATORS = re.compile(r"['_-]")
_POSSESSIVE = re.compile(r"'s$")
# Emoji that show a child (skin-tone variants and family sequences contain the same base code).
_CHILD_EMOJI = frozenset("\U0001F476\U0001F9D2\U0001F466\U0001F467")  # baby, child, boy, girl
# "a 7-year-old", "five year old", "7-years-olds", "18 month old", "5yo", "5 y/o".
# The lookbehind stops "twenty-two-year-old" from matching as "two-year-old".
_AGE = re.compile(
    rf"(?<![\w.,-])(?P<n>{_NUMBER})[\s-]*"
    r"(?:(?P<unit>years?|yrs?|months?|mos?)[\s-]*olds?|y/?o)\b"
)
# "under 16", "under-16s", "under 12 years", "under 14 team"; "under 10 minutes" is not about age.
_UNDER = re.compile(
    r"(?<![\w-])under[\s-]*(?P<n>\d{1,2})"
    r"(?:s\b|(?=\s*(?:$|[^\w\s]|(?:years?|yrs?|y/?o|olds?|teams?|players?|league|squad|age)\b)))"
)
# Russian: "5-летний", "1,5-летняя", "5-ти летний", "3-х месячный", "10-летнего" (ages as adjectives).
# "5 летний" with a bare space does not count: "летний" alone is "summer" ("2 летних платья").
_RU_AGE = re.compile(
    r"(?<![\w.,-])(?P<n>\d{1,3}(?:[.,]\d)?)"
    r"(?:[\s-]*(?:х|ух|ех|и|ти|ми)[\s-]*|-|\s*(?=месячн|годовал))"
    r"(?P<unit>летн|месячн|годовал)[а-я]*"
)
# "до 16 лет", "младше 14", "моложе 12 лет": in Russian a bare "16 лет" is as often a duration
# ("16 лет спустя"), so only these phrases count.
_RU_UNDER = re.compile(
    r"(?<![\w-])(?:до|младше|моложе)[\s-]*(?P<n>\d{1,2})(?:[\s-]*(?:ти|х|и|ми))?"
    r"(?=\s*(?:$|[^\w\s]|(?:лет|года?)\b)|[\s-]*(?:лет|года?)\b)"
)
# 18 rather than 16: "under 18" means minors, which includes every child under 16.
_UNDER_LIMIT = 18
_AGE_LIMIT_YEARS = 16

_CHAR_MAP = str.maketrans({
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
    "\u2010": "-", "\u2011": "-", "\u2212": "-",
    # Russians often write е for ё; folding both ways would double the word list.
    "ё": "е",
})


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold().translate(_CHAR_MAP)


def _number_value(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        pass
    words = raw.replace("-", " ").split()
    if not words or any(w not in _NUMBER_WORDS for w in words):
        return None
    return float(sum(_NUMBER_WORDS[w] for w in words))


def _token_term(word: str) -> str | None:
    """The blocked term a word stands for, or None: whole word first, then its parts."""
    if _SEPARATORS.sub("", word) in BLOCK_WORDS:  # "pre-teen", "school-girl", "toddler's"
        return word
    return next((p for p in _SEPARATORS.split(word) if p in BLOCK_WORDS), None)  # "boy-scout"


def _age_hits(text: str):
    for m in _AGE.finditer(text):
        n = _number_value(m["n"])
        if n is None:
            continue
        years = n / 12 if (m["unit"] or "").startswith("mo") else n
        if years < _AGE_LIMIT_YEARS:
            yield m.start(), " ".join(m.group().split())
    for m in _RU_AGE.finditer(text):
        n = float(m["n"].replace(",", "."))
        years = n / 12 if m["unit"] == "месячн" else n
        if years < _AGE_LIMIT_YEARS:
            yield m.start(), " ".join(m.group().split())
    for pattern in (_UNDER, _RU_UNDER):
        for m in pattern.finditer(text):
            if 0 < int(m["n"]) <= _UNDER_LIMIT:
                yield m.start(), " ".join(m.group().split())


def _word_hits(text: str):
    previous = None
    for m in _TOKEN.finditer(text):
        word = _POSSESSIVE.sub("", m.group())
        term = _token_term(word)
        if term:
            yield m.start(), term
        elif previous and (
            (previous[1] in _YOUTH_MODIFIERS and word in _RELATION_WORDS)
            or (previous[1] in _ONE_MODIFIERS and word in ("one", "ones"))
        ):
            yield previous[0], f"{previous[1]} {word}"
        previous = (m.start(), word)


def _emoji_hits(text: str):
    return ((i, ch) for i, ch in enumerate(text) if ch in _CHILD_EMOJI)


def matched_terms(text: str) -> list[str]:
    """The terms that make `text` a query about children, lowercased, in order, without repeats."""
    norm = _normalise(text)
    hits = sorted([*_word_hits(norm), *_age_hits(norm), *_emoji_hits(norm)])
    return list(dict.fromkeys(term for _, term in hits))


def is_about_children(text: str) -> bool:
    return bool(matched_terms(text))
