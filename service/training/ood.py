"""`withsense evaluate --ood`: photos unlike the dataset, found by plain descriptions of what they show.

About 100 MS-COCO photos of captioned_extra (``extra_folders.held_out_coco``, the same every run) are
held out of training. Two rankers are trained without them on the database's training data, so the
check says what the served recipe gains over a simpler one on photos unlike the training photos:

* the baseline (report key ``today``, ``BASELINE``): Lite0 + Lite2 flip-averaged features only
  (``BASELINE_NETWORKS``; the other image views and Lite1 sliced off), the raw MiniLM space, kernel
  ridge + bridge mix, ranked by the joint cosine;
* the served recipe (report key ``new``, ``SERVED``): every configured image view, the whitened text
  space, the listwise reranker of the active model's family, calibrated.

The library is every photo in the database (1,100 for the dataset) plus the held-out photos, without
descriptions. It is built in a scratch database on the same server (``service.store.schema``,
dropped at the end), so the served library and its active ranker are never touched: there each
ranker is published and activated in turn (artifact, every photo's rows, HNSW index), and each
caption of a held-out photo (not about children) is a query through ``Searcher.search``, as every
evaluation searches: the SQL shortlist of ``WITHSENSE_SHORTLIST`` in the ranker's space, then the
ranker's score, on the photo content alone (``hybrid=False``). Reported: R@1 / R@5 / R@10 among the
whole library; a photo not even shortlisted counts as a miss at every k (rank = library size + 1).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import Engine, text

from ml import metrics as M
from ml.features import cached_image_features, file_sha256
from ml.scorers import CosineScorer
from service.config import Settings
from service.policy import is_about_children
from service.search.searcher import Searcher
from service.store.model_rows import encoder_model_ids
from service.store.schema import scratch_database
from service.training.extra_folders import held_out_coco, read_extra_folder
from service.training.publish import publish
from service.training.training_data import load_photo_features, training_data

PHOTO_COLUMNS = ("id", "file_name", "sha256", "bytes", "width", "height", "storage_key", "split", "shows_child")
LIBRARY_PHOTOS_SQL = text(f"SELECT {', '.join(PHOTO_COLUMNS)} FROM photos WHERE id = ANY(:ids) ORDER BY id")
INSERT_PHOTO_SQL = text(f"INSERT INTO photos ({', '.join(PHOTO_COLUMNS)}) "
                        f"VALUES ({', '.join(':' + c for c in PHOTO_COLUMNS)})")


# The baseline's image features: these networks' flip-averaged parts of the configured features.
BASELINE_NETWORKS = ("efficientnet-lite0", "efficientnet-lite2")
# The two rankers' keys in the report (reports/evaluation.json's "ood", reports/evaluation.md's
# table): the names they were first reported under, kept so reports written before still compare.
BASELINE, SERVED = "today", "new"


def _baseline_columns(image_encoder) -> np.ndarray | None:
    """Column indices of the features the baseline reads: the flip-averaged parts made by
    ``BASELINE_NETWORKS`` (the views and other networks are sliced off). None when the encoder has
    nothing else."""
    parts = getattr(image_encoder, "parts", None)
    if not parts:
        return None
    keep = [getattr(p, "flip", True) and p.name in BASELINE_NETWORKS for p in parts]
    if all(keep):
        return None
    cols, start = [], 0
    for p, kept in zip(parts, keep, strict=True):
        if kept:
            cols.append(np.arange(start, start + p.dim))
        start += p.dim
    return np.concatenate(cols)


def _copy_library(engine: Engine, scratch: Engine, library_ids: np.ndarray, held: list[Path]) -> np.ndarray:
    """The library's photos rows into the scratch database, then the held-out photos as uploads;
    returns the held-out photos' ids there."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(LIBRARY_PHOTOS_SQL, {"ids": [int(i) for i in library_ids]}).mappings()]
    first = int(library_ids.max(initial=0)) + 1
    for i, path in enumerate(held):
        with Image.open(path) as image:
            width, height = image.size
        rows.append({"id": first + i, "file_name": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                     "width": width, "height": height, "storage_key": f"ood/{path.name}", "split": "upload",
                     "shows_child": False})
    with scratch.begin() as conn:
        conn.execute(INSERT_PHOTO_SQL, rows)
    return np.arange(first, first + len(held), dtype=np.int64)


