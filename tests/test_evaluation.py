"""`withsense evaluate` on the fixture: 20 test queries over 4 test photos, through the search path."""
import json
from pathlib import Path

from service.search.searcher import Searcher
from service.training.evaluation import evaluate, write_reports


def test_evaluate_counts_and_reports(loaded, encoders, tmp_path):
    engine, settings = loaded["engine"], loaded["settings"]
    searcher = Searcher(engine, settings, encoders.text)
    report = evaluate(engine, settings, searcher, progress=False)
    assert report["gallery_photos"] == 4 and report["queries"] == 20
    n = report["results"]["full"]["n_queries"]
    assert n + report["blocked_by_content_rule"] == 20
    for mode in ("shortlist", "full", "labels"):
        r = report["results"][mode]
        assert r["n_queries"] == n
        assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1
        assert r["R@5"] == 1.0  # 4 photos: the correct one is always in the top 5
        assert 1 <= r["median_rank"] <= 4
    # The Russian set (service/training/eval_sets/test_queries_ru.tsv) has 9 queries on these 4 photos.
    ru = report["russian"]
    assert ru["queries_in_set"] >= 120 and ru["queries_in_library"] == 9 and ru["photos"] == 4
    assert ru["blocked_ru"] == ru["blocked_en"] == 0
    for name in ("ru", "en", "ru_shortlist", "en_shortlist"):
        r = ru["results"][name]
        assert r["n_queries"] == 9 and 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] == 1 and 1 <= r["median_rank"] <= 4
    # A ranker trained with grouped CV carries its share of the joint cosine (ml.blend) and the sweep
    # that chose it; the fixture's quick training has none, so the report says nothing of it.
    assert report["cos_weight"] is None
    report["cos_weight"] = {"chosen": 20.0, "rule": "the rule", "sweep": [
        {"weight": w, "R@1": 0.5, "R@5": 0.8, "R@10": 0.9, "tau_c_served": t} for w, t in ((0.0, 0.561), (20.0, 0.575))]}
    write_reports(report, engine, searcher, tmp_path)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["results"] == report["results"]
    assert saved["russian"] == ru
    assert (tmp_path / "evaluation_ranks.png").stat().st_size > 1000
    md = (tmp_path / "evaluation.md").read_text()
    assert "| (b) shortlist + scorer |" in md
    assert "plus **20** times the candidate's joint cosine" in md and "| 20 | 0.500 | 0.800 | 0.900 | 0.575 |" in md
    assert "## Russian queries (reporting only)" in md
    assert "| Russian | (b) shortlist + scorer | 9 |" in md
    # how Russian queries reach the ranker: the bridge the fixture's training fitted, and its dictionary
    bridge = report["query_bridge"]
    assert bridge["texts"] > 1000 and bridge["gloss_words"] > 0 and bridge["cos_share"] == 5.0
    assert f"fitted on {bridge['texts']:,} texts, 1 of them hand-written Russian captions" in md
    assert "A bridged query is ordered by the network plus 5 times the candidate's joint cosine." in md
    assert ("Russian word forms of the bilingual dictionary" in md) == (bridge["dictionary_forms"] > 0)
    assert (bridge["dictionary_forms"] > 0) == Path(settings.gloss_dictionary).exists()
    assert "| the same queries in English | (b) shortlist + scorer | 9 |" in md


def test_evaluation_never_logs_searches(loaded, encoders):
    from sqlalchemy import text

    engine = loaded["engine"]
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM search_log")).scalar()
    evaluate(engine, loaded["settings"], Searcher(engine, loaded["settings"], encoders.text), progress=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM search_log")).scalar() == before
