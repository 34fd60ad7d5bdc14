"""Which lingua set-up routes queries (ml/language.py): memory, load time and misroutes.

Variants, each behind the same script rule (a non-Latin letter decides alone):

- ``high``: the served rule until issue 18, lingua's high-accuracy models for the Latin-script
  languages USE serves, relative distance 0.15, English when unsure;
- ``low``: the same in lingua's low-accuracy mode (trigrams only);
- ``low_then_high``: low-accuracy first; only a text it puts in another language is asked again
  in high-accuracy mode, whose models load on that first such query. A text low-accuracy calls
  English (or is unsure about) goes to English, so ``high`` is asked for the texts only.

English texts: the dataset's test queries, its training captions and the first 6,000 Flickr8k
extra captions (WITHSENSE_DATASET's layout under /work/shared/data), plus SHORT_ENGLISH; other
languages: SHORT_OTHER. Each variant is measured in a fresh process (memory and load time).

    python -m research.routing_detector [--data /work/shared/data]
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

SHORT_ENGLISH = [
    "dog", "BMX", "pizza", "piano", "a cat", "surfer", "kids playing", "red car", "snow", "beach volleyball",
    "two dogs", "man on a bike", "girl in pink", "sunset", "climbing", "a boat on a lake", "skateboard trick",
    "football game", "baby", "waterfall", "crowd at a concert", "black and white dog", "mountain bike",
    "horse riding", "fishing", "a woman reading", "city street at night", "rock climber", "swimming pool",
    "motorcycle race", "tennis", "a bride", "graffiti wall", "hiking trail", "kayak", "playground",
    "birthday cake", "dog in the snow", "boy jumping", "market stall",
]

SHORT_OTHER = [  # (text, language) written for this measurement
    ("Hund im Schnee", "de"), ("zwei Kinder spielen im Park", "de"), ("ein Mann fährt Fahrrad", "de"),
    ("Katze auf dem Sofa", "de"), ("Strand bei Sonnenuntergang", "de"),
    ("perro en la playa", "es"), ("niños jugando al fútbol", "es"), ("una mujer con un vestido rojo", "es"),
    ("gato negro", "es"), ("montaña con nieve", "es"),
    ("deux chiens jouent dans la neige", "fr"), ("un homme sur un vélo", "fr"), ("plage", "fr"),
    ("une fille en robe rose", "fr"), ("chat sur le canapé", "fr"),
    ("cane sulla spiaggia", "it"), ("bambini che giocano", "it"), ("un uomo in bicicletta", "it"),
    ("gatto nero sul divano", "it"), ("tramonto sul mare", "it"),
    ("cachorro na praia", "pt"), ("crianças brincando no parque", "pt"), ("um homem de bicicleta", "pt"),
    ("gato preto", "pt"), ("pôr do sol no mar", "pt"),
    ("hond in de sneeuw", "nl"), ("kinderen spelen in het park", "nl"), ("een man op een fiets", "nl"),
    ("zwarte kat op de bank", "nl"),
    ("pies na plaży", "pl"), ("dzieci bawią się w parku", "pl"), ("kobieta na rowerze", "pl"),
    ("czarny kot na kanapie", "pl"), ("zachód słońca nad morzem", "pl"),
    ("kumsalda köpek", "tr"), ("parkta oynayan çocuklar", "tr"), ("bisikletli adam", "tr"),
    ("kanepede siyah kedi", "tr"), ("denizde gün batımı", "tr"),
]

PROBE = r"""
import json, sys, time, resource
from ml.language import QueryLanguage
variant, texts = sys.argv[1], json.load(sys.stdin)
start = time.perf_counter()
detector = QueryLanguage(mode=variant)
first = detector.detect(texts[0])
first_seconds = time.perf_counter() - start
answers = [detector.detect(t) for t in texts]
print(json.dumps({"answers": answers, "seconds": time.perf_counter() - start, "first_seconds": first_seconds,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def english_texts(data: Path) -> list[str]:
    photos = data / "photos"
    with open(photos / "test_queries.csv") as f:
        test = [row["query_text"] for row in csv.DictReader(f, delimiter="|")]
    with open(photos / "train_dataset.csv") as f:
        train = list(dict.fromkeys(row["query_text"] for row in csv.DictReader(f)))
    with open(data / "flickr8k_extra" / "captions.tsv") as f:
        extra = [row["caption"] for row in csv.DictReader(f, delimiter="\t")][:6000]
    return test + train + extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = parser.parse_args()
    english = english_texts(args.data)
    texts = english + SHORT_ENGLISH + [t for t, _ in SHORT_OTHER]
    report = {}
    for variant in ("high", "low", "low_then_high", "low_then_pair"):
        done = subprocess.run([sys.executable, "-c", PROBE, variant], input=json.dumps(texts), text=True,
                              capture_output=True, check=True)
        result = json.loads(done.stdout)
        answers = result["answers"]
        n_en, n_short = len(english), len(SHORT_ENGLISH)
        report[variant] = {
            "english_to_use": sum(a not in ("en", "und") for a in answers[:n_en]),
            "english_texts": n_en,
            "short_english_to_use": sum(a not in ("en", "und") for a in answers[n_en:n_en + n_short]),
            "other_missed": sum(a in ("en", "und") for a in answers[n_en + n_short:]),
            "other_texts": len(SHORT_OTHER),
            "first_english_query_s": round(result["first_seconds"], 3), "seconds_for_all": round(result["seconds"], 2), "max_rss_mb": round(result["max_rss_mb"], 1),
        }
        print(variant, json.dumps(report[variant]), flush=True)


if __name__ == "__main__":
    main()
