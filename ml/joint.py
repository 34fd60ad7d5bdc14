"""The joint space: photos mapped into the text encoder's space, where SQL compares them by cosine.

A mapper is an estimator (scikit-learn contract): ``fit(image_features, text_vectors)`` learns from
(photo, caption) pairs, ``transform(image_features)`` gives unit vectors in the text space. Serving
needs numpy only: a fitted mapper saves to and loads from a ``.npz`` file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from ml.encoders import l2_normalize


class RidgeMapper(BaseEstimator):
    """Linear map from standardised image features to the text space, fitted by ridge regression."""

    kind = "ridge"

    def __init__(self, alpha: float = 10.0):
        self.alpha = alpha

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray) -> "RidgeMapper":
        X = np.asarray(image_features, dtype=np.float64)
        Y = np.asarray(text_vectors, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-6
        Z = (X - self.mean_) / self.scale_
        # Solve in the dual when there are fewer rows than features: same answer, smaller system.
        if Z.shape[0] < Z.shape[1]:
            K = Z @ Z.T
            A = np.linalg.solve(K + self.alpha * np.eye(K.shape[0]), Y)
            self.coef_ = Z.T @ A
        else:
            self.coef_ = np.linalg.solve(Z.T @ Z + self.alpha * np.eye(Z.shape[1]), Z.T @ Y)
        self.coef_ = self.coef_.astype(np.float32)
        self.mean_ = self.mean_.astype(np.float32)
        self.scale_ = self.scale_.astype(np.float32)
        return self

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        Z = (np.asarray(image_features, dtype=np.float32) - self.mean_) / self.scale_
        return l2_normalize(Z @ self.coef_)

    def save(self, path: str | Path) -> None:
        np.savez(path, kind=self.kind, alpha=self.alpha, mean=self.mean_, scale=self.scale_, coef=self.coef_)

    @classmethod
    def load(cls, path: str | Path) -> "RidgeMapper":
        data = np.load(path)
        mapper = cls(alpha=float(data["alpha"]))
        mapper.mean_, mapper.scale_, mapper.coef_ = data["mean"], data["scale"], data["coef"]
        return mapper


def _standardise_fit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per feature. The scale is floored at a tenth of the median feature's: a
    feature (nearly) constant over the training photos would otherwise blow a new photo's small
    difference in it up into a huge distance (on the full training set the floor touches 1 of
    4,560 features)."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    floor = max(0.1 * float(np.median(std)), 1e-6)
    return X.mean(axis=0).astype(np.float32), np.maximum(std, floor).astype(np.float32)


class ContrastiveMapper(BaseEstimator):
    """A two-tower head trained with symmetric InfoNCE (torch in ``fit``, numpy at inference).

    Image side: standardised features -> ``relu(z W1 + b1) W2 + b2 + z Ws`` (an MLP with a linear
    skip), unit-normalised. Text side: the text encoder's own unit vectors (identity), so stored
    MiniLM query vectors are compared with photo vectors directly by cosine in SQL.

    ``fit(X, Y, groups=None)``: rows are (photo features, caption vector) pairs; ``groups`` (photo
    id per row) stops captions of the same photo from acting as each other's negatives. When it is
    missing, identical feature rows are taken to be the same photo.
    """

    kind = "contrastive"

    def __init__(
        self,
        hidden: int = 1024,
        dropout: float = 0.3,
        input_dropout: float = 0.1,
        epochs: int = 40,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        temperature: float = 0.05,
        skip: bool = True,
        random_state: int | None = 0,
        n_threads: int = 1,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.skip = skip
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray, groups: np.ndarray | None = None):
        import torch

        X = np.asarray(image_features, dtype=np.float32)
        Y = np.asarray(text_vectors, dtype=np.float32)
        if groups is None:
            _, groups = np.unique(X, axis=0, return_inverse=True)
        groups = np.asarray(groups).ravel()
        self.mean_, self.scale_ = _standardise_fit(X)
        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.n_threads)
        try:
            seed = 0 if self.random_state is None else int(self.random_state)
            gen = torch.Generator().manual_seed(seed)
            rng = np.random.default_rng(seed)
            torch.manual_seed(seed)
            d_in, d_out = X.shape[1], Y.shape[1]
            l1 = torch.nn.Linear(d_in, self.hidden)
            l2 = torch.nn.Linear(self.hidden, d_out)
            ls = torch.nn.Linear(d_in, d_out, bias=False)
            for layer in (l1, l2, ls):
                torch.nn.init.normal_(layer.weight, std=(1.0 / layer.in_features) ** 0.5, generator=gen)
                if layer.bias is not None:
                    torch.nn.init.zeros_(layer.bias)
            params = list(l1.parameters()) + list(l2.parameters()) + (list(ls.parameters()) if self.skip else [])
            log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1.0 / self.temperature))))
            opt = torch.optim.AdamW(params + [log_scale], lr=self.lr, weight_decay=self.weight_decay)
            Z = torch.from_numpy((X - self.mean_) / self.scale_)
            T = torch.from_numpy(Y)
            G = torch.from_numpy(groups.astype(np.int64))
            n = len(X)
            steps = self.epochs * max(1, int(np.ceil(n / self.batch_size)))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps, pct_start=0.1)
            drop_in = torch.nn.Dropout(self.input_dropout)
            drop = torch.nn.Dropout(self.dropout)
            self.loss_curve_ = []
            for _ in range(self.epochs):
                order = torch.from_numpy(rng.permutation(n))
                total = 0.0
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    if len(idx) < 2:
                        continue
                    z = drop_in(Z[idx])
                    out = l2(drop(torch.relu(l1(z))))
                    if self.skip:
                        out = out + ls(z)
                    out = torch.nn.functional.normalize(out, dim=1)
                    logits = log_scale.clamp(max=np.log(100.0)).exp() * out @ T[idx].T
                    g = G[idx]
                    same = (g[:, None] == g[None, :]) & ~torch.eye(len(idx), dtype=torch.bool)
                    logits = logits.masked_fill(same, -1e4)
                    target = torch.arange(len(idx))
                    loss = (torch.nn.functional.cross_entropy(logits, target)
                            + torch.nn.functional.cross_entropy(logits.T, target)) / 2
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx)
                self.loss_curve_.append(total / n)
        finally:
            torch.set_num_threads(old_threads)
        self.W1_ = l1.weight.detach().numpy().T.copy()
        self.b1_ = l1.bias.detach().numpy().copy()
        self.W2_ = l2.weight.detach().numpy().T.copy()
        self.b2_ = l2.bias.detach().numpy().copy()
        self.Ws_ = ls.weight.detach().numpy().T.copy() if self.skip else np.zeros((X.shape[1], Y.shape[1]), np.float32)
        self.logit_scale_ = float(log_scale.detach().exp())
        return self

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        z = (np.asarray(image_features, dtype=np.float32) - self.mean_) / self.scale_
        out = np.maximum(z @ self.W1_ + self.b1_, 0.0) @ self.W2_ + self.b2_ + z @ self.Ws_
        return l2_normalize(out)

    _ARRAYS = ("mean_", "scale_", "W1_", "b1_", "W2_", "b2_", "Ws_")

    def save(self, path: str | Path) -> None:
        np.savez(path, kind=self.kind, params=np.array(repr(self.get_params())), logit_scale=self.logit_scale_,
                 **{a.rstrip("_"): getattr(self, a) for a in self._ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> "ContrastiveMapper":
        import ast

        data = np.load(path)
        mapper = cls(**ast.literal_eval(str(data["params"])))
        for a in cls._ARRAYS:
            setattr(mapper, a, data[a.rstrip("_")])
        mapper.logit_scale_ = float(data["logit_scale"])
        return mapper


class EnsembleMapper(BaseEstimator):
    """The renormalised mean of several mappers' unit vectors (e.g. seeds or kinds)."""

    kind = "ensemble"

    def __init__(self, mappers: list | None = None):
        self.mappers = mappers

    def fit(self, image_features, text_vectors, groups=None):
        from sklearn.base import clone

        self.mappers_ = []
        for m in self.mappers or []:
            m = clone(m)
            if isinstance(m, ContrastiveMapper):
                m.fit(image_features, text_vectors, groups)
            else:
                m.fit(image_features, text_vectors)
            self.mappers_.append(m)
        return self

    def transform(self, image_features):
        return l2_normalize(sum(m.transform(image_features) for m in self.mappers_))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        stem = path.with_suffix("")
        names = []
        for i, m in enumerate(self.mappers_):
            p = Path(f"{stem}.{i}.npz")
            m.save(p)
            names.append(p.name)
        np.savez(path, kind=self.kind, members=np.array(names))

    @classmethod
    def load(cls, path: str | Path) -> "EnsembleMapper":
        path = Path(path)
        data = np.load(path)
        ens = cls()
        ens.mappers_ = [load_mapper(path.parent / str(n)) for n in data["members"]]
        return ens


