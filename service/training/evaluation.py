"""`withsense evaluate`: the 500 test queries over the 100 test photos, through the search path.

Every query goes through ``Searcher.search`` (the same code the API calls) restricted to the test
photos, with descriptions left out (``hybrid=False``: the test photos' only captions are the test
queries themselves). Rankings measured:

  (a) shortlist only   - the SQL nearest-neighbour order in the joint space (``rerank=False``);
  (b) shortlist+scorer - the full pipeline, as served (the reranker family the selection rule chose);
  (c) labels only      - no training at all: the query against each photo's bridge vector (ImageNet
                          class probabilities times label-phrase vectors; CLIP's own image vector);
  and each other reranker family trained with the active model (``alternatives/``), through the
  same search path (``Searcher.search(scorer=...)``), so the three families stand side by side.

The calibration of the score (held-out rated pairs; ``ml.calibration``) comes from the active
model's metrics; ``--ood`` adds the out-of-domain check (``service.training.ood``).

The Russian set (``eval_sets/test_queries_ru.tsv``: test queries written in Russian by hand, for
reporting only, never for choosing anything) goes through the same ``Searcher.search``, beside the
same queries in English (same query ids) and beside all the English ones.

Queries the content rule blocks are counted apart, not as failures. Agreement with the experts
(Kendall tau-c on held-out photos) comes from the active model's grouped cross-validation.
Writes reports/evaluation.md, reports/evaluation.json and two PNG plots.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, text
from tqdm import tqdm

from ml import metrics as M
from service.config import Settings
from service.search.searcher import Searcher
from service.store.db import as_array
from service.training.ood import BASELINE, SERVED

TEST_QUERIES_SQL = text(
    """
    SELECT d.id, d.text, d.photo_id, d.dataset_key
    FROM descriptions d JOIN photos p ON p.id = d.photo_id
    WHERE d.source = 'test' AND p.split = 'test'
    ORDER BY d.id
    """
)

TEST_PHOTO_BRIDGES_SQL = text(
    """
    SELECT pe.photo_id, pe.bridge
    FROM photo_embeddings pe JOIN photos p ON p.id = pe.photo_id
    WHERE pe.model_id = :model_id AND p.split = 'test'
    ORDER BY pe.photo_id
    """
)


RU_SET = Path(__file__).with_name("eval_sets") / "test_queries_ru.tsv"
RU_COLUMNS = ["query_id", "image", "query_en", "query_ru"]


@dataclass(frozen=True)
class TranslatedQuery:
    query_id: str  # as in test_queries.csv: "<image file>#<n>"
    image: str
    query_en: str
    query_ru: str


def read_translated_set(path: Path = RU_SET) -> list[TranslatedQuery]:
    """The hand-written Russian test queries: UTF-8, tab-separated, no quoting, one header line."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0] != RU_COLUMNS:
        raise ValueError(f"{path}: the header must be {RU_COLUMNS}")
    return [TranslatedQuery(*row) for row in rows[1:]]


MODES = {"shortlist": "(a) shortlist only", "full": "(b) shortlist + scorer", "labels": "(c) labels only, no training"}


def _summary(ranks: list[int]) -> dict:
    r = np.asarray(ranks)
    return {"R@1": round(M.recall_at_k(r, 1), 4), "R@5": round(M.recall_at_k(r, 5), 4),
            "R@10": round(M.recall_at_k(r, 10), 4), "MRR": round(M.mrr(r), 4),
            "median_rank": float(M.median_rank(r)), "n_queries": int(len(r))}


def _rank_of(photo_ids: list[int], correct: int) -> int:
    return photo_ids.index(correct) + 1 if correct in photo_ids else len(photo_ids) + 1


