"""Learning curves in process: labels until held-out macro-F1 reaches 95% of the full-data F1, per feature set.

The protocol of docs/label-efficiency-notes.md, with this project's own estimator parts
(backends.features, TF-IDF as the backend builds it, logistic regression, class_weight
balanced) and strategies: a stratified 70/30 split, 20 random seed labels, then batches
of 20 chosen by the strategy from the remaining 70%, macro-F1 on the 30%; several seeds.
Random order is the reference, measured in the same run, and the ratio is printed.

    python bench/learning_curves.py [--datasets sms,ag_news] [--seeds 3] [--max-labels 600]

Through the real loop (Label Studio, the service, a simulated annotator) is another
benchmark's job; this one chooses the estimator.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import strategies  # noqa: E402
from backends import features  # noqa: E402
from backends.text_classification import MAX_TERMS  # noqa: E402
from strategies.cold_start import fit_cold_start  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SEED_LABELS, BATCH = 20, 20
# Hybrid batches (--strategies hybrid:margin): candidates clustered, one pick per cluster.
HYBRID_CANDIDATES = 200


def sms() -> tuple[list[str], np.ndarray]:
    with (SHARED / "sms_spam_collection.tsv").open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [(r[0], r[1]) for r in reader if len(r) == 2]
    return [t for _, t in rows], np.array([label for label, _ in rows], dtype=object)


def ag_news() -> tuple[list[str], np.ndarray]:
    with (SHARED / "ag_news_test.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [(r[0], f"{r[1]}. {r[2]}") for r in reader]
    return [t for _, t in rows], np.array([label for label, _ in rows], dtype=object)


DATASETS = {"sms": sms, "ag_news": ag_news}


def tfidf() -> TfidfVectorizer:  # as backends/text_classification.py builds it
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=MAX_TERMS)


def estimator(kind: str, c: float, weight: float = 1.0) -> Pipeline:
    classifier = LogisticRegression(max_iter=1000, class_weight="balanced", C=c)
    if kind == "tfidf":
        return Pipeline([("tfidf", tfidf()), ("clf", classifier)])
    parts = [("tfidf", tfidf())] if kind == "tfidf+glove" else []
    parts.append(("glove", features.MeanWordVectors("glove-6b-50d", weight=weight)))
    return Pipeline([("features", FeatureUnion(parts)), ("clf", classifier)])


VARIANTS = {
    "tfidf C=1 (today)": ("tfidf", 1.0, 1.0),
    "glove C=1": ("glove", 1.0, 1.0),
    "glove C=10": ("glove", 10.0, 1.0),
    "tfidf+glove w=1 C=1": ("tfidf+glove", 1.0, 1.0),
    "tfidf+glove w=1 C=10": ("tfidf+glove", 10.0, 1.0),
    "tfidf+glove w=2 C=1": ("tfidf+glove", 1.0, 2.0),
    "tfidf+glove w=3 C=1": ("tfidf+glove", 1.0, 3.0),
    "tfidf+glove w=2 C=3": ("tfidf+glove", 3.0, 2.0),
}


def set_batch(size: int) -> None:
    global BATCH
    BATCH = size


def seed_labels(texts, train, rng, seed: int, cold_start: str) -> list[int]:
    """The first SEED_LABELS labels: uniform random, or the diversity cold start's order (strategies/cold_start.py)."""
    if cold_start == "random":
        return [int(i) for i in rng.choice(train, size=SEED_LABELS, replace=False)]
    vectors = features.mean_vectors(features.WordVectors.get("glove-6b-50d"), [texts[i] for i in train])
    order = fit_cold_start(vectors, seed=seed)
    ranked = strategies.labelling_order(order.priorities(vectors), train)
    return [int(i) for i in train[ranked[:SEED_LABELS]]]


def curve(texts, y, train, test, make, strategy: str, seed: int, max_labels: int, stop_at: float,
          cold_start: str = "random"):
    """The held-out macro-F1 after each batch, [(labels, F1)], until F1 reaches `stop_at` or max_labels."""
    rng = np.random.default_rng(seed)
    labeled = seed_labels(texts, train, rng, seed, cold_start)
    test_texts = [texts[i] for i in test]
    points = []
    while True:
        model = make().fit([texts[i] for i in labeled], y[labeled])
        f1 = f1_score(y[test], model.predict(test_texts), average="macro")
        points.append((len(labeled), f1))
        if f1 >= stop_at or len(labeled) >= max_labels:
            return points
        pool = np.setdiff1d(train, labeled)
        if strategy == "random":
            picks = rng.choice(pool, size=BATCH, replace=False)
        elif strategy.startswith("hybrid:"):  # the top HYBRID_CANDIDATES by the strategy, one per k-means cluster
            probabilities = model.predict_proba([texts[i] for i in pool])
            priorities = strategies.priorities(strategy.split(":", 1)[1], probabilities=probabilities)
            candidates = pool[strategies.labelling_order(priorities, pool)[:HYBRID_CANDIDATES]]
            vectors = features.mean_vectors(features.WordVectors.get("glove-6b-50d"), [texts[i] for i in candidates])
            order = fit_cold_start(vectors, clusters=BATCH, seed=seed)
            picks = candidates[strategies.labelling_order(order.priorities(vectors), candidates)[:BATCH]]
        else:
            probabilities = model.predict_proba([texts[i] for i in pool])
            priorities = strategies.priorities(strategy, probabilities=probabilities)
            picks = pool[strategies.labelling_order(priorities, pool)[:BATCH]]
        labeled.extend(int(i) for i in picks)