class KernelRidgeMapper(BaseEstimator):
    """Kernel ridge regression (RBF kernel) from image features to the text space.

    Features are standardised and divided by sqrt(d), so squared distances are about 2 on average
    and ``gamma`` is scale-free. Captions of the same photo are merged first: the target of a photo
    is the mean of its caption vectors, and the ridge penalty of a photo is ``alpha / n_captions``
    (the same solution as one row per caption). Inference is numpy: RBF against the stored
    training photos (``support_``) times ``dual_coef_``, unit-normalised.
    """

    kind = "kernel_ridge"

    def __init__(self, alpha: float = 1.0, gamma: float = 0.5):
        self.alpha = alpha
        self.gamma = gamma

    def _z(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean_) / self.scale_) / np.float32(np.sqrt(len(self.mean_)))

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-self.gamma * np.maximum(d, 0.0))

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray) -> "KernelRidgeMapper":
        X = np.asarray(image_features, np.float32)
        Y = np.asarray(text_vectors, np.float64)
        self.mean_, self.scale_ = _standardise_fit(X)
        Z = self._z(X)
        support, inv = np.unique(Z, axis=0, return_inverse=True)
        inv = inv.ravel()
        counts = np.bincount(inv).astype(np.float64)
        T = np.zeros((len(support), Y.shape[1]))
        np.add.at(T, inv, Y)
        T /= counts[:, None]
        K = self._kernel(support.astype(np.float64), support.astype(np.float64))
        self.dual_coef_ = np.linalg.solve(K + np.diag(self.alpha / counts), T).astype(np.float32)
        self.support_ = support.astype(np.float32)
        return self

    def predict_raw(self, image_features: np.ndarray) -> np.ndarray:
        """The regression output before unit normalisation. Its length shrinks as a photo gets
        farther from every training photo (the kernel fades), which ``BridgeMixMapper`` uses."""
        Z = self._z(image_features)
        return self._kernel(Z, self.support_) @ self.dual_coef_

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        Z = self._z(image_features)
        # Each row's kernel is scaled by exp(gamma * its smallest distance): the unit-normalised result
        # is the same, but a photo far from every training photo no longer underflows to a zero vector.
        A, B = Z, self.support_
        d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        d = np.maximum(d, 0.0)
        K = np.exp(-self.gamma * (d - d.min(axis=1, keepdims=True)))
        return l2_normalize(K @ self.dual_coef_)

    def save(self, path: str | Path) -> None:
        np.savez(path, kind=self.kind, alpha=self.alpha, gamma=self.gamma, mean=self.mean_, scale=self.scale_,
                 support=self.support_, dual_coef=self.dual_coef_)

    @classmethod
    def load(cls, path: str | Path) -> "KernelRidgeMapper":
        data = np.load(path)
        m = cls(alpha=float(data["alpha"]), gamma=float(data["gamma"]))
        m.mean_, m.scale_, m.support_, m.dual_coef_ = data["mean"], data["scale"], data["support"], data["dual_coef"]
        return m