def evaluate(engine: Engine, settings: Settings, searcher: Searcher, *, progress: bool = True,
             ru_set: Path | None = RU_SET) -> dict:
    model = searcher.active_model()
    with engine.connect() as conn:
        queries = conn.execute(TEST_QUERIES_SQL).all()
        bridges = conn.execute(TEST_PHOTO_BRIDGES_SQL, {"model_id": model.id}).all()
    n_photos = len(bridges)
    bridge_ids = [b.photo_id for b in bridges]
    bridge_matrix = np.stack([as_array(b.bridge) for b in bridges])
    ranker = searcher.ranker_for(model)
    alternatives = sorted(p.name for p in (Path(model.artifact_path) / "alternatives").glob("*") if p.is_dir())
    ranks = {mode: [] for mode in [*MODES, *alternatives]}
    blocked = []
    for q in tqdm(queries, desc="test queries", unit="query", disable=not progress):
        full = searcher.search(q.text, limit=n_photos, splits=["test"], hybrid=False, log=False)
        if full.blocked:
            blocked.append(q.text)
            continue
        shortlist = searcher.search(q.text, limit=n_photos, splits=["test"], hybrid=False, rerank=False, log=False)
        ranks["full"].append(_rank_of([r.photo_id for r in full.results], q.photo_id))
        ranks["shortlist"].append(_rank_of([r.photo_id for r in shortlist.results], q.photo_id))
        for name in alternatives:
            other = searcher.search(q.text, limit=n_photos, splits=["test"], hybrid=False, log=False, scorer=name)
            ranks[name].append(_rank_of([r.photo_id for r in other.results], q.photo_id))
        query = ranker.transform_query(searcher.text_encoder.encode([q.text])[0])
        label_order = np.argsort(-(bridge_matrix @ query), kind="stable")
        ranks["labels"].append(_rank_of([bridge_ids[i] for i in label_order], q.photo_id))
    russian = _russian(searcher, queries, ru_set, n_photos, progress) if ru_set else None
    metrics = model.metrics or {}
    cv = metrics.get("cv", {})
    chosen = metrics.get("chosen")
    return {
        "model_version": model.version,
        "gallery_photos": n_photos,
        "queries": len(queries),
        "blocked_by_content_rule": len(blocked),
        "results": {mode: _summary(r) for mode, r in ranks.items()},
        "ranks": ranks,
        "cv_held_out": cv,
        "cv_chosen": chosen,
        "kendall_tau_c_held_out": (cv.get(chosen) or {}).get("tau_c"),
        # the served score (calibrated, with its query-level signals), held out: what a user sees
        "kendall_tau_c_served": (metrics.get("calibration") or {}).get("tau_c_served"),
        "selection_rule": metrics.get("selection_rule"),
        "cos_weight": metrics.get("cos_weight"),  # the served network's share of the joint cosine (ml.blend)
        "query_bridge": metrics.get("query_bridge"),  # how queries in other languages reach it (ml.multilingual)
        "alternatives": alternatives,
        "calibration": metrics.get("calibration"),
        "russian": russian,
    }


def _russian(searcher: Searcher, queries: list, path: Path, n_photos: int, progress: bool) -> dict:
    """The Russian set beside the same queries in English, each through the search path as served.

    Only the set's queries whose English text is in this library's test queries count (on the
    fixture library, a few); a query the content rule blocks in either language is counted apart."""
    by_key = {q.dataset_key: q for q in queries}
    translated = read_translated_set(path)
    chosen = [t for t in translated if t.query_id in by_key]
    ranks: dict[str, list[int]] = {"ru": [], "en": [], "ru_shortlist": [], "en_shortlist": []}
    blocked = {"ru": 0, "en": 0}
    photos = set()
    for t in tqdm(chosen, desc="Russian test queries", unit="query", disable=not progress):
        q = by_key[t.query_id]
        runs = {lang: searcher.search(text_, limit=n_photos, splits=["test"], hybrid=False, log=False)
                for lang, text_ in (("ru", t.query_ru), ("en", q.text))}
        for lang, run in runs.items():
            blocked[lang] += run.blocked
        if any(run.blocked for run in runs.values()):
            continue
        photos.add(q.photo_id)
        for lang, text_ in (("ru", t.query_ru), ("en", q.text)):
            ranks[lang].append(_rank_of([r.photo_id for r in runs[lang].results], q.photo_id))
            shortlist = searcher.search(text_, limit=n_photos, splits=["test"], hybrid=False, rerank=False, log=False)
            ranks[f"{lang}_shortlist"].append(_rank_of([r.photo_id for r in shortlist.results], q.photo_id))
    return {
        "set": f"service/training/eval_sets/{path.name}" if path == RU_SET else str(path),
        "queries_in_set": len(translated),
        "queries_in_library": len(chosen),
        "photos": len(photos),
        "blocked_ru": blocked["ru"],
        "blocked_en": blocked["en"],
        "results": {name: _summary(r) if r else {"n_queries": 0} for name, r in ranks.items()},
    }


