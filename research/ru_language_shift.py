"""Can USE's gap between Russian and English be closed before the bridge? Checked on 100 Russian
captions of training photos written by hand for this (``service/training/russian_captions/ru_train_captions.tsv``: one
English caption per photo and its Russian version; training photos only, never the test set).

    WITHSENSE_DATA_DIR=var nice -n 5 .venv/bin/python -m research.ru_language_shift

The served ridge bridge is fitted on every caption except those 100 photos' ones (plus the label
phrases); each photo's "ideal" vector is the mean of its captions' whitened MiniLM vectors. Reports
R@1/R@5 among the 100 photos and the mean cosine to the true photo for: English through USE + bridge,
Russian through USE + bridge, the same with ё spelt е, Russian shifted by the language mean difference (2-fold over the
pairs), and Russian through a ridge map to English (``W`` penalised towards the identity, 2-fold).
"""
from __future__ import annotations

import numpy as np

from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.multilingual import QueryBridge
from ml.preprocess import l2_normalize
from research.data import load, russian_captions, whitened
from service.config import load_settings
from service.runtime import encoders_for
from service.store.library_precision import resolved_settings


def main() -> None:
    settings = resolved_settings(load_settings())  # the library's image precision
    data = load(settings)
    use = encoders_for(settings).multilingual
    cache = settings.data_dir / "cache"
    rows = russian_captions()
    u_cap = cached_text_vectors(data.caption_texts.tolist(), use, cache)
    u_lab = cached_text_vectors(imagenet_label_texts(), use, cache)
    dw = whitened(data)
    u_ru, u_en = use.encode([r["text_ru"] for r in rows]), use.encode([r["text_en"] for r in rows])
    key = {k: i for i, k in enumerate(data.photo_keys)}
    photos = np.array([key[r["caption_id"].split("#")[0]] for r in rows])
    held = np.isin(data.caption_photo, photos)
    bridge = QueryBridge().fit(np.concatenate([u_cap[~held], u_lab]),
                               np.concatenate([dw.caption_vectors[~held], dw.label_vectors]))
    ideal = l2_normalize(np.stack([dw.caption_vectors[data.caption_photo == p].mean(0) for p in photos]))

    def report(name, q):
        s = bridge.transform(q) @ ideal.T
        rank = (s > np.diag(s)[:, None]).sum(1) + 1
        print(f"{name}: R@1 {np.mean(rank <= 1):.2f} R@5 {np.mean(rank <= 5):.2f} cosine {np.mean(np.diag(s)):.3f}")

    report("English", u_en)
    report("Russian", u_ru)
    report("Russian, ё spelt е",
           use.encode([r["text_ru"].replace("ё", "е").replace("Ё", "Е") for r in rows]))
    half = np.arange(len(rows)) % 2 == 0
    shifted, mapped = np.zeros_like(u_ru), np.zeros_like(u_ru)
    for h in (half, ~half):
        shifted[h] = u_ru[h] + (u_en[~h] - u_ru[~h]).mean(0)
        a, b, eye = u_ru[~h], u_en[~h], np.eye(u_ru.shape[1])
        mapped[h] = u_ru[h] @ np.linalg.solve(a.T @ a + 3.0 * eye, a.T @ b + 3.0 * eye)
    report("Russian + language mean shift", shifted)
    report("Russian -> English ridge (penalty 3 towards the identity)", mapped)


if __name__ == "__main__":
    main()
