"""The stopping rule in process, over seeds: where kappa on a stop set fires, against where held-out F1 stops rising.

Same protocol as bench/learning_curves.py (this project's tfidf+glove estimator, margin, a k-means cold start,
rounds of --batch labels, default 20) run to --max-labels; after each round, Cohen's kappa between this model's and the previous
model's labels on a fixed stop set (2,000 pool tasks, as the service draws one), the rule of
orchestrator/learning/stopping.py at several thresholds, and the plateau (the first round within 0.01 of the
run's best held-out macro-F1). Prints, per dataset and threshold, the median labels at which the rule fired and
the median |fired - plateau| over the seeds.

    python bench/stopping_rule.py [--datasets sms,ag_news] [--seeds 5] [--max-labels 400] [--batch 20]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import learning_curves  # noqa: E402
from learning_curves import DATASETS, estimator, seed_labels  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import strategies  # noqa: E402
from backends import features  # noqa: E402

THRESHOLDS = (0.99, 0.98, 0.97, 0.96, 0.95)


def run(texts, y, train, test, seed: int, max_labels: int):
    from orchestrator.learning.stopping import cohen_kappa

    rng = np.random.default_rng(seed)
    stop_set = rng.choice(train, size=min(2000, len(train) // 2), replace=False)
    stop_texts = [texts[i] for i in stop_set]
    labeled = seed_labels(texts, train, rng, seed, "kmeans")
    points, previous = [], None
    while True:
        model = estimator("tfidf+glove", 1.0, 2.0).fit([texts[i] for i in labeled], y[labeled])
        f1 = f1_score(y[test], model.predict([texts[i] for i in test]), average="macro")
        now = model.predict(stop_texts)
        points.append((len(labeled), f1, None if previous is None else cohen_kappa(previous, now)))
        previous = now
        if len(labeled) >= max_labels:
            return points
        pool = np.setdiff1d(train, labeled)
        probabilities = model.predict_proba([texts[i] for i in pool])
        picks = pool[strategies.labelling_order(strategies.priorities("margin", probabilities=probabilities),
                                                pool)[:learning_curves.BATCH]]
        labeled.extend(int(i) for i in picks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sms,ag_news")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-labels", type=int, default=400)
    parser.add_argument("--cache-dir", default="/tmp/alo-features")
    parser.add_argument("--batch", type=int, default=learning_curves.BATCH, help="labels per round")
    parser.add_argument("--dump", help="write every run's rounds (labels, F1, kappa) to this JSON file")
    args = parser.parse_args()
    learning_curves.set_batch(args.batch)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    import django

    django.setup()
    from orchestrator.learning.stopping import stop_suggested

    features.set_cache_dir(args.cache_dir)
    dumped: dict[str, list] = {}
    print("| data | threshold | fired at (median, per seed) | F1 stops rising at | median abs(fired - plateau) |")
    print("|---|---|---|---|---|")
    for name in args.datasets.split(","):
        texts, y = DATASETS[name]()
        train, test = train_test_split(np.arange(len(texts)), test_size=0.3, stratify=y, random_state=0)
        runs = [run(texts, y, train, test, seed, args.max_labels) for seed in range(args.seeds)]
        dumped[name] = runs
        plateaus = []
        for points in runs:
            best = max(f1 for _, f1, _ in points)
            plateaus.append(next(labels for labels, f1, _ in points if f1 >= best - 0.01))
        for threshold in THRESHOLDS:
            fired = []
            for points in runs:
                kappas = [k for _, _, k in points]
                fired.append(next((labels for i, (labels, _, _) in enumerate(points)
                                   if stop_suggested(kappas[:i + 1], threshold=threshold)), None))
            gaps = [abs((f if f is not None else args.max_labels) - p) for f, p in zip(fired, plateaus)]
            shown = ", ".join(str(f) if f is not None else f">{args.max_labels}" for f in fired)
            values = [f if f is not None else args.max_labels for f in fired]
            print(f"| {name} | {threshold} | {statistics.median(values):.0f} ({shown}) | "
                  f"{statistics.median(plateaus):.0f} ({', '.join(map(str, plateaus))}) | "
                  f"{statistics.median(gaps):.0f} |", flush=True)
    if args.dump:
        Path(args.dump).write_text(json.dumps({"batch": args.batch, "runs": dumped}))


if __name__ == "__main__":
    main()
