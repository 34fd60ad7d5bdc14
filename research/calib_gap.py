"""Research (issue 16, point 5): where the CV-to-test gap of the right top-1 score comes from.

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.calib_gap [--reuse]

One grouped CV of the served family as ``withsense train`` runs it (listwise network only, 5 scene
captions per fold), keeping the five fold networks (``<WITHSENSE_DATA_DIR>/research/calib_gap.pkl``;
``--reuse`` reads it back). Then the active ranker's test queries over the test photos, scored on
the same features by the served network and by each fold network; prints the distributions of the
right top-1's raw score and query signals in CV and on test, the served calibration's median on
each, and the CV hits split by whether their caption is also a rated text of the fold's training.
docs/model.md, "A score for queries that nothing fits", has the figures.
"""
from __future__ import annotations

import argparse
import pickle

import numpy as np
from sqlalchemy import text

from ml import no_match
from ml.compare import ALL_SIGNALS, grouped_cv
from ml.listwise import FEATURES, query_signals
from ml.scorers import candidate_scorers
from ml.train import default_mapper
from research.data import load, whitened
from service.config import load_settings
from service.search.searcher import evidence_of
from service.store.db import make_engine, resolve_url
from service.store.model_rows import load_ranker


def q(x):
    x = np.asarray(x, float)
    return " ".join(f"{v:7.3f}" for v in np.percentile(x, [10, 25, 50, 75, 90])) + f"  (mean {x.mean():.3f}, n {len(x)})"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args(argv)
    settings = load_settings()
    cache = settings.data_dir / "research" / "calib_gap.pkl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if args.reuse and cache.exists():
        oof, nets = pickle.loads(cache.read_bytes())
    else:
        data = load(settings)
        data = whitened(data)
        models: dict = {}
        cv, pooled = grouped_cv(data, default_mapper(data), {"listwise_mlp": candidate_scorers()["listwise_mlp"]},
                                caption_negatives=no_match.N_SCENE_CAPTIONS,
                                caption_pool=no_match.scene_caption_pool(data.caption_photo, data.caption_texts),
                                models=models)
        print({k: v for k, v in cv["listwise_mlp"].items() if isinstance(v, float)})
        oof, nets = pooled["listwise_mlp"], models["listwise_mlp"]
        seen = set(data.pair_texts.tolist())
        oof["hit_seen"] = np.array([data.caption_texts[i] in seen for i in oof["hit_caption"]])
        oof["own_seen"] = np.array([data.caption_texts[i] in seen for i in oof["own_caption"]])
        cache.write_bytes(pickle.dumps((oof, nets)))
    engine = make_engine(resolve_url(settings))
    with engine.connect() as conn:
        model = conn.execute(text("SELECT id, artifact_path, metrics->'calibration'->'calibrator' AS c FROM models WHERE active")).one()
        photos = conn.execute(text(
            """SELECT pe.photo_id, p.split, pe.embedding AS photo_vector, pe.bridge AS photo_bridge, pe.label_ids,
                      pe.label_probs, pe.mapper_norm FROM photo_embeddings pe JOIN photos p ON p.id = pe.photo_id
               WHERE pe.model_id = :m ORDER BY pe.photo_id"""), {"m": model.id}).all()
        queries = conn.execute(text(
            """SELECT d.text, d.photo_id FROM descriptions d JOIN photos p ON p.id = d.photo_id
               WHERE d.source = 'test' AND p.split = 'test' ORDER BY d.id""")).all()
    ranker = load_ranker(model.artifact_path)
    print("served calibrator", ranker.calibrator.to_dict())
    from service import policy
    from service.runtime import encoders_for
    from service.store.library_precision import resolved_settings
    enc = encoders_for(resolved_settings(settings)).text
    queries = [r for r in queries if not policy.is_about_children(r.text)]
    test = [i for i, r in enumerate(photos) if r.split == "test"]
    ev = evidence_of([photos[i] for i in test])
    pid = np.array([photos[i].photo_id for i in test])
    Q = ranker.transform_query(enc.encode([r.text for r in queries]))
    rows = {"final": [], **{f"fold{k}": [] for k in range(len(nets))}}
    sig_all, right = [], []
    for qi, r in enumerate(queries):
        X = ranker._features(Q[qi], ev)
        sig = query_signals(X, FEATURES, ALL_SIGNALS)[0]
        S = ranker.scorer.predict(X)[0]
        top = int(np.argmax(S))
        ok = pid[top] == r.photo_id
        sig_all.append(sig)
        right.append(ok)
        rows["final"].append((S[top], S.mean(), S.std(), np.sort(S)[-2]))
        for k, net in enumerate(nets):
            Sk = net.predict(X)[0]
            rows[f"fold{k}"].append((Sk[top], Sk.mean(), Sk.std(), np.sort(Sk)[-2]))
    right = np.array(right)
    sig_all = np.array(sig_all)
    print(f"\ntest: {len(queries)} queries, right top-1 (final net) {right.sum()}")
    print("quantiles p10 p25 p50 p75 p90")
    print("CV OOF right top-1 raw       ", q(oof["hit_score"]))
    for name, v in rows.items():
        v = np.array(v)
        print(f"test right top-1 raw {name:7s}", q(v[right, 0]), " list mean", f"{np.median(v[right, 1]):.3f}",
              "sd", f"{np.median(v[right, 2]):.3f}")
    print("CV OOF specificity (hits)    ", q(oof["hit_signals"][:, 0]))
    print("test specificity (hits)      ", q(sig_all[right, 0]))
    print("CV OOF best_joint (hits)     ", q(oof["hit_signals"][:, 1]))
    print("test best_joint (hits)       ", q(sig_all[right, 1]))
    print("CV OOF own-caption spec (all)", q(oof["own_signals"][:, 0]))
    print("test spec (all queries)      ", q(sig_all[:, 0]))
    from ml.listwise import signals_from
    cal = ranker.calibrator
    p_cv = cal.predict(oof["hit_score"], signals_from(oof["hit_signals"], ALL_SIGNALS, cal.signals))
    print("served calibrator on CV hits: median", np.median(p_cv))
    if "hit_seen" in oof:
        hs = oof["hit_seen"]
        print(f"CV hits whose caption is a rated text (seen in the fold's training): {hs.sum()} of {len(hs)};"
              f" own captions {oof['own_seen'].sum()} of {len(oof['own_seen'])}")
        for name, m in (("seen", hs), ("unseen", ~hs)):
            print(f"  {name}: median prob {np.median(p_cv[m]):.3f} raw", q(oof["hit_score"][m]))
            print(f"  {name}: spec", q(oof["hit_signals"][m, 0]), " best_joint", q(oof["hit_signals"][m, 1]))
    fin = np.array(rows["final"])
    p_t = cal.predict(fin[right, 0], signals_from(sig_all[right], ALL_SIGNALS, cal.signals))
    print("served calibrator on test hits (final net): median", np.median(p_t))
    for k in range(len(nets)):
        fk = np.array(rows[f"fold{k}"])
        print(f"  ... with fold{k} net's raw score: median", np.median(cal.predict(fk[right, 0], signals_from(sig_all[right], ALL_SIGNALS, cal.signals))))
    np.savez(settings.data_dir / "research" / "calib_gap_test.npz", right=right, sig=sig_all,
             **{k: np.array(v) for k, v in rows.items()})


if __name__ == "__main__":
    main()
