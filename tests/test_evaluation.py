"""`withsense evaluate` on the fixture: 20 test queries over 4 test photos, through the search path."""
import json

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
    write_reports(report, engine, searcher, tmp_path)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["results"] == report["results"]
    assert (tmp_path / "evaluation_ranks.png").stat().st_size > 1000
    assert "| (b) shortlist + scorer |" in (tmp_path / "evaluation.md").read_text()


def test_evaluation_never_logs_searches(loaded, encoders):
    from sqlalchemy import text

    engine = loaded["engine"]
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM search_log")).scalar()
    evaluate(engine, loaded["settings"], Searcher(engine, loaded["settings"], encoders.text), progress=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM search_log")).scalar() == before