def labels_to(points, target: float) -> int | None:
    return next((labels for labels, f1 in points if f1 >= target), None)


def labels_text(values: list[int | None], max_labels: int) -> str:
    shown = [str(v) if v is not None else f">{max_labels}" for v in values]
    reached = [v for v in values if v is not None]
    median = statistics.median(reached) if len(reached) == len(values) else None
    return f"{median:.0f} ({', '.join(shown)})" if median is not None else f"- ({', '.join(shown)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sms,ag_news")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-labels", type=int, default=600)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--strategies", default="margin,least_confidence")
    parser.add_argument("--cache-dir", default="/tmp/alo-features")
    parser.add_argument("--batch", type=int, default=BATCH, help="labels per round after the first SEED_LABELS")
    parser.add_argument("--cold-start", default="random", choices=["random", "kmeans"],
                        help="how the first labels are chosen for the strategies (random stays random)")
    args = parser.parse_args()
    set_batch(args.batch)
    features.set_cache_dir(args.cache_dir)
    rows = []
    chosen = args.strategies.split(",")
    for name in args.datasets.split(","):
        texts, y = DATASETS[name]()
        index = np.arange(len(texts))
        train, test = train_test_split(index, test_size=0.3, stratify=y, random_state=0)
        makers, full = {}, {}
        for variant in args.variants.split(","):
            kind, c, weight = VARIANTS[variant]
            makers[variant] = lambda kind=kind, c=c, weight=weight: estimator(kind, c, weight)
            model = makers[variant]().fit([texts[i] for i in train], y[train])
            full[variant] = f1_score(y[test], model.predict([texts[i] for i in test]), average="macro")
        common = 0.95 * max(full.values())  # one bar for every variant: 95% of the best full-data F1
        for variant, make in makers.items():
            started = time.perf_counter()
            own = 0.95 * full[variant]
            own_labels, common_labels = {}, {}
            for strategy in ["random", *chosen]:
                cold = "random" if strategy == "random" else args.cold_start
                points = [curve(texts, y, train, test, make, strategy, seed, args.max_labels, max(own, common), cold)
                          for seed in range(args.seeds)]
                own_labels[strategy] = [labels_to(p, own) for p in points]
                common_labels[strategy] = [labels_to(p, common) for p in points]

            def ratio(reached):
                best = min(chosen, key=lambda s: statistics.median(
                    [v if v is not None else 10 * args.max_labels for v in reached[s]]))
                cap = [v if v is not None else args.max_labels for v in reached["random"]]
                mine = [v if v is not None else args.max_labels for v in reached[best]]
                floor = "+" if None in reached["random"] else ""
                return f"{statistics.median(cap) / statistics.median(mine):.1f}x{floor}"

            rows.append((name, variant, f"{full[variant]:.3f}",
                         labels_text(own_labels["random"], args.max_labels),
                         *(labels_text(own_labels[s], args.max_labels) for s in chosen), ratio(own_labels),
                         labels_text(common_labels["random"], args.max_labels),
                         *(labels_text(common_labels[s], args.max_labels) for s in chosen), ratio(common_labels),
                         f"{time.perf_counter() - started:.0f} s"))
            print(" | ".join(rows[-1]), flush=True)
        print(f"{name}: common bar = 95% of the best full-data F1 = {common:.3f}", flush=True)
    header = ("data", "features", "full F1", "random -> own 95%", *(f"{s} -> own 95%" for s in chosen),
              "random / best", "random -> bar", *(f"{s} -> bar" for s in chosen), "random / best", "time")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nlabels to 95% of each variant's own full-data macro-F1, and to the dataset's common bar (95% of the "
          f"best variant's full-data F1): median over {args.seeds} seeds (each seed in brackets); "
          f"'>{args.max_labels}': not reached; '+' after a ratio: random missed within the budget (the ratio is a floor)")


if __name__ == "__main__":
    main()
