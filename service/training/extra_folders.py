"""The extra folders beside the dataset, read from their TSV files: flickr8k_extra (more captions of
Flickr8k photos, and more photos) and captioned_extra (captioned MS-COCO photos). They add training
data only; their photos are never stored as photos. ``held_out_coco`` names the COCO photos the
out-of-domain check keeps out of training.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.config import Settings


@dataclass
class ExtraFolder:
    """What an extra folder adds: captions by file name, and photos with their captions."""

    captions: dict[str, list[str]]
    photo_paths: list[Path]
    original_sha256: list[str]
    flickr_ids: list[str]  # Flickr photo ids of photos named otherwise (MS-COCO), for the leak check


def read_extra_folder(extra_dir: str, manifest_name: str = "images_manifest.tsv",
                      exclude: frozenset = frozenset()) -> ExtraFolder | None:
    """flickr8k_extra (manifest ``images_manifest.tsv``) or captioned_extra (``manifest.tsv``, with
    each COCO photo's Flickr URL). Photos named in ``exclude`` are left out (held out for a check)."""
    folder = Path(extra_dir) if extra_dir else None
    if folder is None or not (folder / "captions.tsv").is_file():
        return None
    captions: dict[str, list[str]] = {}
    with (folder / "captions.tsv").open(newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            if len(row) == 3:
                captions.setdefault(row[0], []).append(row[2])
    paths = sorted(p for p in (folder / "images").glob("*.jpg") if p.name not in exclude) if (folder / "images").is_dir() else []
    shas, flickr_ids = [], []
    manifest = folder / manifest_name
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as f:
            by_name = {r["image"]: r for r in csv.DictReader(f, delimiter="\t")}
        shas = [by_name[p.name]["orig_sha256"] for p in paths if p.name in by_name]
        # e.g. http://farm9.staticflickr.com/8035/8024364858_9c41dc1666_z.jpg -> 8024364858
        flickr_ids = [by_name[p.name]["flickr_url"].rsplit("/", 1)[-1].split("_")[0]
                      for p in paths if by_name.get(p.name, {}).get("flickr_url")]
    return ExtraFolder(captions=captions, photo_paths=paths, original_sha256=shas, flickr_ids=flickr_ids)


def training_extras(settings: Settings, exclude: frozenset = frozenset()) -> ExtraFolder | None:
    """The extra folders training reads, as one: flickr8k_extra joined by captioned_extra (whose
    photos named in ``exclude`` stay out). None when neither folder is there."""
    extra = read_extra_folder(settings.extra_dataset)
    coco = read_extra_folder(settings.captioned_extra, "manifest.tsv", exclude)
    if extra is not None and coco is not None:  # one set of extra photos: COCO's join Flickr8k's
        return ExtraFolder({**extra.captions, **coco.captions}, extra.photo_paths + coco.photo_paths,
                           extra.original_sha256 + coco.original_sha256, extra.flickr_ids + coco.flickr_ids)
    return extra or coco


def held_out_coco(settings: Settings, n: int = 100) -> list[Path]:
    """The captioned_extra photos kept out of training for the out-of-domain check: ``n`` of them,
    the same every time (seeded), so the check can be repeated."""
    folder = Path(settings.captioned_extra) if settings.captioned_extra else None
    if folder is None or not (folder / "images").is_dir():
        return []
    paths = sorted((folder / "images").glob("*.jpg"))
    pick = np.random.default_rng(12).permutation(len(paths))[:n]
    return [paths[i] for i in sorted(pick)]