def _plots(report: dict, engine: Engine, searcher: Searcher, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.arange(1, report["gallery_photos"] + 2) - 0.5
    for mode in ("shortlist", "full"):
        ax.hist(report["ranks"][mode], bins=bins, histtype="step", cumulative=True, density=True, label=MODES[mode])
    ax.set_xscale("log")
    ax.set_xlabel("rank of the correct photo (log scale)")
    ax.set_ylabel("share of queries at or above this rank")
    ax.set_title(f"Rank of the correct photo, {report['results']['full']['n_queries']} test queries")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "evaluation_ranks.png", dpi=110)
    plt.close(fig)
    files.append("evaluation_ranks.png")

    bins = ((report.get("calibration") or {}).get("bins")) or []
    if bins:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
        ax.plot([b["mean_prob"] for b in bins], [b["observed"] for b in bins], marker="o",
                label=f"held-out rated pairs (ECE {report['calibration']['ECE']:.3f})")
        for b in bins:
            ax.annotate(str(b["n"]), (b["mean_prob"], b["observed"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.set_xlabel("predicted probability that the description fits")
        ax.set_ylabel("share the experts say fits (mean >= 3)")
        ax.set_title("Reliability of the score (numbers: pairs per bin)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out_dir / "evaluation_reliability.png", dpi=110)
        plt.close(fig)
        files.append("evaluation_reliability.png")
    return files


def write_reports(report: dict, engine: Engine, searcher: Searcher, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(report, engine, searcher, out_dir)
    (out_dir / "evaluation.json").write_text(json.dumps({k: v for k, v in report.items() if k != "ranks"}, indent=2))
    lines = ["# Evaluation (`withsense evaluate`)", "",
             f"Model `{report['model_version']}`; {report['queries']} test queries over {report['gallery_photos']} "
             f"test photos; {report['blocked_by_content_rule']} queries blocked by the content rule are counted "
             "apart (not failures), so each figure is over the other "
             f"{report['results']['full']['n_queries']}.", "",
             "| ranking | R@1 | R@5 | R@10 | MRR | median rank |", "|---|---|---|---|---|---|"]
    labels = {**MODES, **{name: f"(b) with the `{name}` reranker instead" for name in report.get("alternatives", [])}}
    for mode, label in labels.items():
        r = report["results"][mode]
        lines.append(f"| {label} | {r['R@1']} | {r['R@5']} | {r['R@10']} | {r['MRR']} | {r['median_rank']} |")
    cv = report["cv_held_out"]
    if cv:
        lines += ["", "## Model comparison (grouped 5-fold CV by photo, training photos only)", "",
                  f"Chosen: `{report['cv_chosen']}` (rule: {report.get('selection_rule')}). "
                  f"Kendall tau-c against the expert mean on held-out photos: {report['kendall_tau_c_held_out']:.3f} "
                  "for the reranker's raw score"
                  + (f", {report['kendall_tau_c_served']:.3f} for the served score (calibrated with the query-level "
                     "signals, held out)." if report.get("kendall_tau_c_served") is not None else "."), "",
                  "| reranker | tau-c | tau-c, served score | ROC-AUC | R@1 | R@5 | R@10 | MRR |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in cv.items():
            cells = [m.get(k) for k in ("tau_c", "tau_c_served", "ROC_AUC", "R@1", "R@5", "R@10", "MRR")]
            lines.append(f"| {name} | " + " | ".join("-" if c is None or c != c else f"{c:.3f}" for c in cells) + " |")
    share = report.get("cos_weight")
    if share:
        lines += ["", f"The served order is the reranker's score plus **{share['chosen']:g}** times the candidate's joint "
                  f"cosine (`ml.blend`; rule: {share['rule']}). Grouped CV of each share tried:", "",
                  "| share | R@1 | R@5 | R@10 | tau-c, served score |", "|---|---|---|---|---|"]
        lines += [f"| {r['weight']:g} | {r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@10']:.3f} | {r['tau_c_served']:.3f} |"
                  for r in share["sweep"]]
    cal = report.get("calibration") or {}
    if "ECE" in cal:
        t = cal["at_threshold"]
        lines += ["", "## Calibration: the score is P(experts say the description fits)", "",
                  f"A logistic regression on the served order's score (the reranker's, plus its share of the joint cosine "
                  f"where the model has one), the query's specificity and the shortlist's best joint cosine (`ml.calibration`), "
                  f"fitted on out-of-fold rated pairs (with no-match queries and photos with their own caption where "
                  f"the model has them) and reported on other photos' pairs (2-fold by photo): {cal['n']} held-out "
                  f"pairs with expert scores. "
                  f"Expected calibration error **{cal['ECE']:.3f}** (10 equal-width bins).", "",
                  f"`min_score` {t['threshold']} on these pairs: precision **{t['precision']:.3f}**, recall "
                  f"**{t['recall']:.3f}** ({t['n_passing']} pairs pass; {t['n_fits']} of {t['n_pairs']} fit).", "",
                  "| predicted | mean predicted | observed | pairs |", "|---|---|---|---|"]
        lines += [f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['mean_prob']:.3f} | {b['observed']:.3f} | {b['n']} |" for b in cal["bins"]]
    lines += _russian_lines(report)
    ood = report.get("ood")
    if ood and BASELINE in ood:
        lines += ["", "## Out-of-domain check (`withsense evaluate --ood`)", "",
                  f"{ood['held_out_photos']} MS-COCO photos held out of training, added to the library of "
                  f"{ood['library_photos']} photos without descriptions, searched with their {ood['queries']} captions "
                  f"(not about children); shortlist of {ood['shortlist']} by cosine, then the model's score.", "",
                  "| model | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|"]
        for name in (BASELINE, SERVED):
            r = ood[name]
            lines.append(f"| {name}: `{r['model']}` | {r['R@1']} | {r['R@5']} | {r['R@10']} | {r['median_rank']} |")
    lines += no_match_lines(report)
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    (out_dir / "evaluation.md").write_text("\n".join(lines))


def _russian_lines(report: dict) -> list[str]:
    ru = report.get("russian")
    if not ru or not ru["results"]["ru"]["n_queries"]:
        return []
    lines = ["", "## Russian queries (reporting only)", "",
             f"`{ru['set']}`: test queries written in Russian by hand ({ru['queries_in_set']} in the set; "
             f"{ru['results']['ru']['n_queries']} over {ru['photos']} photos of this library are counted, "
             f"{ru['blocked_ru']} blocked in Russian and {ru['blocked_en']} in English are left out). Each goes "
             "through the same search path as the English queries, beside the same queries in English. "
             "The set is for reporting only: models are chosen by cross-validation on training photos.",
             *_bridge_lines(report.get("query_bridge")), "",
             "| queries | ranking | n | R@1 | R@5 | R@10 | MRR | median rank |", "|---|---|---|---|---|---|---|---|"]
    rows = [("Russian", "(b) shortlist + scorer", ru["results"]["ru"]),
            ("the same queries in English", "(b) shortlist + scorer", ru["results"]["en"]),
            ("all English test queries", "(b) shortlist + scorer", report["results"]["full"]),
            ("Russian", "(a) shortlist only", ru["results"]["ru_shortlist"]),
            ("the same queries in English", "(a) shortlist only", ru["results"]["en_shortlist"]),
            ("all English test queries", "(a) shortlist only", report["results"]["shortlist"])]
    for who, mode, r in rows:
        lines.append(f"| {who} | {mode} | {r['n_queries']} | {r['R@1']} | {r['R@5']} | {r['R@10']} | {r['MRR']} | "
                     f"{r['median_rank']} |")
    return lines


def _bridge_lines(bridge: dict | None) -> list[str]:
    if not bridge:
        return []
    dictionary = (f"and {bridge['dictionary_forms']:,} Russian word forms of the bilingual dictionary "
                  "(`WITHSENSE_GLOSS_DICTIONARY`)" if bridge["dictionary_forms"] else
                  "and **no bilingual dictionary** (`WITHSENSE_GLOSS_DICTIONARY` was not installed when the "
                  "ranker was trained: Russian words are glossed by USE's nearest English words alone)")
    russian = bridge.get("parallel_texts", 0)  # 0 for a ranker trained before they were fitted
    return ["", f"The active ranker's query bridge (`{bridge['source']}`) was fitted on {bridge['texts']:,} texts, "
                f"{russian:,} of them hand-written Russian captions of training photos; "
                f"its word gloss holds {bridge['gloss_words']:,} English words {dictionary}.{_order_line(bridge)}"]


def _order_line(bridge: dict) -> str:
    share = bridge.get("cos_share")  # None for a bridge saved before it had its own order
    if share is None:
        return ""
    return f" A bridged query is ordered by the network plus {share:g} times the candidate's joint cosine."


# ---------------------------------------------------------------- queries that nothing fits

NO_MATCH_FILE = "eval_sets/no_match_queries.txt"
NO_MATCH_EXAMPLES = ("a close-up of a computer motherboard", "a microscope image of stained cells",
                     "xqzv blorft kpwmn", "how to file my taxes")


def no_match_queries() -> list[str]:
    """The hand-written queries no photo of the library fits (never trained on: training's own
    negatives are ``ml/no_match_sentences.txt`` and random strings)."""
    from importlib.resources import files

    text = files("service.training").joinpath(NO_MATCH_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def no_match_report(searcher: Searcher, calibration: dict | None, *, threshold: float = 0.5,
                    progress: bool = True) -> dict:
    """Does the score mean the same for every query? Each no-match query is searched as served (the
    whole library, hybrid); its best score should be under ``threshold``. Beside it, the median
    score of the test queries whose right photo comes first (test photos, ``hybrid=False``, as
    :func:`evaluate` ranks them), and the ECE on a mixed set: the held-out rated pairs of the
    model's calibration report (its bins) plus each no-match query's best result, labelled 0."""
    from ml.calibration import reliability

    best = {}
    for q in tqdm(no_match_queries(), desc="no-match queries", unit="query", disable=not progress):
        out = searcher.search(q, limit=1, log=False)
        if not out.blocked:
            best[q] = out.results[0].score if out.results else 0.0
    with searcher.engine.connect() as conn:
        queries = conn.execute(TEST_QUERIES_SQL).all()
    right = []
    for q in tqdm(queries, desc="right top-1 scores", unit="query", disable=not progress):
        out = searcher.search(q.text, limit=1, splits=["test"], hybrid=False, log=False)
        if not out.blocked and out.results and out.results[0].photo_id == q.photo_id:
            right.append(out.results[0].score)
    scores = np.array(list(best.values()))
    report = {"n_queries": len(scores), "threshold": threshold,
              "share_under": float((scores < threshold).mean()) if len(scores) else None,
              "quantiles": {f"p{p}": float(np.percentile(scores, p)) for p in (10, 25, 50, 75, 90)} if len(scores) else {},
              "examples": {q: best.get(q) for q in NO_MATCH_EXAMPLES},
              "highest": sorted(best.items(), key=lambda kv: -kv[1])[:10],
              "right_top1": {"n": len(right), "median": float(np.median(right)) if right else None}}
    bins = (calibration or {}).get("bins") or []
    if bins:  # the rated pairs' held-out bins joined by the no-match tops (observed: 0)
        mixed = reliability(scores, np.zeros(len(scores)))
        merged = {(round(b["lo"], 3)): dict(b) for b in bins}
        for b in mixed["bins"]:
            m = merged.setdefault(round(b["lo"], 3), {"lo": b["lo"], "hi": b["hi"], "mean_prob": 0.0, "observed": 0.0, "n": 0})
            n = m["n"] + b["n"]
            m["mean_prob"] = (m["mean_prob"] * m["n"] + b["mean_prob"] * b["n"]) / n
            m["observed"] = m["observed"] * m["n"] / n
            m["n"] = n
        total = sum(b["n"] for b in merged.values())
        report["mixed"] = {"ECE": float(sum(b["n"] / total * abs(b["mean_prob"] - b["observed"]) for b in merged.values())),
                           "n_rated": int(sum(b["n"] for b in bins)), "n_no_match": len(scores),
                           "rated_ECE": calibration.get("ECE")}
    return report


def no_match_lines(report: dict) -> list[str]:
    """reports/evaluation.md's section on queries that nothing fits."""
    nm = report.get("no_match")
    if not nm or not nm.get("n_queries"):
        return []
    t = nm["threshold"]
    q = nm["quantiles"]
    lines = ["", "## Queries that nothing fits (`service/training/eval_sets/no_match_queries.txt`)", "",
             f"{nm['n_queries']} hand-written queries no photo of the library fits (absent scenes, sentences that "
             "describe no scene, strings that mean nothing; never trained on), each searched as served (whole "
             f"library, hybrid). Best score under {t}: **{nm['share_under']:.0%}**; best scores p10 {q['p10']:.3f}, "
             f"p50 {q['p50']:.3f}, p90 {q['p90']:.3f}.", "",
             f"Right photo at rank 1 (test queries over the test photos): median score **{nm['right_top1']['median']:.3f}** "
             f"over {nm['right_top1']['n']} queries."]
    if "mixed" in nm:
        m = nm["mixed"]
        lines += ["", f"ECE on a mixed set ({m['n_rated']} held-out rated pairs + the {m['n_no_match']} no-match "
                  f"queries' best results, labelled 0): **{m['ECE']:.3f}** (rated pairs alone {m['rated_ECE']:.3f})."]
    lines += ["", "| query | best score |", "|---|---|"]
    lines += [f"| {text} | {score:.3f} |" for text, score in nm["examples"].items() if score is not None]
    lines += ["", "Highest best scores:", "", "| query | best score |", "|---|---|"]
    lines += [f"| {text} | {score:.3f} |" for text, score in nm["highest"]]
    return lines
