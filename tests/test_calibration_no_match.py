"""The score for queries that nothing fits (issue 16, point 5): the query-level calibration, its
artifact, the no-match training negatives and the evaluation set kept apart from them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ml import no_match
from ml.calibration import PlattCalibrator, QueryCalibrator, held_out_mixed
from ml.fitted import PlattMap, QueryPlattMap, load_calibration
from ml.listwise import FEATURES, query_signals
from service.training.evaluation import NO_MATCH_EXAMPLES, no_match_lines, no_match_queries


def _synthetic(seed=0, n_rated=3000, n_neg=600):
    """Rated pairs whose fit depends on the score; no-match tops with a high score but a low
    specificity, all misfits."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n_rated)
    spec = rng.uniform(0.6, 0.95, n_rated)
    fits = rng.uniform(size=n_rated) < 1 / (1 + np.exp(-(2 * s - 2)))
    neg_s = rng.normal(1.5, 0.5, n_neg)  # the least bad photo still scores high within its list
    neg_spec = rng.uniform(0.1, 0.5, n_neg)
    rated = {"score": s, "query": spec[:, None], "fits": fits, "group": rng.integers(0, 300, n_rated)}
    neg = {"score": neg_s, "query": neg_spec[:, None], "label": np.zeros(n_neg, bool), "group": np.arange(n_neg),
           "kind": np.array(["sentence", "random"] * (n_neg // 2), dtype=object), "top1": np.ones(n_neg, bool)}
    return rated, neg


def test_query_calibrator_keeps_the_order_within_a_query_and_sinks_no_match_queries():
    rated, neg = _synthetic()
    c = QueryCalibrator(("specificity",)).fit(np.concatenate([rated["score"], neg["score"]]),
                                              np.concatenate([rated["query"], neg["query"]]),
                                              np.concatenate([rated["fits"], neg["label"]]))
    assert c.a_ > 0 and c.w_[0] > 0
    scores = np.sort(np.random.default_rng(1).normal(size=50))
    for spec in (0.2, 0.8):  # one query's shortlist: strictly increasing in the score, no ties
        assert np.all(np.diff(c.predict(scores, np.array([spec]))) > 0)
    assert c.predict(np.array([1.5]), np.array([0.25]))[0] < 0.5 < c.predict(np.array([1.5]), np.array([0.85]))[0]
    # Plattt alone, fitted on the rated pairs, gives the same no-match tops a high score
    platt = PlattCalibrator().fit(rated["score"], rated["fits"])
    assert np.median(platt.predict(neg["score"])) > np.median(c.predict(neg["score"], neg["query"])) + 0.2
    # serialised as calibration.json, read back as Ranker.load does (numpy only)
    back = load_calibration(json.loads(json.dumps(c.to_dict())))
    assert isinstance(back, QueryPlattMap) and back.signals == ("specificity",)
    assert np.allclose(back.predict(scores, np.array([0.5])), c.predict(scores, np.array([0.5])))
    with pytest.raises(ValueError):
        c.predict(scores)  # without its signals it would silently give the wrong probability


def test_held_out_mixed_reports_both_eces_and_the_no_match_share():
    rated, neg = _synthetic()
    rep = held_out_mixed(rated, neg, signals=("specificity",))
    assert rep["ECE"] < 0.05 and rep["mixed"]["ECE"] < 0.05
    assert rep["mixed"]["n"] == len(rated["score"]) + len(neg["score"])
    assert set(rep["no_match_under"]) == {"sentence", "random"}
    assert all(v["share"] > 0.9 for v in rep["no_match_under"].values())


def test_query_signals_from_list_features():
    X = np.zeros((2, 3, len(FEATURES)), np.float32)
    X[..., FEATURES.index("specificity")] = np.array([0.3, 0.9])[:, None]
    X[..., FEATURES.index("cos_joint")] = [[0.1, 0.5, 0.2], [0.4, 0.3, 0.0]]
    q = query_signals(X, FEATURES, ("specificity", "best_joint"))
    assert np.allclose(q, [[0.3, 0.5], [0.9, 0.4]])
    assert query_signals(X, FEATURES, ()).shape == (2, 0)


def test_ranker_with_query_calibration_orders_as_the_raw_score_and_format_2_still_loads(tmp_path):
    from ml.joint import KernelRidgeMapper
    from ml.ranker import Ranker
    from ml.scorers import PointwiseRegressor
    from ml.train import train
    from tests.test_ml import _tiny_training_data

    data = _tiny_training_data()
    texts = no_match.training_texts()[:60]
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(texts), data.caption_vectors.shape[1])).astype(np.float32)
    data.nomatch_texts = np.array(texts, dtype=object)
    data.nomatch_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    result = train(data, mapper=KernelRidgeMapper(alpha=1.0, gamma=1.0), scorers={"lr": PointwiseRegressor()},
                   run_cv=False, list_size=10, progress=False)
    ranker = result.ranker
    ev = ranker.photo_evidence(data.photo_features)
    q = ranker.transform_query(data.caption_vectors[0])
    raw, s = ranker.raw_scores(q, ev), ranker.score(q, ev)
    assert np.array_equal(np.argsort(-raw, kind="stable"), np.argsort(-s, kind="stable"))
    directory = ranker.save(tmp_path / "art")
    assert json.loads((directory / "ranker.json").read_text())["format"] == 3
    assert np.allclose(Ranker.load(directory).score(q, ev), s, atol=1e-3)
    # an artifact of format 2 (plain Platt) still loads and scores
    (directory / "calibration.json").write_text(json.dumps({"kind": "platt", "a": 2.0, "b": -1.0}))
    meta = json.loads((directory / "ranker.json").read_text())
    (directory / "ranker.json").write_text(json.dumps({**meta, "format": 2}))
    old = Ranker.load(directory)
    assert isinstance(old.calibrator, PlattMap)
    assert np.allclose(old.score(q, ev), 1 / (1 + np.exp(-(2 * old.raw_scores(q, ev) - 1))))


def test_no_match_sets_are_apart_and_big_enough():
    evaluation = no_match_queries()
    assert len(evaluation) >= 50 and len(set(evaluation)) == len(evaluation)
    assert set(NO_MATCH_EXAMPLES) <= set(evaluation)
    training = no_match.training_texts()
    assert len(no_match.sentences()) >= 200
    assert not {t.lower() for t in evaluation} & {t.lower() for t in training}, "an evaluation query is trained on"
    assert no_match.random_strings(random_state=0) == no_match.random_strings(random_state=0)
    assert len(set(no_match.random_strings())) > 0.9 * no_match.N_RANDOM


def test_no_match_section_of_the_report():
    nm = {"n_queries": 3, "threshold": 0.5, "share_under": 2 / 3,
          "quantiles": {"p10": 0.1, "p25": 0.2, "p50": 0.3, "p75": 0.5, "p90": 0.7},
          "examples": {"xqzv blorft kpwmn": 0.2, "how to file my taxes": None},
          "highest": [("a", 0.7), ("b", 0.3)], "right_top1": {"n": 10, "median": 0.8},
          "mixed": {"ECE": 0.02, "n_rated": 100, "n_no_match": 3, "rated_ECE": 0.01}}
    text = "\n".join(no_match_lines({"no_match": nm}))
    assert "67%" in text and "0.800" in text and "| xqzv blorft kpwmn | 0.200 |" in text and "taxes" not in text
    assert no_match_lines({}) == []


def test_no_match_report_on_the_fixture(loaded, encoders):
    from service.search.searcher import Searcher
    from service.training.evaluation import no_match_report

    searcher = Searcher(loaded["engine"], loaded["settings"], encoders.text)
    bins = [{"lo": 0.0, "hi": 0.1, "mean_prob": 0.05, "observed": 0.04, "n": 90},
            {"lo": 0.9, "hi": 1.0, "mean_prob": 0.95, "observed": 0.9, "n": 10}]
    rep = no_match_report(searcher, {"ECE": 0.01, "bins": bins}, progress=False)
    assert rep["n_queries"] == len(no_match_queries()) and 0 <= rep["share_under"] <= 1
    assert set(rep["examples"]) == set(NO_MATCH_EXAMPLES) and len(rep["highest"]) == 10
    assert rep["mixed"]["n_rated"] == 100 and rep["mixed"]["n_no_match"] == rep["n_queries"]
    assert 0 <= rep["mixed"]["ECE"] <= 1
    assert rep["right_top1"]["n"] >= 1


def test_calibration_sets_add_one_own_caption_per_photo_as_a_fit():
    from ml.train import _calibration_sets
    from tests.test_ml import _tiny_training_data

    data = _tiny_training_data()
    rng = np.random.default_rng(0)
    n_pairs, n_neg, n_own = len(data.pair_photo), 8, 12
    oof = {"pair_index": np.arange(n_pairs), "score": rng.normal(size=n_pairs), "signals": rng.uniform(size=(n_pairs, 2)),
           "neg_score": rng.normal(size=n_neg), "neg_signals": rng.uniform(size=(n_neg, 2)),
           "neg_label": np.zeros(n_neg, bool), "neg_query": np.arange(n_neg), "neg_kind": np.full(n_neg, "random", object),
           "neg_top1": np.ones(n_neg, bool), "own_score": rng.normal(size=n_own), "own_signals": rng.uniform(size=(n_own, 2)),
           "own_photo": np.repeat([3, 5, 7], 4)}
    rated, extra = _calibration_sets(data, oof)
    own = extra["kind"] == "own_caption"
    assert own.sum() == 3 and extra["label"][own].all() and not extra["label"][~own].any()
    assert len(set(extra["group"][own]) & set(extra["group"][~own])) == 0
    assert rated["query"].shape[1] == extra["query"].shape[1] == 3  # specificity, its hinge, the best joint cosine
    _, plain = _calibration_sets(data, oof, own_captions=False)
    assert not (plain["kind"] == "own_caption").any()


def test_scene_caption_pool_keeps_photos_without_people_or_dogs():
    photo = np.array([0, 0, 1, 1, 2])
    texts = np.array(["A kitchen with a refrigerator .", "An oven and a stove .",
                      "A laptop on a desk .", "A man types on a laptop .",
                      "Two dogs run on the grass ."], dtype=object)
    # photo 1 is left out whole: one of its captions names a man
    assert no_match.scene_caption_pool(photo, texts).tolist() == [True, True, False, False, False]
    assert no_match.scene_caption_pool(np.zeros(0, np.int64), np.zeros(0, object)).tolist() == []


def test_the_mean_of_fold_networks_is_one_network_with_their_mean_output(tmp_path):
    """``train`` serves the listwise family as the mean of its fold networks (each standardised
    by its own fold's data), so the served scores are on the scale the calibration was fitted on."""
    from ml.listwise import NumpyListMLP

    rng = np.random.default_rng(0)

    def net(seed):
        r = np.random.default_rng(seed)
        return NumpyListMLP([r.normal(size=(4, 6)), r.normal(size=(6, 3)), r.normal(size=(3, 1))],
                            [r.normal(size=6), r.normal(size=3), r.normal(size=1)], r.normal(size=(4, 1)),
                            r.normal(size=4), r.uniform(0.5, 2, size=4), -3 - r.uniform(size=4), 3 + r.uniform(size=4))

    nets = [net(s) for s in range(3)]
    mean = NumpyListMLP.mean_of(nets)
    X = rng.uniform(-3, 3, size=(5, 7, 4))  # inside every member's range
    assert np.allclose(mean.predict(X), np.mean([n.predict(X) for n in nets], axis=0))
    assert NumpyListMLP.mean_of(nets[:1]) is nets[0]
    again = NumpyListMLP.from_arrays(dict(np.load(_saved(tmp_path, mean))))
    assert np.allclose(again.predict(X), mean.predict(X))


def _saved(tmp_path, net):
    path = tmp_path / "net.npz"
    np.savez(path, **net.to_arrays())
    return path


def test_the_served_network_adds_its_share_of_the_joint_cosine_in_the_same_arrays(tmp_path):
    """``ml.blend``'s order, ``score + w * cos_joint``, folded into the network's linear skip: the
    same file format, and a clipped input is clipped in the sum as everywhere else."""
    from ml.listwise import NumpyListMLP

    r = np.random.default_rng(1)
    width, col = len(FEATURES), FEATURES.index("cos_joint")
    net = NumpyListMLP([r.normal(size=(width, 5)), r.normal(size=(5, 1))], [r.normal(size=5), r.normal(size=1)],
                       r.normal(size=(width, 1)), r.normal(size=width), r.uniform(0.5, 2, size=width),
                       np.full(width, -1.0), np.full(width, 1.0))
    X = r.uniform(-1.5, 1.5, size=(3, 8, width))
    blended_net = net.plus_feature(col, 20.0)
    assert np.allclose(blended_net.predict(X), net.predict(X) + 20.0 * np.clip(X[..., col], -1, 1))
    assert np.allclose(net.plus_feature(col, 0.0).predict(X), net.predict(X))
    again = NumpyListMLP.from_arrays(dict(np.load(_saved(tmp_path, blended_net))))
    assert np.allclose(again.predict(X), blended_net.predict(X))


def test_a_blended_order_picks_its_own_right_top1_matches_and_recall():
    """``ml.blend.blended``: every score gains its cosine's share, and the caption queries ranked
    right are re-read from the galleries in the new order (a query the cosine brings to the top
    joins them, one it sinks leaves)."""
    from ml.blend import blended, list_recall

    # two caption queries over galleries of 3; the right photo is at position 0 in both
    oof = {"list_score": np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]]),
           "list_cos": np.array([[0.9, 0.1, 0.0], [0.1, 0.5, 0.0]]), "list_right": np.array([0, 0]),
           "own_score": np.array([1.0, 3.0]), "own_cos": np.array([0.9, 0.1]),
           "own_signals": np.array([[0.6, 0.9], [0.7, 0.5]]), "own_caption": np.array([10, 11]),
           "score": np.array([0.5]), "cos": np.array([0.2])}
    assert list_recall(oof)["R@1"] == 0.5
    out = blended(oof, 10.0)  # query 0: 10 vs 3 -> right; query 1: 4 vs 6 -> wrong
    assert out["hit_caption"].tolist() == [10] and out["hit_score"].tolist() == [10.0]
    assert out["hit_signals"].tolist() == [[0.6, 0.9]] and out["score"].tolist() == [2.5]
    assert list_recall(out) == {"R@1": 0.5, "R@5": 1.0, "R@10": 1.0}
    assert blended(oof, 0.0)["hit_caption"].tolist() == [11]


def test_folds_with_galleries_of_different_sizes_pool_into_one_padded_list():
    """A small library's folds have galleries of different sizes: pooled, a short gallery's missing
    candidates are never ranked, whatever share of the cosine the order adds."""
    from ml.blend import blended, list_recall
    from ml.compare import _pooled

    scores = _pooled([np.array([[1.0, 2.0, 0.5]]), np.array([[3.0, 1.0]])], "list_score")
    cos = _pooled([np.array([[0.1, 0.2, 0.3]]), np.array([[0.4, 0.5]])], "list_cos")
    assert scores.shape == cos.shape == (2, 3) and scores[1, 2] == -np.inf and cos[1, 2] == 0.0
    oof = {"list_score": scores, "list_cos": cos, "list_right": np.array([2, 1])}
    for w in (0.0, 20.0):
        o = blended(oof, w)
        assert not np.isnan(o["list_score"]).any()
    # query 1's right photo (position 1) is second of two: the padding does not rank it lower
    assert list_recall(blended(oof, 0.0), ks=(1, 2, 3)) == {"R@1": 0.0, "R@2": 0.5, "R@3": 1.0}
