"""The Russian evaluation set through the product's own ``Searcher.search`` over a ``make demo``
database, one line per way of bridging USE into the active ranker (reporting only: the variants are
chosen by ``research.cv_multilingual``'s grouped CV, never by this set).

    WITHSENSE_DATA_DIR=var .venv/bin/python -m research.ru_search --ru service/training/eval_sets/test_queries_ru.tsv

Each query searches the test photos only, without descriptions (``splits=["test"], hybrid=False``),
as `withsense evaluate` searches the English test queries. Variants: ``minilm`` (every query through
MiniLM: the state before), ``served`` (the ranker's own bridge), ``served_shortlist_only`` (its
cosine, no reranker), ``bridge_raw`` and ``bridge_whitened_nolabels`` (refitted here on the same texts
as the served bridge); ``en_minilm`` and ``en_through_bridge``: the same queries in English
(``query_en``), through MiniLM and forced through USE and the bridge.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from ml import metrics as M
from ml.data import cached_text_vectors
from ml.encoders import imagenet_label_texts
from ml.multilingual import QueryBridge, bridge_texts
from service.config import load_settings
from service.runtime import encoders_for
from service.search.routing import Route
from service.search.searcher import Searcher
from service.store.db import make_engine, resolve_url
from service.store.library_precision import resolved_settings
from service.training.training_data import training_data


class _RawBridge:
    """A bridge into MiniLM's raw space, then the ranker's own transform (the issue's measurement)."""

    def __init__(self, bridge: QueryBridge, ranker) -> None:
        self.bridge, self.ranker = bridge, ranker

    def transform(self, x):
        return self.ranker.transform_query(self.bridge.transform(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ru", type=Path, required=True)
    parser.add_argument("--variants", nargs="*", default=["minilm", "served", "bridge_raw", "bridge_whitened_nolabels"])
    args = parser.parse_args()
    settings = resolved_settings(load_settings())  # the library's image precision
    engine = make_engine(resolve_url(settings))
    encoders = encoders_for(settings)
    searcher = Searcher(engine, settings, encoders.text, multilingual=encoders.multilingual)
    ranker = searcher.active_state().ranker
    served = ranker.query_bridges.get("usem3")
    with open(args.ru, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    from sqlalchemy import text

    with engine.connect() as conn:
        photo_id = dict(conn.execute(text("SELECT file_name, id FROM photos WHERE split = 'test'")).all())
    refits = {}
    if {"bridge_raw", "bridge_whitened_nolabels"} & set(args.variants):
        data = training_data(engine, settings, encoders)
        cache = settings.data_dir / "cache"
        texts, vectors = bridge_texts(data, imagenet_label_texts())
        source = cached_text_vectors(texts, encoders.multilingual, cache)
        refits["bridge_raw"] = _RawBridge(QueryBridge(alpha=1.0).fit(source, vectors), ranker)
        n = len(data.caption_texts) + len(data.pair_texts)
        refits["bridge_whitened_nolabels"] = QueryBridge(alpha=1.0).fit(source[:n], ranker.transform_query(vectors[:n]))
    route = searcher.router.route
    for variant in args.variants:
        column, rerank = "query_ru", True
        searcher.router.route = route
        if variant == "minilm":
            ranker.query_bridges.pop("usem3", None)
        elif variant in ("served_shortlist_only", "en_through_bridge", "en_minilm"):
            ranker.query_bridges["usem3"] = served
            rerank = variant != "served_shortlist_only"
            if variant.startswith("en_"):  # the same queries in English (the set's query_en), one path forced
                column = "query_en"
                encoder = "usem3" if variant == "en_through_bridge" else searcher.text_encoder.name
                searcher.router.route = lambda q, r, e=encoder: Route("en", e)
        else:
            ranker.query_bridges["usem3"] = served if variant == "served" else refits[variant]
        ranks, paths = [], set()
        for r in rows:
            out = searcher.search(r[column], limit=100, splits=["test"], hybrid=False, log=False, rerank=rerank)
            ids = [x.photo_id for x in out.results]
            correct = photo_id[r["image"]]
            ranks.append(ids.index(correct) + 1 if correct in ids else len(ids) + 1)
            paths.add(out.text_encoder)
        ranks = np.array(ranks)
        print(json.dumps({"variant": variant, "queries": len(ranks), "paths": sorted(paths),
                          **{f"R@{k}": round(M.recall_at_k(ranks, k), 4) for k in (1, 5, 10)},
                          "median_rank": float(np.median(ranks))}), flush=True)
    ranker.query_bridges["usem3"] = served
    searcher.router.route = route
    searcher.close()


if __name__ == "__main__":
    main()