class BridgeMixMapper(BaseEstimator):
    """A kernel ridge mapper whose output leans on the label bridge where it knows little.

    ``transform = unit(kernel_ridge_raw + beta * bridge)``. Near the training photos the kernel
    ridge output is long (|raw| ~ 0.7) and dominates; for a photo unlike any training photo (a cup
    of coffee among Flickr8k's people and dogs) it fades toward zero and the untrained bridge view
    (ImageNet classes turned into text) takes over, instead of the photo being mapped onto its
    nearest, unrelated training photos. ``beta`` was chosen by grouped CV on training photos
    (docs/model.md): 0.2 gave R@1 0.504 / R@5 0.851 against 0.500 / 0.838 for the plain mapper.
    """

    kind = "bridge_mix"

    def __init__(self, mapper=None, beta: float = 0.2, label_vectors: np.ndarray | None = None,
                 bridge_kind: str = "imagenet_labels"):
        self.mapper = mapper
        self.beta = beta
        self.label_vectors = label_vectors
        self.bridge_kind = bridge_kind

    def fit(self, image_features: np.ndarray, text_vectors: np.ndarray) -> "BridgeMixMapper":
        from sklearn.base import clone

        self.mapper_ = clone(self.mapper if self.mapper is not None else KernelRidgeMapper()).fit(image_features, text_vectors)
        self.label_vectors_ = np.asarray(self.label_vectors, np.float32)
        return self

    def transform(self, image_features: np.ndarray) -> np.ndarray:
        from ml.features import photo_bridges

        bridge = photo_bridges(image_features, self.label_vectors_, self.bridge_kind)
        return l2_normalize(self.mapper_.predict_raw(image_features) + self.beta * bridge)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        inner = path.with_suffix(".inner.npz")
        self.mapper_.save(inner)
        np.savez(path, kind=self.kind, beta=self.beta, bridge_kind=self.bridge_kind,
                 label_vectors=self.label_vectors_, inner=inner.name)

    @classmethod
    def load(cls, path: str | Path) -> "BridgeMixMapper":
        path = Path(path)
        data = np.load(path)
        m = cls(beta=float(data["beta"]), bridge_kind=str(data["bridge_kind"]))
        m.mapper_ = load_mapper(path.parent / str(data["inner"]))
        m.label_vectors_ = data["label_vectors"]
        return m


def load_mapper(path: str | Path):
    """Any saved mapper, by the ``kind`` stored in its file."""
    kind = str(np.load(path)["kind"])
    kinds = {"ridge": RidgeMapper, "contrastive": ContrastiveMapper, "ensemble": EnsembleMapper,
             "kernel_ridge": KernelRidgeMapper, "bridge_mix": BridgeMixMapper}
    return kinds[kind].load(path)
