"""Cut the small test dataset (tests/fixtures/dataset) out of the full one.

Keeps a dozen train photos and four test photos, downscaled to 128 px, and every table row that
mentions only them, so the suite runs where ../shared is absent. Run once; the output is committed.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image

TRAIN = 12
TEST = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="the full dataset folder")
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    src, dst = args.source, args.target
    for folder in ("train_images", "test_images"):
        (dst / folder).mkdir(parents=True, exist_ok=True)

    rows = list(csv.reader((src / "train_dataset.csv").open()))
    header, rows = rows[0], rows[1:]
    # Photos whose own caption is among the rated ones, so searches by caption have an answer.
    own = sorted({r[0] for r in rows if r[1].split("#")[0] == r[0]})
    train = set(own[:TRAIN])
    kept = [r for r in rows if r[0] in train]
    keys = {r[1] for r in kept}
    with (dst / "train_dataset.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header] + kept)
    for name in ("ExpertAnnotations.tsv", "CrowdAnnotations.tsv"):
        lines = [row for row in (src / name).read_text().splitlines()
                 if row.split("\t")[0] in train and row.split("\t")[1] in keys]
        (dst / name).write_text("\n".join(lines) + "\n")

    test_lines = (src / "test_images.csv").read_text().splitlines()
    test = test_lines[1 : 1 + TEST]
    (dst / "test_images.csv").write_text("\n".join([test_lines[0]] + test) + "\n")
    queries = (src / "test_queries.csv").read_text().splitlines()
    (dst / "test_queries.csv").write_text(
        "\n".join([queries[0]] + [q for q in queries[1:] if q.split("|")[3] in test]) + "\n"
    )
    for names, folder in ((train, "train_images"), (test, "test_images")):
        for name in names:
            with Image.open(src / folder / name) as image:
                image.thumbnail((128, 128))
                image.save(dst / folder / name, quality=85)


if __name__ == "__main__":
    main()