def _rank(searcher: Searcher, query: str, answer: int, library_size: int, shortlist: int) -> int:
    """The answer's rank in the served ranking of ``query`` (the whole reranked shortlist)."""
    response = searcher.search(query, limit=shortlist, hybrid=False, log=False)
    ids = [r.photo_id for r in response.results]
    return ids.index(answer) + 1 if answer in ids else library_size + 1


def ood_check(engine: Engine, settings: Settings, encoders, *, family: str = "listwise_mlp", n: int = 100,
              progress: bool = True) -> dict:
    from ml.scorers import candidate_scorers
    from ml.train import train

    held = held_out_coco(settings, n)
    if not held:
        return {"skipped": "no captioned_extra folder"}
    names = frozenset(p.name for p in held)
    data = training_data(engine, settings, encoders, exclude=names)
    assert not names & set(data.photo_keys.tolist()), "held-out photos reached training"
    cache_dir = settings.data_dir / "cache"
    held_features = cached_image_features(held, encoders.image, cache_dir)
    image_model_id = encoder_model_ids(engine, settings, image_encoder=encoders.image)["image"]
    library_ids, library_features = load_photo_features(engine, image_model_id)
    features = np.concatenate([library_features, held_features])
    captions = read_extra_folder(settings.captioned_extra, "manifest.tsv").captions
    texts = [(i, t) for i, p in enumerate(held) for t in captions.get(p.name, []) if not is_about_children(t)]

    out = {"held_out_photos": len(held), "library_photos": int(len(features)), "queries": len(texts),
           "shortlist": settings.shortlist}
    baseline_cols = _baseline_columns(encoders.image)
    baseline_data = data if baseline_cols is None else data.with_features(data.photo_features[:, baseline_cols])
    baseline_features = features if baseline_cols is None else features[:, baseline_cols]
    recipes = {
        BASELINE: (baseline_data, baseline_features,
                   dict(whitening_power=None, scorers={"joint_cosine": CosineScorer()})),
        SERVED: (data, features, dict(scorers={family: candidate_scorers()[family]})),
    }
    with scratch_database(engine, "withsense_ood") as scratch, tempfile.TemporaryDirectory() as artifacts:
        held_ids = _copy_library(engine, scratch, library_ids, held)
        photo_ids = np.concatenate([library_ids, held_ids])
        # The scratch rankers' artifacts go to a temporary folder, their rows to the scratch database.
        scratch_settings = settings.with_overrides({
            "data_dir": artifacts, "onnx_dir": str(settings.onnx_path),
            "database_url": scratch.url.render_as_string(hide_password=False)})
        for name, (d, f, kw) in recipes.items():
            ranker = train(d, run_cv=False, progress=False, **kw).ranker
            publish(scratch, scratch_settings, ranker, photo_ids, f, params={"ood_recipe": name}, metrics={},
                    progress=False)
            searcher = Searcher(scratch, scratch_settings, encoders.query_text)
            try:
                ranks = np.array([_rank(searcher, t, held_ids[i], len(photo_ids), settings.shortlist)
                                  for i, t in texts])
            finally:
                searcher.close()
            out[name] = {"R@1": round(M.recall_at_k(ranks, 1), 4), "R@5": round(M.recall_at_k(ranks, 5), 4),
                         "R@10": round(M.recall_at_k(ranks, 10), 4), "median_rank": float(np.median(ranks)),
                         "model": ranker.name}
            if progress:
                print(f"out-of-domain check, {name}: {out[name]}", flush=True)
    return out
