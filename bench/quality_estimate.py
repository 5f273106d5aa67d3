"""The quality estimate in process: how far each estimate is from held-out macro-F1, round by round.

Active learning as the service runs it (margin, rounds of 20 from the queue head, this project's
backend and features), with a share of each round's positions given to audit tasks drawn uniformly
from the pool (held out of training). After each round, three estimates of the new model's
macro-F1 are compared with its held-out macro-F1 (a stratified 1,000 texts nobody labels):

- **cv**: cross-validation on the labelled set (what versions reported before; biased toward hard tasks);
- **audit**: macro-F1 on the audit labels alone, bootstrap 90% interval;
- **audit+pool**: the audit labels plus the model's probabilities on the unlabeled stop set
  (backends/quality.py: prediction-powered, unbiased), bootstrap 90% interval.

Reported per dataset: the share of rounds whose held-out F1 lies inside the 90% interval, the
mean and worst |estimate - held-out| from 300 labels on, and labels (audit labels counted) to 95%
of the full-data F1 with the audit share and without it (the reference, same run, same seeds).

    python bench/quality_estimate.py [--datasets sms,ag_news] [--seeds 3] [--share 0.1] [--max-labels 600] [--no-cv]

Rounds of one seed share its audit sample, so their errors are correlated: coverage needs many seeds
(each one audit draw) to mean anything.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import os  # noqa: E402

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
django.setup()

import strategies  # noqa: E402
from backends import Example, backend_for, quality  # noqa: E402
from learning_curves import DATASETS  # noqa: E402
from orchestrator.learning.training.fit import evaluate  # noqa: E402

SMS_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
              '<Choice value="ham"/><Choice value="spam"/></Choices></View>')
AG_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
             '<Choice value="1"/><Choice value="2"/><Choice value="3"/><Choice value="4"/></Choices></View>')
CONFIGS = {"sms": SMS_CONFIG, "ag_news": AG_CONFIG}
BATCH, SEED_LABELS, STOP_SET, FROM = 20, 20, 1000, 300
WITH_CV = True


def split(name: str, seed: int, pool_size: int, held_out: int):
    """The dataset's texts and labels, the seed's generator, its pool and its stratified held-out set."""
    texts, y = DATASETS[name]()
    y = np.array([str(v) for v in y], dtype=object)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts), size=pool_size + held_out, replace=False)
    pool, test = train_test_split(pick, test_size=held_out, stratify=y[pick], random_state=seed)
    return texts, y, rng, pool, test


def run(name: str, seed: int, share: float, max_labels: int, pool_size: int, held_out: int):
    texts, y, rng, pool, test = split(name, seed, pool_size, held_out)
    backend = backend_for(CONFIGS[name], features="tfidf+glove")
    test_texts = [texts[i] for i in test]
    # The audit sample as the service draws it (learning/audit.py): tasks whose stable uniform draw is below
    # the share, lowest draw first; the queue's strategy never picks them. The stop set: a fixed uniform sample.
    draws = strategies.stable_random(f"audit:{seed}", pool.tolist())
    audit_order = list(pool[np.argsort(draws)][: int((draws < share).sum())])
    designated = set(audit_order)
    stop = sorted(rng.choice(pool, size=min(STOP_SET, len(pool) // 3), replace=False).tolist())
    stop_texts = [texts[i] for i in stop]
    candidates = [int(i) for i in rng.permutation([i for i in pool if i not in designated])]
    labeled = candidates[:SEED_LABELS]
    while len({y[i] for i in labeled}) < 2:  # (SMS: 20 random texts can all be ham) one more until both show
        labeled.append(candidates[len(labeled)])
    audit: list[int] = []
    every = int(round(1 / share)) if share > 0 else 0
    rows = []
    while True:
        train_examples = [Example(text=texts[i], labels=(y[i],)) for i in labeled]
        model = backend.fit(train_examples)
        held = f1_score(y[test], [backend.labels[j] for j in model.predict_proba(test_texts).argmax(1)],
                        average="macro")
        cv = evaluate(backend, train_examples).get("macro_f1") if WITH_CV else None
        row = {"labels": len(labeled) + len(audit), "held_out": held, "cv": cv}
        if audit:
            truth = quality.one_hot([(y[i],) for i in audit], backend.labels)
            audit_p = model.predict_proba([texts[i] for i in audit])
            row["audit"] = quality.estimate(truth, audit_p, seed=seed)
            trained = set(labeled)  # as the service: no imputation on a task the model learned (fit.unseen)
            pool_p = model.predict_proba([t for i, t in zip(stop, stop_texts) if i not in trained])
            row["ppi"] = quality.estimate(truth, audit_p, pool_p, seed=seed)
        rows.append(row)
        if row["labels"] >= max_labels:
            return rows, test, pool, backend, texts, y
        taken = set(labeled) | set(audit)
        rest = np.array([i for i in pool if i not in taken and i not in designated])
        proba = model.predict_proba([texts[i] for i in rest])
        order = rest[strategies.labelling_order(strategies.priorities("margin", probabilities=proba), rest)]
        queue = iter(order)
        audits = iter(i for i in audit_order if i not in taken)
        for position in range(1, BATCH + 1):
            if every and position % every == 0:
                audit.append(int(next(audits)))
            else:
                labeled.append(int(next(queue)))


def full_f1(name: str, seed: int, pool_size: int, held_out: int) -> float:
    texts, y, _, pool, test = split(name, seed, pool_size, held_out)
    backend = backend_for(CONFIGS[name], features="tfidf+glove")
    model = backend.fit([Example(text=texts[i], labels=(y[i],)) for i in pool])
    return f1_score(y[test], [backend.labels[j] for j in model.predict_proba([texts[i] for i in test]).argmax(1)],
                    average="macro")


def labels_to(rows, target: float) -> int | None:
    return next((r["labels"] for r in rows if r["held_out"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="sms,ag_news")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--max-labels", type=int, default=600)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validated estimate (5 fits a round)")
    args = parser.parse_args()
    global WITH_CV
    WITH_CV = not args.no_cv
    print(f"audit share {args.share}, rounds of {BATCH}, margin, tfidf+glove, {args.seeds} seeds, "
          f"pool {args.pool}, held out {args.held_out}")
    print("| dataset | estimate | rounds in 90% interval | mean abs err from 300 | worst abs err from 300 | "
          "mean interval width from 300 |")
    print("|---|---|---|---|---|---|")
    summary = []
    for name in args.datasets.split(","):
        runs = [run(name, seed, args.share, args.max_labels, args.pool, args.held_out) for seed in range(args.seeds)]
        reference = [run(name, seed, 0.0, args.max_labels, args.pool, args.held_out)[0] for seed in range(args.seeds)]
        full = statistics.mean(full_f1(name, seed, args.pool, args.held_out) for seed in range(args.seeds))
        all_rows = [r for rows, *_ in runs for r in rows]
        for key in ("cv", "audit", "ppi"):
            scored = [r for r in all_rows if r.get(key) is not None]
            if not scored:
                continue
            late = [r for r in scored if r["labels"] >= FROM]
            if key == "cv":
                inside = "-"
                errors = [abs(r["cv"] - r["held_out"]) for r in late]
                width = "-"
            else:
                inside = f"{np.mean([r[key].low <= r['held_out'] <= r[key].high for r in scored]):.0%} of {len(scored)}"
                errors = [abs(r[key].macro_f1 - r["held_out"]) for r in late]
                width = f"{np.mean([r[key].high - r[key].low for r in late]):.3f}"
            print(f"| {name} | {key} | {inside} | {np.mean(errors):.3f} | {max(errors):.3f} | {width} |")
        with_audit = [labels_to(rows, 0.95 * full) for rows, *_ in runs]
        without = [labels_to(rows, 0.95 * full) for rows in reference]
        summary.append((name, full, with_audit, without))
    print()
    print("| dataset | full-data F1 | labels to 95%, audit share (per seed) | without audit (per seed) |")
    print("|---|---|---|---|")
    for name, full, with_audit, without in summary:
        print(f"| {name} | {full:.3f} | {with_audit} | {without} |")


if __name__ == "__main__":
    main()
