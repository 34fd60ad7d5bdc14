"""Fast tests of ml/: estimator contract, mappers, targets, numpy MLP == Keras, metrics, leak check."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from ml import metrics as M
from ml.calibration import PlattCalibrator, precision_recall_at, reliability
from ml.data import LeakError, TrainingData, assert_no_test_leak, flickr_id
from ml.encoders import l2_normalize
from ml.fitted import load_mapper, load_text_transform
from ml.joint import KernelRidgeMapper
from ml.listwise import FEATURES, NumpyListMLP, PhotoEvidence, list_features, specificity
from ml.scorers import KerasListwiseMLP, PointwiseRegressor
from ml.targets import expert_mean, match_target, training_mask
from ml.whitening import PartialWhitening

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


# ---------------------------------------------------------------- synthetic data
def _tiny_training_data(seed=0, n=40, d=1010, t=16):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, t)).astype(np.float32) / np.sqrt(d)
    cap_photo = np.repeat(np.arange(n), 3)
    cap_vec = l2_normalize(feats[cap_photo] @ W + 0.1 * rng.normal(size=(len(cap_photo), t)))
    r = 120
    pair_photo = rng.integers(0, n, r)
    pair_src = rng.integers(0, len(cap_photo), r)
    expert = rng.integers(1, 5, size=(r, 3)).astype(np.float32)
    expert[::3] = np.nan
    crowd = rng.choice([0.0, 1 / 3, 2 / 3, 1.0], size=r).astype(np.float32)
    crowd[1::4] = np.nan
    return TrainingData(
        photo_keys=np.array([f"{1000 + i}_x.jpg" for i in range(n)], dtype=object),
        photo_features=feats,
        caption_photo=cap_photo,
        caption_texts=np.array([f"caption {i}" for i in range(len(cap_photo))], dtype=object),
        caption_vectors=cap_vec,
        caption_blocked=np.zeros(len(cap_photo), bool),
        pair_photo=pair_photo,
        pair_texts=np.array([f"caption {i}" for i in pair_src], dtype=object),
        pair_vectors=cap_vec[pair_src],
        pair_expert=expert,
        pair_crowd=crowd,
        pair_blocked=np.arange(r) % 10 == 0,
        label_vectors=l2_normalize(rng.normal(size=(1000, t))),
    )


# ---------------------------------------------------------------- estimator contract
@pytest.mark.parametrize("est", [
    KernelRidgeMapper(alpha=0.5, gamma=2.0),
    PointwiseRegressor(),
    KerasListwiseMLP(hidden=(8, 4), epochs=1, random_state=1),
    PartialWhitening(power=0.2),
    PlattCalibrator(),
])
def test_estimator_contract(est):
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params
    assert not [k for k in vars(twin) if k.endswith("_")], "unfitted estimator has learned state"
    twin.set_params(**params)


def test_kernel_ridge_mapper_fits_nonlinear_map_and_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    Y = l2_normalize(np.stack([np.sin(2 * X[:, 0]), np.cos(2 * X[:, 1]), X[:, 2] ** 2 - 1, X[:, 3]], axis=1))
    from sklearn.linear_model import Ridge

    lin = Ridge(alpha=1e-3).fit(X[:250], Y[:250])
    ker = KernelRidgeMapper(alpha=0.01, gamma=2.0)
    assert ker.fit(X[:250], Y[:250]) is ker
    cos_lin = np.mean(np.sum(l2_normalize(lin.predict(X[250:])) * Y[250:], axis=1))
    cos_ker = np.mean(np.sum(ker.transform(X[250:]) * Y[250:], axis=1))
    assert cos_ker > cos_lin + 0.1 and cos_ker > 0.8
    # several captions per photo: same photo rows are merged, the fit still works
    rep = KernelRidgeMapper().fit(np.repeat(X, 2, axis=0), np.repeat(Y, 2, axis=0))
    assert rep.support_.shape[0] == len(X)
    ker.save(tmp_path / "k.npz")
    assert np.allclose(load_mapper(tmp_path / "k.npz").transform(X), ker.transform(X), atol=1e-6)


def test_targets_hand_made():
    nan = np.nan
    expert = np.array([[4, 4, 4], [1, 1, 1], [1, 2, 3], [nan, nan, nan], [2, 3, nan], [nan, nan, nan]])
    crowd = np.array([1.0, 0.0, 1 / 3, 2 / 3, nan, nan])
    assert np.allclose(expert_mean(expert)[[0, 1, 2, 4]], [4, 1, 2, 2.5])
    t = match_target(expert, crowd)
    assert t[0] == pytest.approx(1.0)
    assert t[1] == pytest.approx(0.0)
    assert t[2] == pytest.approx(0.75 * (1 / 3) + 0.25 * (1 / 3))  # both 1/3
    assert t[3] == pytest.approx(2 / 3)  # crowd only
    assert t[4] == pytest.approx(0.5)  # expert only: (2.5 - 1) / 3
    assert np.isnan(t[5])
    assert match_target(np.array([[3, 3, 3]]), np.array([0.0]))[0] == pytest.approx(0.75 * 2 / 3)
    mask = training_mask(t, np.array([False, True, False, False, False, False]))
    assert mask.tolist() == [True, False, True, True, True, False]


# ---------------------------------------------------------------- text space, reranker, calibration
def test_partial_whitening_flattens_the_spectrum_and_roundtrips():
    rng = np.random.default_rng(0)
    X = l2_normalize(rng.normal(size=(500, 8)) * np.array([10, 5, 1, 1, 1, 1, 1, 1]) + 3)
    raw_var = np.linalg.eigvalsh(np.cov((X - X.mean(0)).T))
    w = PartialWhitening(power=0.5).fit(X)
    Z = w.transform(X)
    assert np.allclose(np.linalg.norm(Z, axis=1), 1, atol=1e-5)
    white_var = np.linalg.eigvalsh(np.cov(Z.T))
    # full whitening: the spread of the spectrum shrinks by orders of magnitude
    assert white_var.max() / white_var[white_var > 1e-9].min() < 0.1 * raw_var.max() / raw_var.min()
    again = load_text_transform(w.to_arrays())  # as Ranker.load reads it, without scikit-learn
    assert np.allclose(again.transform(X), Z, atol=1e-6)
    # power 0 only centres and rotates: cosines are those of the centred raw vectors
    Z0, C = PartialWhitening(power=0.0).fit(X).transform(X), l2_normalize(X - X.mean(0))
    assert np.allclose(Z0 @ Z0.T, C @ C.T, atol=1e-5)


def _evidence(rng, n, t):
    return PhotoEvidence(l2_normalize(rng.normal(size=(n, t))), l2_normalize(rng.normal(size=(n, t))),
                         rng.integers(0, 1000, (n, 5)).astype(np.int32), rng.dirichlet(np.ones(5), n).astype(np.float32),
                         rng.uniform(0, 1, n).astype(np.float32))


def test_list_features_by_hand():
    rng = np.random.default_rng(1)
    ev, labels = _evidence(rng, 6, 16), l2_normalize(rng.normal(size=(1000, 16)))
    q = l2_normalize(rng.normal(size=(2, 16)))
    cand = np.array([[0, 1, 2], [3, 4, 5]])
    X = list_features(q, cand, ev, labels, np.array([0.3, 0.9]))
    assert X.shape == (2, 3, len(FEATURES))
    col = {name: X[..., i] for i, name in enumerate(FEATURES)}
    assert np.allclose(col["cos_joint"][1], ev.joint[3:6] @ q[1], atol=1e-6)
    assert np.allclose(col["cos_bridge"][0], ev.bridge[:3] @ q[0], atol=1e-6)
    by_hand = sum(ev.label_probs[4, k] * labels[ev.label_ids[4, k]] @ q[1] for k in range(5))
    assert col["label_evidence"][1, 1] == pytest.approx(by_hand, abs=1e-5)
    assert np.allclose(col["mapper_norm"], ev.mapper_norm[cand])
    assert col["joint_minus_best"].max(axis=1) == pytest.approx([0, 0])
    assert np.allclose(col["joint_z"].mean(axis=1), 0, atol=1e-5)
    assert np.allclose(col["specificity"], [[0.3] * 3, [0.9] * 3])
    # specificity skips the query's own photo's captions
    caps = l2_normalize(rng.normal(size=(4, 16)))
    assert specificity(caps[:1], caps)[0] == pytest.approx(1.0, abs=1e-6)
    assert specificity(caps[:1], caps, exclude=np.array([7]), caption_group=np.array([7, 1, 1, 1]))[0] < 0.999


@pytest.mark.slow  # trains a Keras network (and imports TensorFlow)
def test_listwise_network_in_numpy_equals_keras_and_learns_the_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10, 4)).astype(np.float32)
    y = np.argmax(X[..., 0] - 0.5 * X[..., 1] ** 2, axis=1)  # non-linear in the features
    est = KerasListwiseMLP(hidden=(16, 8), epochs=30, batch_size=32, learning_rate=5e-3, random_state=0)
    assert est.fit(X, y) is est
    keras_scores, numpy_scores = est.predict_keras(X), est.predict(X)
    assert numpy_scores.shape == (300, 10)
    assert np.max(np.abs(keras_scores - numpy_scores)) < 1e-4
    again = NumpyListMLP.from_arrays(est.numpy_.to_arrays())
    assert np.allclose(again.predict(X), numpy_scores)
    assert (numpy_scores.argmax(1) == y).mean() > 0.8  # far above chance (0.1)
    # beyond the training range a feature counts as its extreme: no extrapolation
    far = X[:1].copy()
    far[0, 0, 0] = X[..., 0].max() + 100.0
    edge = X[:1].copy()
    edge[0, 0, 0] = X[..., 0].max()
    assert np.allclose(est.predict(far), est.predict(edge)) and np.allclose(again.predict(far), est.predict(edge))
    linear = PointwiseRegressor().fit(X, y)
    assert (linear.predict(X).argmax(1) == y).mean() < (numpy_scores.argmax(1) == y).mean()


def test_target_distribution_keeps_caption_lists_one_hot_and_orders_grades():
    from ml.scorers import as_targets, target_distribution

    one_hot = as_targets(np.array([2]), (1, 4))
    assert one_hot.tolist() == [[0, 0, 1, 0]]
    assert target_distribution(one_hot).tolist() == [[0, 0, 1, 0]]
    p = target_distribution(np.array([[1.0, 2 / 3, 0.0, 1 / 3]]), temperature=0.25)[0]
    assert p.sum() == pytest.approx(1.0) and p[2] == 0.0 and p[0] > p[1] > p[3] > 0
    assert p[0] / p[1] == pytest.approx(np.expm1(4.0) / np.expm1(8 / 3), rel=1e-5)


def test_rated_lists_hold_each_texts_graded_photos_and_its_own_photo():
    from ml.compare import pair_sources, pair_targets, rated_lists, training_lists
    from ml.joint import BridgeMixMapper
    from ml.listwise import photo_evidence

    data = _tiny_training_data()
    mapper = BridgeMixMapper(KernelRidgeMapper(), label_vectors=data.label_vectors).fit(
        data.photo_features[data.caption_photo], data.caption_vectors)
    ev = photo_evidence(mapper, data.photo_features, data.label_vectors)
    rng = np.random.default_rng(0)
    lists = rated_lists(data, ev, list_size=10, rng=rng)
    t, source = pair_targets(data), pair_sources(data)
    texts = {tx for tx, tt in zip(data.pair_texts, t, strict=True) if not np.isnan(tt)}
    assert lists.rated.all() and 0 < len(lists) <= len(texts) and lists.X.shape == (len(lists), 10, len(FEATURES))
    # every list has something that fits, and as many non-zero targets as its text's graded photos
    assert (lists.target.max(axis=1) > 0).all()
    assert np.isnan(t[data.pair_blocked]).all()  # texts about children never train
    # the caption's own photo is in its text's list with target 1 (its own caption fits it)
    assert (source >= 0).all()
    both = training_lists(data, ev, list_size=10)
    assert both.rated.sum() == len(rated_lists(data, ev, list_size=10, rng=np.random.default_rng(0)))
    assert (both.target[~both.rated].sum(axis=1) == 1).all()


def test_kernel_ridge_sample_weight_pulls_a_photo_towards_its_weighted_text():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 5)), l2_normalize(rng.normal(size=(6, 3)))
    # photo 0 described twice: its caption (Y[0]) and a rated text that fits (Y[1]), at some weight
    rows, texts = np.vstack([X, X[:1]]), np.vstack([Y, Y[1:2]])
    plain = KernelRidgeMapper(alpha=0.5).fit(X, Y)
    assert np.allclose(KernelRidgeMapper(alpha=0.5).fit(X, Y, sample_weight=np.ones(6)).predict_raw(X),
                       plain.predict_raw(X))
    cos = [KernelRidgeMapper(alpha=0.5).fit(rows, texts, sample_weight=np.r_[np.ones(6), w]).transform(X[:1])[0] @ Y[1]
           for w in (0.25, 1.0, 4.0)]
    assert plain.transform(X[:1])[0] @ Y[1] < cos[0] < cos[1] < cos[2]


def test_tuned_svr_chooses_by_inner_cv_and_differs_from_linear_regression():
    from sklearn.svm import LinearSVR

    from ml.scorers import SVR_GRID, TunedPointwise

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10, 4)).astype(np.float32)
    y = np.argmax(X[..., 0] + 0.3 * X[..., 1], axis=1)
    svr = TunedPointwise(LinearSVR(loss="epsilon_insensitive", dual=True, max_iter=5000, random_state=0),
                         grid=SVR_GRID).fit(X, y)
    assert len(svr.inner_cv_) == 6 and svr.best_params_ in [{k: v for k, v in r.items() if k != "R@1+R@5"}
                                                             for r in svr.inner_cv_]
    assert (svr.predict(X).argmax(1) == y).mean() > 0.5
    linear = PointwiseRegressor().fit(X, y)
    assert not np.allclose(svr.predict(X), linear.predict(X))


def test_pointwise_output_is_on_one_scale_whatever_the_fit():
    """Fold models tuned apart must share a scale: the calibration pools their out-of-fold scores."""
    from sklearn.svm import LinearSVR

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10, 4)).astype(np.float32)
    y = np.argmax(X[..., 0] + 0.3 * X[..., 1], axis=1)
    outputs = []
    for C, epsilon in ((0.001, 0.1), (0.1, 0.3)):  # two settings whose raw outputs differ in scale
        m = PointwiseRegressor(LinearSVR(C=C, epsilon=epsilon, dual=True, max_iter=5000, random_state=0)).fit(X, y)
        out = m.predict(X)
        raw = m.model_.predict(X.reshape(-1, 4)).reshape(X.shape[:2])
        assert out.mean() == pytest.approx(0.0, abs=1e-6) and out.std() == pytest.approx(1.0, rel=1e-5)
        assert (np.argsort(out, axis=1) == np.argsort(raw, axis=1)).all()  # the order within a list is the fit's
        outputs.append((raw.std(), out))
    assert outputs[1][0] > 3 * outputs[0][0]  # raw scales apart ...
    assert np.corrcoef(outputs[0][1].ravel(), outputs[1][1].ravel())[0, 1] > 0.9  # ... standardised alike
    old = pickle.loads(pickle.dumps(m))  # pickled before the output was standardised: raw, as calibrated then
    del old.out_mean_, old.out_scale_
    np.testing.assert_allclose(old.predict(X), raw, atol=1e-6)


def test_platt_calibration_is_monotone_and_reliable():
    rng = np.random.default_rng(0)
    s = rng.normal(size=4000)
    fits = rng.uniform(size=4000) < 1 / (1 + np.exp(-(2 * s - 1)))
    c = PlattCalibrator().fit(s, fits)
    assert c.a_ == pytest.approx(2, abs=0.25) and c.b_ == pytest.approx(-1, abs=0.2)
    p = c.predict(np.sort(s))
    assert np.all(np.diff(p) > 0)  # strictly increasing: keeps the reranker's order, no ties
    rel = reliability(c.predict(s), fits)
    assert rel["ECE"] < 0.03 and sum(b["n"] for b in rel["bins"]) == 4000
    pr = precision_recall_at(np.array([0.9, 0.6, 0.4, 0.2]), np.array([True, False, True, False]))
    assert (pr["precision"], pr["recall"]) == (0.5, 0.5)


@pytest.mark.slow  # trains with a 2-fold comparison, a Keras network among the scorers
def test_ranker_roundtrip_and_alternatives(tmp_path):
    from ml.ranker import Ranker
    from ml.train import train

    data = _tiny_training_data()
    scorers = {"lr": PointwiseRegressor(), "mlp": KerasListwiseMLP(hidden=(8, 4), epochs=2)}
    result = train(data, mapper=KernelRidgeMapper(alpha=1.0, gamma=1.0), scorers=scorers, n_splits=2,
                   list_size=10, progress=False)
    assert set(result.metrics["cv"]) == {"joint_cosine", "lr", "mlp"}
    assert {"tau_c", "tau_c_served", "ROC_AUC", "R@1", "R@5", "R@10"} <= set(result.metrics["cv"]["lr"])
    assert all(-1 <= result.metrics["cv"][n]["tau_c_served"] <= 1 for n in scorers)
    assert result.scorer_name in scorers and "ECE" in result.metrics["calibration"]
    assert result.metrics["served_fold_mean"] == ["mlp"]  # the fold networks' mean, on the calibration's scale
    if result.scorer_name == "mlp":  # its share of the joint cosine, chosen by the rule over every weight tried
        from ml.blend import COS_WEIGHTS

        share = result.metrics["cos_weight"]
        assert [r["weight"] for r in share["sweep"]] == list(COS_WEIGHTS) and share["chosen"] in COS_WEIGHTS
        assert all(0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1 for r in share["sweep"])
    else:
        assert "cos_weight" not in result.metrics
    mlp = result.ranker.scorer if result.scorer_name == "mlp" else result.alternatives["mlp"][0]
    assert mlp.weights[0].shape[1] == 2 * 8  # two folds' first layers side by side
    # Saved as `withsense train` publishes it: the ranker, then the other families beside it.
    directory = result.ranker.save(tmp_path / "art")
    for name, (scorer, calibrator) in result.alternatives.items():
        Ranker.save_scorer(directory / "alternatives" / name, scorer, calibrator)
    assert {p.name for p in directory.iterdir()} >= {"mapper.npz", "ranker.json", "text_transform.npz"}
    ranker = Ranker.load(directory)
    ev = ranker.photo_evidence(data.photo_features)
    q = ranker.transform_query(data.caption_vectors[0])
    assert np.allclose(q, result.ranker.transform_query(data.caption_vectors[0]))
    s = ranker.score(q, ev)
    assert s.shape == (len(ev.joint),) and ((s >= 0) & (s <= 1)).all()
    # equal up to the float16 storage of the reference captions (query specificity)
    assert np.allclose(s, result.ranker.score(q, result.ranker.photo_evidence(data.photo_features)), atol=1e-3)
    # The share of the joint cosine folded into the served scorer travels in the manifest, so a route
    # with its own share (a bridged query's) can order by network + its share * cos_joint.
    folded = result.metrics.get("cos_weight", {}).get("chosen", 0.0)
    assert ranker.cos_weight == folded and Ranker.load(directory, scorer=next(iter(result.alternatives))).cos_weight == 0
    share = folded + 10.0  # whatever was chosen, another share
    cos = ranker._features(q, ev)[0, :, FEATURES.index("cos_joint")]
    own_order = ranker.raw_scores(q, ev) + (share - folded) * cos
    routed = ranker.score(q, ev, cos_share=share)
    assert np.all(np.diff(routed[np.argsort(own_order)]) >= -1e-12)  # ordered as network + share * cos
    assert np.abs(routed - s).max() > 1e-6  # every candidate but the best-cosine one moved
    best = np.argmax(cos)  # the shortlist's best joint cosine keeps the calibrated score it had
    assert routed[best] == pytest.approx(s[best]) and np.allclose(ranker.score(q, ev, cos_share=folded), s)
    other = next(n for n in scorers if n != result.scorer_name)
    alt = Ranker.load(directory, scorer=other)
    assert alt.score(q, ev).shape == s.shape and other in alt.name
    # Libraries published before the families moved to ml.scorers keep pickles naming ml.listwise.
    lr = "lr" if other == "lr" else None
    lr_file = (directory / "alternatives" / "lr" if lr else directory) / "scorer.pkl"
    expected = Ranker.load(directory, scorer=lr).score(q, ev)
    old_path = pickle.dumps(pickle.loads(lr_file.read_bytes()), protocol=0)  # protocol 0 names classes as text
    lr_file.write_bytes(old_path.replace(b"cml.scorers\nPointwiseRegressor", b"cml.listwise\nPointwiseRegressor"))
    assert b"ml.scorers" not in lr_file.read_bytes()
    again = Ranker.load(directory, scorer=lr)
    assert type(again.scorer).__name__ == "PointwiseRegressor"
    assert np.allclose(again.score(q, ev), expected)


# ---------------------------------------------------------------- metrics
def test_metrics_exact():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.5, 0.5, 0.1]])
    correct = np.array([0, 0, 1])
    ranks = M.ranks_of_correct(scores, correct)
    assert ranks.tolist() == [1, 3, 2]  # a tie ranks the correct item after its equal
    assert M.recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert M.recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert M.mrr(ranks) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert M.median_rank(ranks) == 2
    assert M.kendall_tau_c([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert M.kendall_tau_c([4, 3, 2, 1], [1, 2, 3, 4]) == pytest.approx(-1.0)
    assert M.roc_auc_relevant([0.1, 0.9, 0.8, 0.2], [1, 4, 3, 2.5]) == pytest.approx(1.0)
    assert M.roc_auc_relevant([0.9, 0.1, 0.8, 0.2], [1, 4, 3, 2.5]) == pytest.approx(0.25)  # 1 of 4 pairs in order


# ---------------------------------------------------------------- leaks
def test_leak_check_raises():
    test = ["1177994172_10d143cb8d.jpg", "2887171449_f54a2b9f39.jpg"]
    assert_no_test_leak(["1000268201_693b08cb0e.jpg"], test)
    with pytest.raises(LeakError):
        assert_no_test_leak(["1000268201_693b08cb0e.jpg", "2887171449_f54a2b9f39.jpg"], test)
    with pytest.raises(LeakError):  # renamed / re-encoded copy: same Flickr photo id
        assert_no_test_leak(["1177994172_other.jpg"], test)
    with pytest.raises(LeakError):  # a caption of a test photo (query id form)
        assert_no_test_leak(["1177994172_10d143cb8d.jpg#2"], test)
    with pytest.raises(LeakError):
        assert_no_test_leak(["a.jpg"], ["b.jpg"], train_sha256=["ab"], test_sha256=["ab"])
    assert flickr_id("1177994172_10d143cb8d.jpg") == "1177994172"
    # photos of other collections (MS-COCO) are Flickr photos too: checked by the id in their URL
    assert_no_test_leak(["coco_000000000139.jpg"], test, train_flickr_ids=["8024364858"])
    with pytest.raises(LeakError):
        assert_no_test_leak(["coco_000000000139.jpg"], test, train_flickr_ids=["2887171449"])


@pytest.mark.full_data
@pytest.mark.skipif(not (PHOTOS / "test_images").is_dir(), reason="dataset absent")
def test_dataset_has_no_test_leak():
    import csv

    test = sorted(p.name for p in (PHOTOS / "test_images").glob("*.jpg"))
    train = sorted(p.name for p in (PHOTOS / "train_images").glob("*.jpg"))
    extra_dir = PHOTOS.parent / "flickr8k_extra"
    extra = sorted(p.name for p in (extra_dir / "images").glob("*.jpg")) if extra_dir.is_dir() else []
    with open(PHOTOS / "train_dataset.csv", newline="") as f:
        queries = [r["query_id"] for r in csv.DictReader(f)]
    caption_images = []
    if (extra_dir / "captions.tsv").exists():
        with open(extra_dir / "captions.tsv", newline="") as f:
            caption_images = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    assert_no_test_leak(train + extra + queries + caption_images, test)


@pytest.mark.full_data
@pytest.mark.skipif(not (PHOTOS.parent / "captioned_extra" / "manifest.tsv").is_file(), reason="captioned_extra absent")
def test_coco_training_photos_have_no_test_leak():
    """The product's own reader (service.training.extra_folders) over captioned_extra: Flickr ids from
    the COCO URLs and original sha256, against the held-out test photos."""
    from ml.features import file_sha256
    from service.training.extra_folders import read_extra_folder

    coco = read_extra_folder(str(PHOTOS.parent / "captioned_extra"), "manifest.tsv")
    assert len(coco.photo_paths) == 376 and len(coco.flickr_ids) == 376 and len(coco.original_sha256) == 376
    assert all(i.isdigit() for i in coco.flickr_ids)
    test_paths = sorted((PHOTOS / "test_images").glob("*.jpg"))
    assert_no_test_leak([p.name for p in coco.photo_paths], [p.name for p in test_paths],
                        train_sha256=coco.original_sha256, test_sha256=[file_sha256(p) for p in test_paths],
                        train_flickr_ids=coco.flickr_ids)


@pytest.mark.full_data
@pytest.mark.skipif(not (PHOTOS / "test_images").is_dir(), reason="dataset absent")
def test_real_images_flip_features():
    from PIL import Image

    from ml.encoders import encode_images_tta, load_encoders
    from ml.features import label_bridge

    enc = load_encoders("minilm")
    paths = sorted((PHOTOS / "train_images").glob("*.jpg"))[:2]
    images = [Image.open(p) for p in paths]
    f = encode_images_tta(enc.image, images, flip=True)
    plain = enc.image.encode(images)
    assert f.shape == (2, 2280) and not np.allclose(f, plain)
    assert np.corrcoef(f[0], plain[0])[0, 1] > 0.9  # the mirror image is nearly the same photo
    labels = l2_normalize(np.random.default_rng(0).normal(size=(1000, 384)))
    b = label_bridge(f, labels)
    assert b.shape == (2, 384) and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)


def test_bridge_mix_falls_back_to_the_bridge_far_from_training_photos(tmp_path):
    from ml.features import photo_bridges
    from ml.fitted import load_mapper
    from ml.joint import BridgeMixMapper, KernelRidgeMapper

    data = _tiny_training_data()
    mapper = BridgeMixMapper(KernelRidgeMapper(alpha=1.0, gamma=1.0), beta=0.2,
                             label_vectors=data.label_vectors).fit(data.photo_features[data.caption_photo],
                                                                    data.caption_vectors)
    near = data.photo_features[:5]
    far = near * 50.0  # nothing like any training photo: the kernel fades to zero
    bridge_far = photo_bridges(far, data.label_vectors)
    assert np.allclose(mapper.transform(far), bridge_far, atol=1e-4)
    plain = mapper.mapper_.transform(near)
    mixed = mapper.transform(near)
    assert np.all(np.sum(plain * mixed, axis=1) > 0.9)  # near the training photos the ridge leads
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)
    mapper.save(tmp_path / "m.npz")
    again = load_mapper(tmp_path / "m.npz")
    assert np.allclose(again.transform(near), mixed, atol=1e-6)


# ---------------------------------------------------------------- image views
class _MeanColour:
    """A deterministic image encoder: mean RGB then 1000 zero 'logits' (the views' contract)."""

    name, dim = "mean-colour", 3 + 1000

    def encode(self, images):
        return np.stack([np.concatenate([np.asarray(im, np.float32).reshape(-1, 3).mean(0), np.zeros(1000)])
                         for im in images]).astype(np.float32)


def test_five_crop_view_sees_the_corners_and_keeps_pooled_features_only():
    from PIL import Image

    from ml.encoders import ConcatImageEncoder, image_part
    from ml.views import FiveCropView, PooledView, five_crops

    im = Image.new("RGB", (100, 50), (0, 0, 0))
    im.paste((255, 0, 0), (0, 0, 10, 10))  # a small red subject in the top-left corner
    crops = five_crops(im)
    assert [c.size for c in crops] == [(60, 30)] * 5
    assert crops[0].getpixel((0, 0)) == (255, 0, 0) and crops[3].getpixel((59, 29)) == (0, 0, 0)
    view = FiveCropView(_MeanColour())
    v = view.encode([im])
    assert v.shape == (1, 3) and view.dim == 3 and view.name == "mean-colour-crop5-pooled"
    # only the top-left crop holds red: mean over crops = (100 red pixels / 1800) / 5 * 255
    assert v[0, 0] == pytest.approx(255 * 100 / 1800 / 5, rel=1e-4)
    both = ConcatImageEncoder([_MeanColour(), view, PooledView(_MeanColour())])
    assert both.part_flips() == [True, False, False] and both.dim == 1003 + 3 + 3
    assert both.encode([im]).shape == (1, 1009)
    assert isinstance(image_part("efficientnet-lite0/crop5"), FiveCropView)
    big = image_part("efficientnet-lite0@320")
    assert isinstance(big, PooledView) and big.name == "efficientnet-lite0@320-pooled" and big.dim == 1280
    with pytest.raises(ValueError):
        image_part("efficientnet-lite0/zoom")


def test_pick_best_reads_the_served_scores_tau_c():
    from ml.compare import pick_best

    cv = {"joint_cosine": {"R@1": 0.60, "R@5": 0.95, "tau_c": 0.9, "tau_c_served": 0.9},
          # tied on R@1 + R@5 (within 0.005): the raw tau-c prefers svr, the score a search returns mlp
          "svr": {"R@1": 0.556, "R@5": 0.884, "tau_c": 0.547, "tau_c_served": 0.500},
          "mlp": {"R@1": 0.559, "R@5": 0.882, "tau_c": 0.535, "tau_c_served": 0.567},
          "lr": {"R@1": 0.494, "R@5": 0.857, "tau_c": 0.583, "tau_c_served": 0.600}}
    assert pick_best(cv) == "mlp"  # joint_cosine is the baseline, never chosen; lr is not tied
    cv["svr"]["R@5"] = 0.895  # no longer tied: R@1 + R@5 decides alone
    assert pick_best(cv) == "svr"


def test_served_tau_c_reads_the_held_out_probabilities_against_the_expert_mean():
    from ml.train import served_tau_c

    data = _tiny_training_data()
    pairs = np.arange(len(data.pair_photo))
    em = expert_mean(data.pair_expert[pairs])
    rated = em[~np.isnan(em)]
    assert len(rated) > 10 and len(rated) < len(pairs)  # pairs without experts are skipped, in order
    assert served_tau_c(data, pairs, rated / 4) == pytest.approx(M.kendall_tau_c(rated, rated))
    assert served_tau_c(data, pairs, -rated) < -0.5


def test_grouped_cv_evaluates_the_same_fitted_scorers_on_other_query_vectors():
    from dataclasses import replace

    from ml.compare import grouped_cv

    data = _tiny_training_data()
    mapper = KernelRidgeMapper(alpha=1.0, gamma=1.0)
    scorers = {"lr": PointwiseRegressor()}
    rng = np.random.default_rng(1)
    noisy = replace(data, caption_vectors=l2_normalize(data.caption_vectors + 0.3 * rng.normal(size=data.caption_vectors.shape)),
                    pair_vectors=l2_normalize(data.pair_vectors + 0.3 * rng.normal(size=data.pair_vectors.shape)))
    plain, _ = grouped_cv(data, mapper, scorers, n_splits=2, list_size=10, progress=False)
    cv, oof = grouped_cv(data, mapper, scorers, n_splits=2, list_size=10, progress=False,
                         query_variants={"same": data, "noisy": noisy})
    assert set(cv) == set(oof) == {f"{n}{v}" for n in ("joint_cosine", "lr") for v in ("", "@same", "@noisy")}
    for name in ("joint_cosine", "lr"):
        # The base entries are those of a run without variants, and the same queries give the same figures.
        assert cv[name] == plain[name] == cv[f"{name}@same"]
        assert cv[f"{name}@noisy"]["R@1_per_fold"] != cv[name]["R@1_per_fold"]
