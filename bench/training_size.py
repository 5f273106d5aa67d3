"""What a version costs as a project grows, in process: fit, quality estimate, model files saved and loaded.

4-topic news texts (AG News; past its 7,600 texts each is joined with another of the same topic),
the project's default features (`tfidf+glove`). Per size: the final fit, the quality estimate as a
training makes it (5-fold cross-validation up to 2,000 examples, one 20% hold-out above), the model
files (backends/artefacts.py) saved, loaded and their size, the process's peak RSS. References
measured in the same run: the fit as the service made it before (solver tolerance 1e-4, 200,000
terms), five folds of cross-validation at every size, and MLflow's own sklearn format (skops, what
versions were saved with) at the sizes given by --mlflow-sizes (it takes minutes past 2,000).

    python bench/training_size.py [--sizes 1000,10000,50000] [--mlflow-sizes 1000,2000]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sklearn.model_selection import StratifiedKFold  # noqa: E402

from backends import Example, artefacts, backend_for  # noqa: E402
from start_training import CONFIG, news  # noqa: E402
from stack import print_table  # noqa: E402


def seconds(call) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def before(backend, examples):
    """The fit as the service made it before: tolerance 1e-4 at every size, 200,000 terms."""
    pipeline = backend.make_estimator(0)
    pipeline.set_params(features__tfidf__max_features=200_000)
    return pipeline.fit([e.text for e in examples], backend.targets(examples))


def five_folds(backend, examples) -> None:
    y = backend.targets(examples)
    for train, _ in StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(y, y):
        backend.fit([examples[i] for i in train])


def mlflow_save(model, folder: Path) -> float:
    import mlflow.sklearn

    started = time.perf_counter()
    mlflow.sklearn.save_model(model.pipeline, str(folder / "mlflow"), pip_requirements=["scikit-learn"],
                              skops_trusted_types=["backends.features.MeanWordVectors"])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--mlflow-sizes", default="1000")
    parser.add_argument("--no-reference-fit", action="store_true", help="skip the fit as made before, and 5 folds")
    args = parser.parse_args()
    from orchestrator.learning.training.fit import evaluate

    backend = backend_for(CONFIG, features="tfidf+glove")
    # Warm up first (the word vectors' index, imports): the first size would pay for it otherwise.
    backend.fit([Example(text=text, labels=(label,)) for label, text in news(200)])
    mlflow_sizes = {int(s) for s in args.mlflow_sizes.split(",") if s}
    results: list[tuple[str, str]] = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        examples = [Example(text=text, labels=(label,)) for label, text in news(n)]
        fit, model = seconds(lambda: backend.fit(examples))
        estimate, metrics = seconds(lambda: evaluate(backend, examples))
        how = "5 folds" if "cv_folds" in metrics else "20% hold-out"
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            save, summary = seconds(lambda: artefacts.save(model.pipeline, folder))
            load, _ = seconds(lambda: artefacts.load(folder))
            rows = [
                (f"{n:,}: fit", f"{fit:.1f} s"),
                (f"{n:,}: quality estimate ({how}, macro-F1 {metrics.get('macro_f1', float('nan')):.3f})",
                 f"{estimate:.1f} s"),
                (f"{n:,}: model files saved / loaded / size",
                 f"{save:.2f} s / {load:.2f} s / {summary['bytes'] / 1e6:.1f} MB"),
            ]
            if not args.no_reference_fit:
                old, _ = seconds(lambda: before(backend, examples))
                folds, _ = seconds(lambda: five_folds(backend, examples))
                rows += [(f"{n:,}: reference: the fit as before (tol 1e-4, 200k terms)",
                          f"{old:.1f} s ({old / fit:.1f}x the fit now)"),
                         (f"{n:,}: reference: five folds", f"{folds:.1f} s ({folds / max(estimate, 1e-9):.1f}x the estimate now)")]
            if n in mlflow_sizes:
                reference = mlflow_save(model, Path(tmp))
                size = sum(f.stat().st_size for f in (Path(tmp) / "mlflow").rglob("*") if f.is_file())
                rows.append((f"{n:,}: reference: MLflow's sklearn format (skops) saved / size",
                             f"{reference:.1f} s ({reference / save:.0f}x) / {size / 1e6:.1f} MB"))
        rows.append((f"{n:,}: peak RSS of this process so far",
                     f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
        results += rows
        print(*rows, sep="\n", flush=True)
    print_table(results)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    import django

    os.environ.setdefault("ALO_DATA_DIR", tempfile.mkdtemp(prefix="alo-bench-training-size-"))
    django.setup()
    main()
