"""Fast tests of ml/: estimator contract, mappers, targets, numpy MLP == Keras, metrics, leak check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from ml import metrics as M
from ml.data import LeakError, TrainingData, assert_no_test_leak, flickr_id
from ml.encoders import l2_normalize
from ml.joint import (
    KernelRidgeMapper,
    load_mapper,
)
from ml.ranker import Ranker
from ml.scorer import ClippedRegressor, KerasMLP, NumpyMLP, pair_features
from ml.targets import expert_mean, match_target, training_mask

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
    ClippedRegressor(),
    KerasMLP(hidden=(8, 4), epochs=1, random_state=1),
])
def test_estimator_contract(est):
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params
    assert not [k for k in vars(twin) if k.endswith("_")], "unfitted estimator has learned state"
    twin.set_params(**params)


def test_clipped_regressor_passes_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(ClippedRegressor(), expected_failed_checks={
        "check_regressors_train": "predictions are clipped to [0, 1]",
        "check_regressor_data_not_an_array": "predictions are clipped to [0, 1]",
    })


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


# ---------------------------------------------------------------- scorer
def test_numpy_mlp_equals_keras():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12)).astype(np.float32)
    y = 1 / (1 + np.exp(-X[:, 0] + X[:, 1]))
    est = KerasMLP(hidden=(16, 8), epochs=3, batch_size=32, random_state=0)
    assert est.fit(X, y) is est
    keras_pred = est.predict_keras(X)
    np_pred = NumpyMLP.from_keras(est.model_, est.mean_, est.scale_).predict(X)
    assert np.max(np.abs(keras_pred - np_pred)) < 1e-5
    assert np.allclose(est.predict(X), np_pred)
    assert ((np_pred >= 0) & (np_pred <= 1)).all()


def test_pair_features_and_ranker_roundtrip(tmp_path):
    data = _tiny_training_data()
    mapper = KernelRidgeMapper(alpha=1.0, gamma=1.0).fit(data.photo_features[data.caption_photo], data.caption_vectors)
    joint = mapper.transform(data.photo_features)
    q = data.caption_vectors[0]
    F = pair_features(q, joint[:5], joint[:5])
    assert F.shape == (5, 2)
    assert np.allclose(F[:, 0], joint[:5] @ q, atol=1e-6)
    Fp = pair_features(q, joint[:5], None, product=True)
    assert Fp.shape == (5, 1 + 16) and np.allclose(Fp[:, 1:], q * joint[:5])
    from sklearn.linear_model import LinearRegression

    scorer = ClippedRegressor(LinearRegression()).fit(np.random.default_rng(0).normal(size=(50, 2)), np.linspace(0, 1, 50))
    ranker = Ranker(mapper, scorer, data.label_vectors, dims=data.caption_vectors.shape[1])
    joint7, bridge7 = ranker.photo_side(data.photo_features[:7])
    assert np.allclose(joint7, joint[:7], atol=1e-6)
    assert np.allclose(bridge7, data.photo_bridges()[:7], atol=1e-6)
    s = ranker.score(q, joint7, bridge7)
    assert s.shape == (7,) and ((s >= 0) & (s <= 1)).all()
    ranker.save(tmp_path / "m")
    again = Ranker.load(tmp_path / "m")
    assert again.dims == ranker.dims and again.bridge_kind == "imagenet_labels"
    assert np.allclose(again.score(q, joint7, bridge7), s)


def test_train_end_to_end_small(tmp_path):
    from sklearn.linear_model import LinearRegression

    from ml.compare import grouped_cv, pick_best
    from ml.train import load_artifacts, save_artifacts, train

    data = _tiny_training_data()
    scorers = {"lr": ClippedRegressor(LinearRegression()), "mlp": KerasMLP(hidden=(8, 4), epochs=2)}
    cv = grouped_cv(data, KernelRidgeMapper(alpha=1.0, gamma=1.0), scorers, n_splits=2, gallery_size=10, progress=False)
    assert set(cv) == {"joint_cosine", "lr", "mlp"}
    assert {"RMSE", "MAE", "tau_c", "ROC_AUC", "R@1", "R@5", "R@10"} <= set(cv["lr"])
    assert pick_best(cv) in scorers
    result = train(data, mapper=KernelRidgeMapper(alpha=1.0, gamma=1.0), scorers=scorers, n_splits=2, progress=False)
    directory = save_artifacts(result, tmp_path / "art")
    assert {p.name for p in directory.iterdir()} >= {"mapper.npz", "ranker.json", "label_vectors.npy", "metrics.json"}
    ranker = load_artifacts(tmp_path / "art")
    joint, bridge = ranker.photo_side(data.photo_features)
    s = ranker.score(data.caption_vectors[0], joint, bridge)
    assert s.shape == (len(joint),) and ((s >= 0) & (s <= 1)).all()


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
    r = M.retrieval_metrics(scores, correct, ks=(1, 5))
    assert r["R@5"] == 1.0 and r["n_queries"] == 3
    assert M.rmse([0, 1], [1, 1]) == pytest.approx(np.sqrt(0.5))
    assert M.mae([0, 1, 0.5], [1, 1, 0]) == pytest.approx(0.5)
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
    from ml.joint import BridgeMixMapper, KernelRidgeMapper, load_mapper

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
