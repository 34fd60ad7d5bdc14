"""Grouped CV of nonlinear query bridges (docs/model.md, "Queries in other languages"), beside the
served ridge: the same folds, galleries and scorer as ``research.cv_multilingual`` (English captions
of held-out photos encoded by USE are the queries, the route a Russian query takes).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.cv_bridge [--variants ...]

Variants (each fitted on the training fold's captions plus the ImageNet label phrases):

* ``ridge``: the served bridge (alpha 1);
* ``mlp<h>``: ridge plus a one-hidden-layer residual (``MlpBridge`` below), cosine loss;
* ``mlp<h>_nce``: the same with a contrastive loss (each bridged caption against the batch's targets);
* ``knn<k>``: ridge blended with the mean target of the k nearest training captions in USE's space;
* ``centroid``: ridge onto the mean target of the caption's photo (less caption noise in the target).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.multilingual import USE_NETWORK, QueryBridge
from ml.preprocess import l2_normalize
from research.cv_multilingual import cv_retrieval
from research.data import load, whitened
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=["ridge", "mlp512", "mlp512_nce", "knn10", "centroid"])
    args = parser.parse_args()
    settings = resolved_settings(load_settings())  # the library's image precision
    data = load(settings)
    use = encoders_for(settings).multilingual
    cache = settings.data_dir / "cache"
    u_caption = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_label = cached_text_vectors(imagenet_label_texts(), use, cache)
    dw = whitened(data)

    def fit_set(train_mask, target="caption"):
        rows = train_mask[data.caption_photo]
        y = dw.caption_vectors
        if target == "centroid":
            sums = np.zeros((len(data.photo_keys), y.shape[1]))
            np.add.at(sums, data.caption_photo, y)
            y = l2_normalize(sums[data.caption_photo])
        return np.concatenate([u_caption[rows], u_label]), np.concatenate([y[rows], dw.label_vectors])

    def variant(name):
        def queries_for(train_mask):
            x, y = fit_set(train_mask, "centroid" if name == "centroid" else "caption")
            if name.startswith("mlp"):
                hidden = int(name[3:].split("_")[0])
                loss = "nce" if name.endswith("_nce") else "cosine"
                return MlpBridge(hidden=hidden, loss=loss).fit(x, y).transform(u_caption)
            ridge = QueryBridge(alpha=1.0).fit(x, y)
            out = ridge.transform(u_caption)
            if name.startswith("knn"):
                k = int(name[3:])
                sims = u_caption @ x.T
                # a caption must not find itself among the training texts
                own = train_mask[data.caption_photo]
                idx_train = np.flatnonzero(own)
                sims[idx_train, np.arange(len(idx_train))] = -np.inf
                top = np.argpartition(-sims, k, axis=1)[:, :k]
                knn = l2_normalize(y[top].mean(axis=1))
                out = l2_normalize(out + knn)
            return out
        return queries_for

    out_path = settings.data_dir / "research" / "cv_bridge.jsonl"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        t0 = time.time()
        result = {"variant": name, "folds": args.folds, **cv_retrieval(dw, variant(name), args.folds),
                  "seconds": round(time.time() - t0, 1)}
        print(json.dumps(result), flush=True)
        with open(out_path, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()


# Research only (not served: its CV did not finish, docs/model.md): kept here with the study.
class MlpBridge(QueryBridge):
    """The ridge bridge plus a learned nonlinear residual: ``unit(ridge(x) + W2 relu(W1 x + b1) + b2)``.
    The residual is fitted after the ridge (torch, at training time only; serving is numpy), with a
    cosine loss to the targets, or ``loss="nce"``: each bridged text against the batch's targets, so
    the bridge is fitted for what search does with it (rank the right target first)."""

    KIND = "mlp"

    def __init__(self, source: str = USE_NETWORK, alpha: float = 1.0, hidden: int = 512, loss: str = "cosine",
                 epochs: int = 40, weight_decay: float = 1e-4, temperature: float = 0.05, random_state: int = 0):
        super().__init__(source, alpha)
        self.hidden, self.loss, self.epochs = hidden, loss, epochs
        self.weight_decay, self.temperature, self.random_state = weight_decay, temperature, random_state

    def fit(self, source_vectors: np.ndarray, target_vectors: np.ndarray, sample_weight=None) -> MlpBridge:
        import torch

        super().fit(source_vectors, target_vectors, sample_weight=sample_weight)
        weight = torch.as_tensor(np.ones(len(source_vectors)) if sample_weight is None else sample_weight,
                                 dtype=torch.float32)
        torch.manual_seed(self.random_state)
        x = torch.as_tensor(np.asarray(source_vectors, np.float32))
        y = torch.nn.functional.normalize(torch.as_tensor(np.asarray(target_vectors, np.float32)), dim=-1)
        base = x @ torch.as_tensor(self.coef_) + torch.as_tensor(self.intercept_)
        layer1, layer2 = torch.nn.Linear(x.shape[1], self.hidden), torch.nn.Linear(self.hidden, y.shape[1])
        torch.nn.init.zeros_(layer2.weight)
        torch.nn.init.zeros_(layer2.bias)
        params = [*layer1.parameters(), *layer2.parameters()]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=self.weight_decay)
        generator = torch.Generator().manual_seed(self.random_state)
        for _ in range(self.epochs):
            for idx in torch.randperm(len(x), generator=generator).split(256):
                out = torch.nn.functional.normalize(base[idx] + layer2(torch.relu(layer1(x[idx]))), dim=-1)
                if self.loss == "nce":
                    logits = out @ y[idx].T / self.temperature
                    per_text = torch.nn.functional.cross_entropy(logits, torch.arange(len(idx)), reduction="none")
                else:
                    per_text = 1.0 - (out * y[idx]).sum(-1)
                loss = (weight[idx] * per_text).sum() / weight[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.w1_, self.b1_ = layer1.weight.detach().numpy().T.copy(), layer1.bias.detach().numpy().copy()
        self.w2_, self.b2_ = layer2.weight.detach().numpy().T.copy(), layer2.bias.detach().numpy().copy()
        return self

    def transform(self, source_vectors: np.ndarray) -> np.ndarray:
        from ml.preprocess import l2_normalize

        x = np.asarray(source_vectors, np.float32)
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ self.coef_ + self.intercept_ + np.maximum(x2 @ self.w1_ + self.b1_, 0.0) @ self.w2_ + self.b2_
        y = l2_normalize(y)
        return y[0] if x.ndim == 1 else y

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), "hidden": np.array(self.hidden), "loss": np.array(self.loss),
                "w1": self.w1_, "b1": self.b1_, "w2": self.w2_, "b2": self.b2_}

    @classmethod
    def from_arrays(cls, a) -> MlpBridge:
        bridge = super().from_arrays(a)
        bridge.hidden, bridge.loss = int(a["hidden"]), str(a["loss"])
        bridge.w1_, bridge.b1_ = np.asarray(a["w1"], np.float32), np.asarray(a["b1"], np.float32)
        bridge.w2_, bridge.b2_ = np.asarray(a["w2"], np.float32), np.asarray(a["b2"], np.float32)
        return bridge
