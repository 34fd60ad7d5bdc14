"""Reading and validating the Practicum dataset folder before anything is written.

Layout (see ../shared/data/photos/SOURCE.md): train_dataset.csv, ExpertAnnotations.tsv,
CrowdAnnotations.tsv, test_queries.csv, test_images.csv, train_images/, test_images/.
Every problem is reported with its file and line; a dataset with problems is not loaded at all.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

TABLES = ("train_dataset.csv", "ExpertAnnotations.tsv", "CrowdAnnotations.tsv", "test_queries.csv", "test_images.csv")
IMAGE_DIRS = {"train": "train_images", "test": "test_images"}


@dataclass(frozen=True)
class Caption:
    key: str  # Flickr8k caption id, "<image file>#<n>"
    text: str
    source: str  # "dataset" for train captions, "test" for the held-out test queries

    @property
    def photo_file(self) -> str:
        return self.key.split("#", 1)[0]


@dataclass(frozen=True)
class ExpertRow:
    photo_file: str
    key: str
    scores: tuple[int, int, int]


@dataclass(frozen=True)
class CrowdRow:
    photo_file: str
    key: str
    share: float
    yes: int
    no: int


@dataclass
class Dataset:
    root: Path
    photos: dict[str, tuple[str, Path]] = field(default_factory=dict)  # file name -> (split, path)
    captions: dict[str, Caption] = field(default_factory=dict)
    experts: list[ExpertRow] = field(default_factory=list)
    crowd: list[CrowdRow] = field(default_factory=list)
    # Crowd rows left out because no table gives their caption text (only without flickr8k_extra).
    skipped_crowd: list[CrowdRow] = field(default_factory=list)


class DatasetInvalid(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:30])
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        super().__init__(f"the dataset has {len(problems)} problem(s); nothing was loaded:\n  {shown}{more}")


def _rows(path: Path, delimiter: str, skip_header: bool):
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        for line_no, row in enumerate(reader, start=1):
            if skip_header and line_no == 1:
                continue
            if row:
                yield line_no, row


def _valid_key(key: str) -> bool:
    name, _, n = key.partition("#")
    return name.endswith(".jpg") and n.isdigit()


def read_extra_captions(extra_dir: str | Path | None) -> dict[str, str]:
    """Caption texts from flickr8k_extra/captions.tsv, keyed like the Practicum tables; {} if absent."""
    if not extra_dir:
        return {}
    path = Path(extra_dir) / "captions.tsv"
    if not path.is_file():
        return {}
    texts = {}
    for _line, row in _rows(path, "\t", skip_header=True):
        if len(row) == 3:
            texts[f"{row[0]}#{row[1]}"] = row[2]
    return texts


def read_dataset(root: str | Path, *, extra_dir: str | Path | None = None) -> Dataset:
    """Read and check every table and image name; raise DatasetInvalid listing all problems."""
    root = Path(root)
    problems: list[str] = []
    missing = [name for name in TABLES if not (root / name).is_file()]
    missing += [d + "/" for d in IMAGE_DIRS.values() if not (root / d).is_dir()]
    if missing:
        raise DatasetInvalid([f"{root}: missing {name}" for name in missing])

    data = Dataset(root=root)
    for split, folder in IMAGE_DIRS.items():
        for path in sorted((root / folder).glob("*.jpg")):
            data.photos[path.name] = (split, path)

    def need_photo(where: str, name: str, split: str) -> None:
        if data.photos.get(name, (None,))[0] != split:
            problems.append(f"{where}: image {name!r} is not in {IMAGE_DIRS[split]}/")

    def add_caption(where: str, key: str, text: str, source: str) -> None:
        if not _valid_key(key):
            problems.append(f"{where}: query_id {key!r} is not of the form <image>.jpg#<n>")
        elif not text.strip():
            problems.append(f"{where}: empty caption text")
        elif key in data.captions and data.captions[key].text != text:
            problems.append(f"{where}: query_id {key!r} has two different texts")
        else:
            data.captions[key] = Caption(key=key, text=text.strip(), source=source)

    for line, row in _rows(root / "train_dataset.csv", ",", skip_header=True):
        where = f"train_dataset.csv:{line}"
        if len(row) != 3:
            problems.append(f"{where}: expected 3 columns (image,query_id,query_text), got {len(row)}")
            continue
        need_photo(where, row[0], "train")
        add_caption(where, row[1], row[2], "dataset")

    for line, row in _rows(root / "ExpertAnnotations.tsv", "\t", skip_header=False):
        where = f"ExpertAnnotations.tsv:{line}"
        try:
            image, key, *scores = row
            scores = tuple(int(s) for s in scores)
            if len(scores) != 3 or not all(1 <= s <= 4 for s in scores):
                raise ValueError
        except ValueError:
            problems.append(f"{where}: expected image, query_id and three scores 1..4, got {row!r}")
            continue
        need_photo(where, image, "train")
        data.experts.append(ExpertRow(image, key, scores))

    for line, row in _rows(root / "CrowdAnnotations.tsv", "\t", skip_header=False):
        where = f"CrowdAnnotations.tsv:{line}"
        try:
            image, key, share, yes, no = row
            share, yes, no = float(share), int(yes), int(no)
            if not (0.0 <= share <= 1.0) or math.isnan(share) or yes < 0 or no < 0:
                raise ValueError
        except ValueError:
            problems.append(f"{where}: expected image, query_id, share 0..1, yes >= 0, no >= 0, got {row!r}")
            continue
        need_photo(where, image, "train")
        data.crowd.append(CrowdRow(image, key, share, yes, no))

    test_images = set()
    for line, row in _rows(root / "test_images.csv", ",", skip_header=True):
        need_photo(f"test_images.csv:{line}", row[0], "test")
        test_images.add(row[0])
    for line, row in _rows(root / "test_queries.csv", "|", skip_header=True):
        where = f"test_queries.csv:{line}"
        if len(row) != 4:
            problems.append(f"{where}: expected 4 '|'-separated columns (index|query_id|query_text|image), got {len(row)}")
            continue
        _index, key, text, image = row
        need_photo(where, image, "test")
        if key.split("#", 1)[0] != image:
            problems.append(f"{where}: query_id {key!r} is not a caption of image {image!r}")
        add_caption(where, key, text, "test")

    extra = read_extra_captions(extra_dir)
    for row in data.experts + data.crowd:
        if row.key not in data.captions and row.key in extra:
            data.captions[row.key] = Caption(key=row.key, text=extra[row.key].strip(), source="dataset")
    for row in data.experts:
        if row.key not in data.captions:
            problems.append(f"ExpertAnnotations.tsv: no caption text for query_id {row.key!r}")
    data.skipped_crowd = [row for row in data.crowd if row.key not in data.captions]
    data.crowd = [row for row in data.crowd if row.key in data.captions]

    if problems:
        raise DatasetInvalid(problems)
    return data
