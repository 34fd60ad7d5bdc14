"""Training queries that nothing in the library fits: the negatives the final score is calibrated on
beside the rated pairs (``ml.calibration.QueryCalibrator``).

* ``ml/no_match_sentences.txt``: a few hundred hand-written texts that describe no scene (software,
  money, abstract statements, instructions, questions, messages, pseudo-words) and scenes no photo
  of a people-dogs-outdoors library shows;
* :func:`random_strings`: seeded random letter strings, keyboard mashes, digits and symbols.

* :func:`scene_caption_pool`: captions of training photos that show neither people nor dogs (most
  of them MS-COCO rooms, food, objects, animals, vehicles), the kind of absent scene written like a
  caption that the sentences above lack; in cross-validation they are scored against galleries of
  other photos (``ml.compare.no_match_queries``).

The evaluation's no-match queries (``service/training/eval_sets/no_match_queries.txt``) are written
apart, on other subjects, and never trained on. The third kind of negative, captions of photos
held out of the gallery, is made inside the cross-validation (``ml.compare``).
"""
from __future__ import annotations

import re
from importlib.resources import files

import numpy as np

SENTENCES = "no_match_sentences.txt"
N_RANDOM = 150
# Per CV fold, this many scene captions (one per photo) as no-match queries: about a fortieth of
# the ~190 photos the full data's pool holds. All of them sank right matches (CV median 0.33). The
# rule (docs/model.md, "Scene captions"): the most that keeps the CV right top-1 median >= 0.60.
# With ratings in the loss, 10 gave 0.588 and 5 gave 0.607. With the cosine's share in the served
# order (ml.blend), 10 / 20 / 30 give 0.641 / 0.610 / 0.588 (research.cv_blend --scene-captions N).
N_SCENE_CAPTIONS = 20


# Words that put a person or a dog in a caption: the subjects a people-dogs-outdoors library is full of.
PEOPLE_AND_DOGS = re.compile(
    r"\b(man|men|woman|women|person|persons|people|boys?|girls?|child|children|kids?|bab(?:y|ies)|guys?|lad(?:y|ies)"
    r"|players?|someone|surfers?|skiers?|skateboarders?|riders?|crowd|he|she|his|her|they|dogs?|pupp(?:y|ies)"
    r"|family|couple|team|adults?|teens?|teenagers?|toddlers?|bikers?|cyclists?|snowboarders?|tennis"
    r"|skateboards?|surfboards?)\b", re.IGNORECASE)


def scene_caption_pool(caption_photo: np.ndarray, caption_texts: np.ndarray) -> np.ndarray:
    """Mask over captions: those of photos none of whose captions names a person or a dog
    (:data:`PEOPLE_AND_DOGS`). As no-match queries against a gallery of other photos they are
    scenes no photo there shows; a photo one of whose captions mentions a person is left out whole."""
    named = np.array([bool(PEOPLE_AND_DOGS.search(str(t))) for t in caption_texts], bool)
    photos_named = np.zeros(int(caption_photo.max()) + 1 if len(caption_photo) else 0, bool)
    photos_named[caption_photo[named]] = True
    return ~photos_named[caption_photo] if len(caption_photo) else np.zeros(0, bool)


def sentences() -> list[str]:
    text = files("ml").joinpath(SENTENCES).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def random_strings(n: int = N_RANDOM, random_state: int = 0) -> list[str]:
    """``n`` strings that mean nothing, in four styles (random "words", keyboard rows, digits and
    letters, punctuation), the same for a seed."""
    rng = np.random.default_rng(random_state)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890"]
    out: list[str] = []
    while len(out) < n:
        style = len(out) % 4
        if style == 0:  # pseudo-words
            out.append(" ".join("".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(rng.integers(1, 5))))
        elif style == 1:  # runs along a keyboard row
            row = rows[rng.integers(len(rows))]
            start = rng.integers(0, len(row) - 3)
            out.append(row[start : start + rng.integers(3, len(row) - start + 1)] * int(rng.integers(1, 3)))
        elif style == 2:  # digits and letters
            chars = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
            out.append("".join(rng.choice(chars, rng.integers(6, 16))))
        else:  # punctuation and symbols, sometimes with a word
            sym = "".join(rng.choice(np.array(list("!?#$%&*+-=/.,;:@^~")), rng.integers(2, 9)))
            out.append(sym if rng.random() < 0.5 else f"{sym} {''.join(rng.choice(letters, 4))}")
    return out


def training_texts(random_state: int = 0) -> list[str]:
    """The negatives training encodes: the sentences, then the random strings."""
    return sentences() + random_strings(random_state=random_state)
