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

``--text``: MiniLM's int8 copy as the search queries' encoder (``WITHSENSE_QUERY_PRECISION``), written
to reports/bench/int8_text_cv.{json,md}. Over the library's own training data (its image precision),
the ranker trained as `withsense train` trains it, on the stored fp32 text vectors; each fold's
held-out queries (captions, rated texts, no-match queries) encoded (a) fp32, as stored, and (b) by
the int8 copy, through the same fitted whitening and scorers (``grouped_cv(query_variants=...)``):
the serving scenario, where everything stored stays fp32. ``--train-int8`` adds (c): every text
int8, training included (a CV of its own). Also the cosine of int8 to fp32 vectors and one query's
encoding latency (1 thread, p50, fp32 and int8 alternating over the same captions).

    python scripts/compare_int8.py [--scorers listwise_mlp] [--fp32-from-active]
    python scripts/compare_int8.py --text [--train-int8] [--latency-queries 400]
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


def _cv(data, scorer_names: list[str], query_variants: dict | None = None, progress: bool = False) -> dict:
    """Grouped CV as `withsense train` runs it (whitening fitted on ``data``'s texts, 5 folds, seed 0,
    the scene captions as no-match queries); ``query_variants``' held-out queries go through the
    same whitening and fitted scorers (``ml.compare.grouped_cv``)."""
    from ml import no_match
    from ml.compare import grouped_cv
    from ml.scorers import candidate_scorers
    from ml.train import WHITENING_POWER, default_mapper
    from ml.whitening import PartialWhitening

    whitening = PartialWhitening(WHITENING_POWER).fit(data.all_text_vectors())
    data = data.with_text_transform(whitening)
    variants = {k: v.with_text_transform(whitening) for k, v in (query_variants or {}).items()}
    scorers = {k: v for k, v in candidate_scorers(0).items() if k in scorer_names}
    cv, _oof = grouped_cv(data, default_mapper(data), scorers, n_splits=5, random_state=0, progress=progress,
                          caption_negatives=no_match.N_SCENE_CAPTIONS,
                          caption_pool=no_match.scene_caption_pool(data.caption_photo, data.caption_texts),
                          query_variants=variants or None)
    return cv


def _verdict(a: dict, b: dict) -> dict:
    """``b`` against ``a`` (one scorer's CV means): the headline and per-fold R@1 differences, and
    whether they are equal by the rule in the module's docstring."""
    diffs = np.array(b["R@1_per_fold"]) - np.array(a["R@1_per_fold"])
    headline = (b["R@1"] + b["R@5"]) - (a["R@1"] + a["R@5"])
    return {"headline_fp32": round(a["R@1"] + a["R@5"], 4), "headline_int8": round(b["R@1"] + b["R@5"], 4),
            "headline_diff": round(headline, 4), "tau_c_diff": round(b["tau_c"] - a["tau_c"], 4),
            "r1_fold_diffs": [round(float(x), 4) for x in diffs],
            "r1_fold_diff_mean": round(float(diffs.mean()), 4),
            "r1_fold_diff_std": round(float(diffs.std(ddof=1)), 4),
            "equal": bool(abs(headline) <= TIE_BAND and abs(diffs.mean()) <= diffs.std(ddof=1))}


def _latency(encoders: dict, texts: list[str]) -> dict:
    """p50 and p90 of one query's encoding (ms), the encoders taking turns on each text."""
    times = {name: [] for name in encoders}
    for enc in encoders.values():
        enc.encode(texts[:20])  # sessions open, first runs done
    for t in texts:
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode([t])
            times[name].append(time.perf_counter() - t0)
    return {name: {"p50_ms": round(float(np.percentile(x, 50)) * 1e3, 2),
                   "p90_ms": round(float(np.percentile(x, 90)) * 1e3, 2)} for name, x in times.items()}


def _text_cosines(a: np.ndarray, b: np.ndarray) -> dict:
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"n": int(len(cos)), "mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4),
            "p01": round(float(np.percentile(cos, 1)), 4)}


