"""Research only: grouped CV of the joint cosine for whitening powers p, with the PCA fitted on the
training texts alone or also on the ~33k text-only Flickr8k captions (photos absent here), on
the training data of a built database (the product's own `training_data`, cached features).

    WITHSENSE_DATA_DIR=/path/to/var python scripts/experiments/cv_whitening.py --powers 0.1,0.2,0.3
    ... --extra-captions ../shared/data/flickr8k_extra/captions.tsv

Results on the full build of 2026-11-28 are in docs/model.md ("Tried and not kept").
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ml.compare import grouped_cv  # noqa: E402
from ml.data import cached_text_vectors  # noqa: E402
from ml.train import default_mapper  # noqa: E402
from ml.whitening import IdentityText, PartialWhitening  # noqa: E402
from service.config import load_settings  # noqa: E402
from service.runtime import encoders_for  # noqa: E402
from service.store.db import make_engine, resolve_url  # noqa: E402
from service.training.publish import training_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--powers", default="0.2", help="comma list; 0 = no whitening")
    ap.add_argument("--extra-captions", type=Path, help="captions.tsv whose texts join the PCA fit")
    args = ap.parse_args()
    settings = load_settings()
    encoders = encoders_for(settings)
    data0 = training_data(make_engine(resolve_url(settings)), settings, encoders, progress=False)
    texts = data0.all_text_vectors()
    if args.extra_captions:
        known = set(data0.caption_texts.tolist()) | set(data0.pair_texts.tolist())
        with open(args.extra_captions) as f:
            extra = sorted({r["caption"] for r in csv.DictReader(f, delimiter="\t")} - known)
        texts = np.concatenate([texts, cached_text_vectors(extra, encoders.text, settings.data_dir / "cache")])
    for p in (float(x) for x in args.powers.split(",")):
        t0 = time.time()
        text = PartialWhitening(p).fit(texts) if p > 0 else IdentityText()
        data = data0.with_text_transform(text)
        cv, _ = grouped_cv(data, default_mapper(data), {}, progress=False)
        c = cv["joint_cosine"]
        print(json.dumps({"p": p, "pca_texts": len(texts), **{k: round(c[k], 4) for k in ("R@1", "R@5", "R@10", "MRR", "tau_c")},
                          "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
