"""Which detector set-up routes queries (ml/language.py): memory, load time and misroutes.

Variants (``ml.language.MODES``), each behind the same script rule (a non-Latin letter decides alone):

- ``high``: the served rule until issue 18, lingua's high-accuracy models for the Latin-script
  languages USE serves, relative distance 0.15, English when unsure;
- ``low``: the same in lingua's low-accuracy mode (trigrams only);
- ``low_then_high``: low-accuracy first; only a text it puts in another language is asked again
  in high-accuracy mode, whose models load on that first such query. A text low-accuracy calls
  English (or is unsure about) goes to English, so ``high`` is asked for the texts only;
- ``low_then_pair``: the same, high accuracy between English and the language low named;
- ``low_then_words`` (served): the same, the second opinion from word frequencies (wordfreq's lists);
- ``words``: word frequencies alone, no lingua.

Each variant also runs a stall probe in another fresh process: its warm-up (``load``), then the first
German text (the first that needs a second opinion) while a thread counts 1 ms ticks; the longest gap
between two ticks is how long that text held the GIL, i.e. how long it stalled a web worker's other
request threads.

``--held-out`` adds the Flickr8k extra captions after the first 6,000 (33,753 distinct) and
HELD_OUT_OTHER, 40 short texts in the 8 other languages written after the served rule was chosen.

English texts: the dataset's test queries, its training captions and the first 6,000 Flickr8k
extra captions (WITHSENSE_DATASET's layout under /work/shared/data), plus SHORT_ENGLISH; other
languages: SHORT_OTHER. Each variant is measured in a fresh process (memory and load time).

    python -m research.routing_detector [--data /work/shared/data] [--held-out]
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from ml.language import MODES

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

# Written after the word-frequency rule's threshold was chosen (ml/language.py), to check it on texts
# it had not seen; with the Flickr8k extra captions after the first 6,000 (``--held-out``).
HELD_OUT_OTHER = [
    ("Pferd auf der Wiese", "de"), ("ein Junge springt ins Wasser", "de"), ("rotes Auto in der Stadt", "de"),
    ("Frau mit Regenschirm", "de"), ("Berge im Winter", "de"),
    ("caballo en el campo", "es"), ("un niño saltando al agua", "es"), ("coche rojo en la ciudad", "es"),
    ("mujer con paraguas", "es"), ("bicicleta en la calle", "es"),
    ("cheval dans le pré", "fr"), ("un garçon saute dans l'eau", "fr"), ("voiture rouge en ville", "fr"),
    ("femme avec un parapluie", "fr"), ("montagnes en hiver", "fr"),
    ("cavallo nel prato", "it"), ("un ragazzo salta in acqua", "it"), ("macchina rossa in città", "it"),
    ("donna con l'ombrello", "it"), ("montagne d'inverno", "it"),
    ("cavalo no campo", "pt"), ("um menino pulando na água", "pt"), ("carro vermelho na cidade", "pt"),
    ("mulher com guarda-chuva", "pt"), ("montanhas no inverno", "pt"),
    ("paard in de wei", "nl"), ("een jongen springt in het water", "nl"), ("rode auto in de stad", "nl"),
    ("vrouw met een paraplu", "nl"), ("bergen in de winter", "nl"),
    ("koń na łące", "pl"), ("chłopiec skacze do wody", "pl"), ("czerwony samochód w mieście", "pl"),
    ("kobieta z parasolem", "pl"), ("góry zimą", "pl"),
    ("çayırda at", "tr"), ("suya atlayan çocuk", "tr"), ("şehirde kırmızı araba", "tr"), ("şemsiyeli kadın", "tr"),
    ("kışın dağlar", "tr"),
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

STALL_PROBE = r"""
import json, sys, threading, time
from ml.language import QueryLanguage

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

before = rss_mb()
start = time.perf_counter()
detector = QueryLanguage(mode=sys.argv[1]).load()
load_seconds, after_load = time.perf_counter() - start, rss_mb()
ticks, done = [], threading.Event()

def tick():
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)

thread = threading.Thread(target=tick)
thread.start()
time.sleep(0.05)
start = time.perf_counter()
answer = detector.detect("Hund im Schnee")
first_other = time.perf_counter() - start
time.sleep(0.05)
done.set()
thread.join()
start = time.perf_counter()
for _ in range(200):
    detector.detect("zwei Kinder spielen im Park")
per_query = (time.perf_counter() - start) / 200
print(json.dumps({"answer": answer, "load_s": load_seconds, "load_rss_mb": after_load - before,
                  "first_other_s": first_other, "first_other_rss_mb": rss_mb() - after_load,
                  "longest_tick_gap_s": max(b - a for a, b in zip(ticks, ticks[1:])),
                  "other_query_us": per_query * 1e6}))
"""


def held_out_english(data: Path) -> list[str]:
    with open(data / "flickr8k_extra" / "captions.tsv") as f:
        return list(dict.fromkeys(row["caption"] for row in csv.DictReader(f, delimiter="\t")))[6000:]


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
    parser.add_argument("--held-out", action="store_true",
                        help="also count misroutes on HELD_OUT_OTHER and the extra captions after the first 6,000")
    args = parser.parse_args()
    english = english_texts(args.data)
    texts = english + SHORT_ENGLISH + [t for t, _ in SHORT_OTHER]
    report = {}
    for variant in MODES:
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
            "first_english_query_s": round(result["first_seconds"], 3), "seconds_for_all": round(result["seconds"], 2),
            "max_rss_mb": round(result["max_rss_mb"], 1),
        }
        stall = json.loads(subprocess.run([sys.executable, "-c", STALL_PROBE, variant], text=True,
                                          capture_output=True, check=True).stdout)
        report[variant].update({key: round(value, 4 if key.endswith("_s") else 1) if isinstance(value, float) else value
                                for key, value in stall.items()})
        if args.held_out:
            held_english = held_out_english(args.data)
            done = subprocess.run([sys.executable, "-c", PROBE, variant], text=True, capture_output=True, check=True,
                                  input=json.dumps(held_english + [t for t, _ in HELD_OUT_OTHER]))
            answers = json.loads(done.stdout)["answers"]
            report[variant].update({
                "held_out_english_to_use": sum(a not in ("en", "und") for a in answers[:len(held_english)]),
                "held_out_english_texts": len(held_english),
                "held_out_other_missed": sum(a in ("en", "und") for a in answers[len(held_english):]),
                "held_out_other_texts": len(HELD_OUT_OTHER)})
        print(variant, json.dumps(report[variant]), flush=True)


if __name__ == "__main__":
    main()