def text_main(args) -> None:
    from ml.encoders import imagenet_label_texts
    from ml.onnx_encoders import OnnxMiniLMTextEncoder, model_path
    from service.runtime import encoders_for
    from service.store.db import make_engine, resolve_url
    from service.store.library_precision import library_settings
    from service.store.model_rows import active_ranker
    from service.training.training_data import training_data

    settings = load_settings()
    engine = make_engine(resolve_url(settings))
    settings = library_settings(engine, settings)
    encoders = encoders_for(settings)
    fp32 = OnnxMiniLMTextEncoder(settings.onnx_path)
    int8 = OnnxMiniLMTextEncoder(settings.onnx_path, precision="int8").load()  # quantized now when missing
    t0 = time.perf_counter()
    data = training_data(engine, settings, encoders)
    with engine.connect() as conn:
        model = active_ranker(conn, settings.encoder_key)
    engine.dispose()
    result = {"photos": int(len(data.photo_keys)), "captions": int(len(data.caption_texts)),
              "rated_pairs": int(len(data.pair_texts)), "no_match_queries": int(len(data.nomatch_texts)),
              "encoder_key": settings.encoder_key, "training_data_s": round(time.perf_counter() - t0, 1),
              "int8_file": model_path(settings.onnx_path, "minilm-l6-v2", "int8").name,
              "int8_file_mb": round(model_path(settings.onnx_path, "minilm-l6-v2", "int8").stat().st_size / 1e6, 1),
              "fp32_file_mb": round(model_path(settings.onnx_path, "minilm-l6-v2").stat().st_size / 1e6, 1)}

    texts = list(dict.fromkeys(data.caption_texts.tolist()))[: args.latency_queries]
    result["latency"] = {"queries": len(texts), "threads": 1, "machine": args.machine,
                         **_latency({"fp32": fp32, "int8": int8}, texts)}
    print(json.dumps(result["latency"]), flush=True)

    t0 = time.perf_counter()
    q = {k: int8.encode(list(getattr(data, f"{k}_texts"))) for k in ("caption", "pair", "nomatch")}
    result["int8_encoding_s"] = round(time.perf_counter() - t0, 1)
    # The stored (fp32) vectors against the int8 copy's: what a served query is compared with.
    result["cosine"] = {k: _text_cosines(getattr(data, f"{k}_vectors"), v) for k, v in q.items()}
    print(json.dumps(result["cosine"]), flush=True)
    served = replace_text(data, caption_vectors=q["caption"], pair_vectors=q["pair"], nomatch_vectors=q["nomatch"])

    active = _active_cv(model, args.scorers)
    t0 = time.perf_counter()
    cv = _cv(data, args.scorers, {"int8": served}, progress=True)
    result["cv_s"] = round(time.perf_counter() - t0, 1)
    result["cv"] = {"fp32": {k: v for k, v in cv.items() if "@" not in k},
                    "int8_queries": {k.partition("@")[0]: v for k, v in cv.items() if k.endswith("@int8")}}
    _check_against_active(result, active)
    if args.train_int8:
        labels = int8.encode(imagenet_label_texts())
        result["cosine"]["label"] = _text_cosines(data.label_vectors, labels)
        all_int8 = replace_text(served, label_vectors=labels,
                                extra_vectors=int8.encode(list(data.extra_texts)) if len(data.extra_texts)
                                else data.extra_vectors)
        t0 = time.perf_counter()
        result["cv"]["int8_all"] = _cv(all_int8, args.scorers, progress=True)
        result["cv_int8_all_s"] = round(time.perf_counter() - t0, 1)
    result["verdict"] = {variant: {k: _verdict(result["cv"]["fp32"][k], v) for k, v in cvs.items()}
                         for variant, cvs in result["cv"].items() if variant != "fp32"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_text_cv.json").write_text(json.dumps(result, indent=2))
    (args.out / "int8_text_cv.md").write_text(_text_report(result))
    print(json.dumps(result["verdict"], indent=2))


def _active_cv(model, scorer_names: list[str]) -> dict | None:
    """The active ranker's own CV (its `withsense train` run), to check (a) against."""
    if model is None:
        return None
    cv = json.loads((Path(model.artifact_path) / "metrics.json").read_text()).get("cv") or {}
    return {"ranker": Path(model.artifact_path).name,
            "cv": {k: v for k, v in cv.items() if k in ("joint_cosine", *scorer_names)}}


def _check_against_active(result: dict, active: dict | None) -> None:
    """Whether (a) reproduced the active ranker's training CV fold by fold (same data, folds, seeds)."""
    if active is None:
        return
    same = {k: v["R@1_per_fold"] == result["cv"]["fp32"][k]["R@1_per_fold"]
            for k, v in active["cv"].items() if k in result["cv"]["fp32"]}
    result["fp32_against_active"] = {"ranker": active["ranker"], "same_R@1_per_fold": same,
                                     "active_cv": active["cv"]}


def replace_text(data, **vectors):
    from dataclasses import replace

    return replace(data, **{k: np.asarray(v, np.float32) for k, v in vectors.items()})


VARIANT_TITLES = {"fp32": "(a) fp32 queries (as stored)", "int8_queries": "(b) int8 queries, the rest fp32 (served)",
                  "int8_all": "(c) every text int8, training too"}


def _text_report(result: dict) -> str:
    lat = result["latency"]
    lines = ["# MiniLM int8 query encoder against fp32 (scripts/compare_int8.py --text)", "",
             f"{result['photos']} training photos, {result['captions']} captions, {result['rated_pairs']} rated pairs, "
             f"{result['no_match_queries']} no-match queries (library {result['encoder_key']}); test photos unused.",
             f"int8 copy: `{result['int8_file']}`, {result['int8_file_mb']} MB (fp32 {result['fp32_file_mb']} MB); "
             "dynamic quantization, weights int8 per channel.", "",
             f"One query's encoding, 1 thread, {lat['queries']} training captions, fp32 and int8 taking turns "
             f"({lat['machine']}):", "",
             "| | p50 ms | p90 ms |", "|---|---|---|",
             f"| fp32 | {lat['fp32']['p50_ms']} | {lat['fp32']['p90_ms']} |",
             f"| int8 | {lat['int8']['p50_ms']} | {lat['int8']['p90_ms']} |", "",
             "| texts | cosine int8 to fp32 (stored), mean | min | 1st percentile |", "|---|---|---|---|"]
    lines += [f"| {k} ({v['n']}) | {v['mean']} | {v['min']} | {v['p01']} |" for k, v in result["cosine"].items()]
    lines += ["", "Grouped CV (5 folds by photo, as `withsense train`; the same fitted whitening and scorers for (a) "
              "and (b)):", "", "| queries | scorer | R@1 | R@5 | tau-c |", "|---|---|---|---|---|"]
    for variant, cvs in result["cv"].items():
        lines += [f"| {VARIANT_TITLES[variant]} | {k} | {v['R@1']:.4f} | {v['R@5']:.4f} | {v['tau_c']:.4f} |"
                  for k, v in cvs.items()]
    check = result.get("fp32_against_active")
    if check:
        same = ", ".join(f"{k} {'identical' if v else 'different'}" for k, v in check["same_R@1_per_fold"].items())
        lines += ["", f"(a) against the active ranker's own `withsense train` CV ({check['ranker']}): "
                  f"per-fold R@1 {same}."]
    lines += ["", "| against (a) | scorer | R@1+R@5 difference | tau-c difference | R@1 per-fold differences | "
              "mean (sd) | equal? |", "|---|---|---|---|---|---|---|"]
    for variant, verdicts in result["verdict"].items():
        lines += [f"| {VARIANT_TITLES[variant]} | {k} | {v['headline_diff']:+.4f} | {v['tau_c_diff']:+.4f} | "
                  f"{', '.join(f'{x:+.4f}' for x in v['r1_fold_diffs'])} | {v['r1_fold_diff_mean']:+.4f} "
                  f"({v['r1_fold_diff_std']:.4f}) | {'yes' if v['equal'] else 'no'} |" for k, v in verdicts.items()]
    lines += ["", f"Equal: |R@1+R@5 difference| <= {TIE_BAND} (the selection rule's tie band) and the mean per-fold "
              "R@1 difference within one standard deviation of the differences (reports/bench/int8_cv.md's rule).", ""]
    return "\n".join(lines)


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
                        help="image mode: take the fp32 CV from the active ranker's metrics (the demo's own `withsense train`)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench")
    parser.add_argument("--text", action="store_true",
                        help="MiniLM's int8 copy as the query encoder instead (reports/bench/int8_text_cv.*)")
    parser.add_argument("--train-int8", action="store_true", help="--text: also every text int8, training too")
    parser.add_argument("--latency-queries", type=int, default=400, help="--text: captions timed")
    parser.add_argument("--machine", default="2 cores shared with other jobs (nice -n 5)",
                        help="--text: how loaded the machine was, for the report")
    args = parser.parse_args()
    if args.text:
        return text_main(args)
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
        verdict[scorer] = _verdict(result["fp32"][scorer], result["int8"][scorer])
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
