"""Do the int8 image networks rank as well as fp32? Written to reports/bench/int8_cv.{json,md}.

Over a `make demo` database (WITHSENSE_DATA_DIR; read only, but it starts its embedded server, so
use a copy): the training data exactly as `withsense train` gathers it (fp32 features from the
database, the extra folders' photos from the feature cache), then the same photos' features from
the int8 networks (``ml.onnx_quantize``; database photos decoded as ingestion decodes them, extra
photos as training reads them). Both are compared:

* cosine of int8 to fp32 features, per part of the concatenation (training photos only);
* grouped CV (``ml.compare.grouped_cv``, the folds, seeds and scorers of `withsense train`) of the
  reranker trained on each: R@1, R@5, the headline R@1 + R@5, tau-c, and the per-fold R@1 paired
  differences. "Equal" means the headline difference is inside the selection rule's tie band
  (0.005, ``ml.compare.pick_best``) and inside one fold-to-fold standard deviation of the paired R@1
  differences. The test photos are not used.

    python scripts/compare_int8.py [--scorers listwise_mlp] [--fp32-from-active]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.config import REPO_ROOT, load_settings  # noqa: E402

TIE_BAND = 0.005  # ml.compare.pick_best: candidates within it of the best are tied


def _cv(data, scorer_names: list[str]) -> dict:
    from ml.compare import grouped_cv
    from ml.scorers import candidate_scorers
    from ml.train import WHITENING_POWER, default_mapper
    from ml.whitening import PartialWhitening

    data = data.with_text_transform(PartialWhitening(WHITENING_POWER).fit(data.all_text_vectors()))
    scorers = {k: v for k, v in candidate_scorers(0).items() if k in scorer_names}
    cv, _oof = grouped_cv(data, default_mapper(data), scorers, n_splits=5, random_state=0, progress=False)
    return cv


def _cosines(a: np.ndarray, b: np.ndarray, parts) -> dict:
    out, start = {}, 0
    for part in parts:
        x, y = a[:, start : start + part.dim], b[:, start : start + part.dim]
        cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        out[part.name] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
        start += part.dim
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scorers", nargs="+", default=["listwise_mlp"],
                        help="reranker families compared (the demo's chosen one by default); joint_cosine always")
    parser.add_argument("--fp32-from-active", action="store_true",
                        help="take the fp32 CV from the active ranker's metrics (the demo's own `withsense train`)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    args = parser.parse_args()
    from sqlalchemy import text

    from ml.encoders import load_encoders
    from ml.features import cached_image_features
    from service.ingest.loader import open_photo
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url
    from service.store.library_precision import library_settings
    from service.store.model_rows import active_ranker
    from service.training.extra_folders import training_extras
    from service.training.training_data import training_data

    settings = load_settings(image_precision="fp32")  # an fp32 library's features against their int8 copies
    engine = make_engine(resolve_url(settings))
    settings = library_settings(engine, settings)
    fp32 = encoders_for(settings)
    int8 = load_encoders(settings.encoder, image_model=settings.image_model, runtime="onnx",
                         onnx_dir=settings.onnx_path, image_precision="int8")
    t0 = time.perf_counter()
    data = training_data(engine, settings, fp32)
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT file_name, storage_key FROM photos WHERE split = 'train'")).all())
    extra = training_extras(settings)
    n_db = sum(1 for k in data.photo_keys if k in keys)
    names = data.photo_keys[:n_db]
    features = [np.concatenate([int8.image.encode([open_photo(settings, keys[k]) for k in names[i : i + 32]])
                                for i in range(0, n_db, 32)])]
    if n_db < len(data.photo_keys):
        features.append(cached_image_features(extra.photo_paths, int8.image, settings.data_dir / "cache"))
    int8_features = np.concatenate(features)
    assert int8_features.shape == data.photo_features.shape, (int8_features.shape, data.photo_features.shape)
    features_s = time.perf_counter() - t0
    result = {"photos": int(len(data.photo_keys)), "stored_photos": n_db, "int8_features_s": round(features_s, 1),
              "fp32_encoder": fp32.image.name, "int8_encoder": int8.image.name,
              "cosine": _cosines(data.photo_features, int8_features, int8.image.parts)}
    if args.fp32_from_active:
        # The active ranker's own CV: `withsense train` ran this very CV (same data, folds and seeds)
        # on the fp32 features; on a shared machine it saves the run's longer half.
        with engine.connect() as conn:
            model = active_ranker(conn, settings.encoder_key)
        cv = json.loads((Path(model.artifact_path) / "metrics.json").read_text())["cv"]
        result["fp32"] = {k: v for k, v in cv.items() if k in ("joint_cosine", *args.scorers)}
        result["fp32_cv_from"] = f"the active ranker's metrics.json ({Path(model.artifact_path).name})"
    else:
        t0 = time.perf_counter()
        result["fp32"] = _cv(data, args.scorers)
        result["fp32_cv_s"] = round(time.perf_counter() - t0, 1)
    engine.dispose()
    t0 = time.perf_counter()
    result["int8"] = _cv(data.with_features(int8_features), args.scorers)
    result["int8_cv_s"] = round(time.perf_counter() - t0, 1)
    verdict = {}
    for scorer in result["fp32"]:
        a, b = result["fp32"][scorer], result["int8"][scorer]
        diffs = np.array(b["R@1_per_fold"]) - np.array(a["R@1_per_fold"])
        headline = (b["R@1"] + b["R@5"]) - (a["R@1"] + a["R@5"])
        verdict[scorer] = {"headline_fp32": round(a["R@1"] + a["R@5"], 4), "headline_int8": round(b["R@1"] + b["R@5"], 4),
                           "headline_diff": round(headline, 4), "tau_c_diff": round(b["tau_c"] - a["tau_c"], 4),
                           "r1_fold_diffs": [round(float(x), 4) for x in diffs],
                           "r1_fold_diff_std": round(float(diffs.std(ddof=1)), 4),
                           "equal": bool(abs(headline) <= TIE_BAND and abs(diffs.mean()) <= diffs.std(ddof=1))}
    result["verdict"] = verdict
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_cv.json").write_text(json.dumps(result, indent=2))
    lines = ["# int8 image networks against fp32 (scripts/compare_int8.py)", "",
             f"{result['photos']} training photos ({n_db} stored, the rest from the extra folders); test photos unused.",
             "", "| part | cosine int8 to fp32, mean | min |", "|---|---|---|"]
    lines += [f"| {k} | {v['mean']} | {v['min']} |" for k, v in result["cosine"].items()]
    lines += ["", "Grouped CV (5 folds by photo, as `withsense train`):", "",
              "| scorer | R@1+R@5 fp32 | int8 | difference | tau-c difference | R@1 per-fold differences | equal? |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['headline_fp32']} | {v['headline_int8']} | {v['headline_diff']:+.4f} | {v['tau_c_diff']:+.4f} | "
              f"{', '.join(f'{x:+.4f}' for x in v['r1_fold_diffs'])} | {'yes' if v['equal'] else 'no'} |"
              for k, v in verdict.items()]
    lines += ["", f"Equal: |headline difference| <= {TIE_BAND} (the selection rule's tie band) and the mean per-fold "
              "R@1 difference within one standard deviation of the differences.", ""]
    (args.out / "int8_cv.md").write_text("\n".join(lines))
    print(json.dumps(result["verdict"], indent=2))


if __name__ == "__main__":
    main()
