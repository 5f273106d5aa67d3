"""Label savings through the real loop: Label Studio 1.23.2, the service as `make run` starts it, a simulated annotator.

For each dataset (SMS spam, AG News), two projects of the same pool of tasks:
- **active learning**: round after round, the annotator labels the head of the "Active learning
  queue" view (through Label Studio's API, as a person working the queue would) with the true
  label; Label Studio's own webhooks make the service train, and the round ends when the new
  version serves and its push re-sorted the queue. Before the first model the queue is the
  cold start's order (pushed when the project connected).
- **random** (the reference, same run): the annotator labels unlabeled tasks in a random order.
  One random order is one draw; the same model in process over `--random-seeds` random orders gives
  the median besides it.
After each round the held-out macro-F1 is measured by calling the service's `/predict` on
held-out texts. The bar is 95% of the full-data F1: the same model (the project's features)
fitted in process on the whole pool. Also: where the stopping suggestion fired (the first
version with `stop_suggested`), and where held-out F1 stopped rising (the first round within
0.01 of the best F1 of the active run, which goes on to --max-labels). Writes a plot (PNG) of the curves.

    python bench/label_efficiency.py [--datasets sms,ag_news] [--pool 3000] [--held-out 1000]
        [--batch 20] [--max-labels 400] [--plot label_efficiency.png] [--random-seeds 12]

Needs ../shared/data (the datasets) and Label Studio's virtualenv (tests/support/label_studio.py ensure-venv).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from learning_curves import DATASETS  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tests.conftest import SMS_CONFIG  # noqa: E402
from tests.support.label_studio import LabelStudioAPIError, LabelStudioServer  # noqa: E402
from tests.support.processes import ManagedProcess, free_port, wait_until  # noqa: E402

AG_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
             '<Choice value="World"/><Choice value="Sports"/><Choice value="Business"/><Choice value="Sci/Tech"/>'
             '</Choices></View>')
AG_NAMES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
CONFIGS = {"sms": SMS_CONFIG, "ag_news": AG_CONFIG}
QUEUE = "Active learning queue"
FEATURES = "tfidf+glove"  # what a new project gets (ALO_DEFAULT_FEATURES)


def dataset(name: str, pool: int, held_out: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(label, text) rows: the pool to label and the held-out set, stratified, fixed seed."""
    texts, y = DATASETS[name]()
    labels = [AG_NAMES.get(str(v), str(v)) for v in y] if name == "ag_news" else [str(v) for v in y]
    index = np.arange(len(texts))
    train, test = train_test_split(index, test_size=0.3, stratify=labels, random_state=0)
    rng = np.random.default_rng(0)
    train, test = rng.permutation(train)[:pool], rng.permutation(test)[:held_out]
    return [(labels[i], texts[i]) for i in train], [(labels[i], texts[i]) for i in test]


def in_process_f1(name: str, rows, held_out) -> float:
    """Held-out macro-F1 of the service's model (same backend and features) fitted in process on `rows`."""
    from backends import Example, backend_for

    backend = backend_for(CONFIGS[name], features=FEATURES)
    probabilities = backend.fit([Example(text, (label,)) for label, text in rows]).predict_proba(
        [text for _, text in held_out])
    predicted = [backend.labels[i] for i in probabilities.argmax(axis=1)]
    return float(f1_score([label for label, _ in held_out], predicted, average="macro"))


def full_data_f1(name: str, pool, held_out) -> float:
    """The bar's reference: the service's model fitted on the whole pool."""
    return in_process_f1(name, pool, held_out)


def random_in_process(name: str, pool, held_out, batch: int, max_labels: int, bar: float,
                      seeds: int) -> list[int | None]:
    """Labels to the bar in random order over many seeds, in process: one real-loop random run is one draw,
    and draws differ by 50+ labels. The same model the service trains (a replay of the real loop's random
    picks gives the real loop's F1), rounds of `batch` as the annotator labels them."""
    reached = []
    for seed in range(seeds):
        order = np.random.default_rng(1000 + seed).permutation(len(pool))
        found = None
        for labels in range(batch, max_labels + 1, batch):
            rows = [pool[i] for i in order[:labels]]
            if len({label for label, _ in rows}) < 2:  # the service waits for a second class too
                continue
            if in_process_f1(name, rows, held_out) >= bar:
                found = labels
                break
        reached.append(found)
    return reached


class Service:
    """`manage.py serve` (web, worker and beat on the embedded defaults), pointed at Label Studio."""

    def __init__(self, data_dir: Path, ls: LabelStudioServer) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MLFLOW_TRACKING_URI",
                                 "MLFLOW_ARTIFACT_ROOT"}}
        self.env.update({"ALO_DATA_DIR": str(data_dir), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token,
                         "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess([sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)],
                                      log_path=data_dir / "serve.log", env=self.env, cwd=ROOT)

    def start(self) -> Service:
        import subprocess

        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=self.env,
                       cwd=ROOT, check=True, timeout=300)
        self.process.start()
        wait_until(lambda: self._healthy(), timeout=90, interval=0.5, what="the service's /health")
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=1).ok
        except requests.RequestException:
            return False

    def rows(self, sql: str, *args) -> list[tuple]:
        conn = sqlite3.connect(self.data_dir / "orchestrator.sqlite3", timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def settled(self, pid: int, labels: int) -> dict | None:
        """The version trained on `labels` annotations once it serves and its push completed."""
        found = self.rows(
            "SELECT v.id, v.version, v.stop_kappa, v.stop_suggested, v.metrics FROM learning_modelversion v "
            "JOIN learning_project p ON p.id = v.project_id "
            "WHERE p.ls_project_id = ? AND v.num_annotations = ? AND v.status = 'serving'", pid, labels)
        if not found:
            return None
        pk, version, kappa, suggested, _ = found[-1]
        pushed = self.rows("SELECT 1 FROM learning_scoringrun WHERE model_version_id = ? AND mode = 'full' "
                           "AND status = 'succeeded'", pk)
        return {"version": version, "kappa": kappa, "stop": bool(suggested)} if pushed else None

    def cold_start_pushed(self, pid: int) -> bool:
        return bool(self.rows("SELECT 1 FROM learning_scoringrun r JOIN learning_project p ON p.id = r.project_id "
                              "WHERE p.ls_project_id = ? AND r.tag = 'cold-start' AND r.status = 'succeeded'", pid))

    def predict_f1(self, pid: int, config: str, held_out) -> float:
        predicted = []
        for start in range(0, len(held_out), 500):
            chunk = held_out[start:start + 500]
            answer = requests.post(f"{self.url}/predict", timeout=120, json={
                "project": f"{pid}.0", "label_config": config,
                "tasks": [{"id": 10_000_000 + start + i, "data": {"text": text}} for i, (_, text) in enumerate(chunk)],
            })
            answer.raise_for_status()
            for result in answer.json()["results"]:
                choices = result["result"][0]["value"]["choices"] if result["result"] else [""]
                predicted.append(choices[0])
        return float(f1_score([label for label, _ in held_out], predicted, average="macro"))


def each_size(prefix: str, sizes: str, measure) -> list[tuple[str, str]]:
    """One Label Studio, and a fresh `manage.py serve` per project size: `measure(ls, service, size)`'s
    rows for each size (printed as they come), everything stopped at the end."""
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        ls = LabelStudioServer(Path(tmp) / "label-studio")
        ls.start()
        try:
            for size in [int(s) for s in sizes.split(",") if s]:
                service = Service(Path(tmp) / f"service-{size}", ls).start()
                try:
                    rows = measure(ls, service, size)
                    results += rows
                    print(*rows, sep="\n", flush=True)
                finally:
                    service.process.stop()
        finally:
            ls.stop()
    return results


def new_project(ls, service: Service, title: str, config: str, pool, batch: int) -> tuple[int, dict[int, str]]:
    pid = ls.api("POST", "/api/projects", json={"title": title, "label_config": config})["id"]
    ls.api("POST", f"/api/projects/{pid}/import", timeout=600, json=[{"text": text} for _, text in pool])
    truth, page = {}, 1
    while len(truth) < len(pool):
        tasks = ls.api("GET", "/api/tasks", params={"project": pid, "page": page, "page_size": 1000,
                                                    "fields": "all"})["tasks"]
        truth.update({t["id"]: t["data"]["text"] for t in tasks})
        page += 1
    by_text = {}
    for label, text in pool:
        by_text.setdefault(text, label)
    training = {"min_annotations": 10, "retrain_every": batch, "quiet_seconds": 3}
    ls.api("POST", "/api/ml", json={"project": pid, "url": service.url, "title": "AL orchestrator",
                                    "extra_params": {"training": training}})
    return pid, {task: by_text[text] for task, text in truth.items()}


def annotate(ls, task: int, label: str, attempts: int = 6) -> None:
    """Save one annotation as a person would: on a 5xx (Label Studio's SQLite busy while the service
    imports predictions), look whether it landed and try again a little later."""
    for attempt in range(attempts):
        try:
            ls.api("POST", f"/api/tasks/{task}/annotations", json={
                "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                            "value": {"choices": [label]}}],
                "was_cancelled": False})
            return
        except LabelStudioAPIError as exc:
            if exc.status < 500 or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            if ls.api("GET", f"/api/tasks/{task}")["total_annotations"]:
                return


def queue_head(ls, pid: int, n: int) -> list[int]:
    views = [v for v in ls.api("GET", "/api/dm/views", params={"project": pid}) if v["data"].get("title") == QUEUE]
    tasks = ls.api("GET", "/api/tasks", params={"project": pid, "view": views[0]["id"], "page": 1, "page_size": n,
                                                "fields": "all"})["tasks"]
    return [t["id"] for t in tasks if t["total_annotations"] == 0]


def run_project(ls, service: Service, name: str, order: str, pool, held_out, batch: int, max_labels: int,
                bar: float) -> list[dict]:
    """Rounds of `batch` labels: random until held-out F1 reaches the bar (or max_labels); active learning to
    max_labels, so where F1 stops rising is judged on the whole curve, not on one cut where the rule fired."""
    config = CONFIGS[name]
    pid, truth = new_project(ls, service, f"{name} {order}", config, pool, batch)
    wait_until(lambda: service.cold_start_pushed(pid), timeout=300, interval=0.5, what="the cold start's push")
    rng = np.random.default_rng(1)
    unlabeled = list(truth)
    points, labeled, started = [], 0, time.monotonic()
    while labeled < max_labels:
        picks = queue_head(ls, pid, batch) if order == "active" else list(rng.choice(unlabeled, size=batch,
                                                                                        replace=False))
        for task in picks:
            annotate(ls, int(task), truth[int(task)])
            unlabeled.remove(int(task))
        labeled += len(picks)
        version = wait_until(lambda: service.settled(pid, labeled), timeout=600, interval=0.5,
                             what=f"the version trained on {labeled} labels to serve and push")
        f1 = service.predict_f1(pid, config, held_out)
        points.append({"labels": labeled, "f1": f1, **version})
        print(f"  {name} {order}: {labeled} labels, F1 {f1:.3f}, kappa {version['kappa']}, "
              f"stop {version['stop']}  ({time.monotonic() - started:.0f} s)", flush=True)
        if f1 >= bar and order == "random":
            break
    return points


def labels_to(points: list[dict], bar: float) -> int | None:
    return next((p["labels"] for p in points if p["f1"] >= bar), None)


def rule_fires(points: list[dict], threshold: float) -> int | None:
    """Where the stopping rule would have fired at another threshold (the service uses 0.99)."""
    from orchestrator.learning.stopping import stop_suggested

    kappas = [p["kappa"] for p in points]
    return next((p["labels"] for i, p in enumerate(points) if stop_suggested(kappas[:i + 1], threshold=threshold)),
                None)


def plateau(points: list[dict], within: float = 0.01) -> int:
    """Where held-out F1 stopped rising: the first round within `within` of the best F1 of the run."""
    best = max(p["f1"] for p in points)
    return next(p["labels"] for p in points if p["f1"] >= best - within)


def plot(curves: dict, bars: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), squeeze=False)
    for ax, (name, runs) in zip(axes[0], curves.items()):
        for order, points in runs.items():
            ax.plot([p["labels"] for p in points], [p["f1"] for p in points], marker="o", markersize=3, label=order)
        ax.axhline(bars[name], color="grey", linestyle="--", linewidth=1, label="95% of full-data F1")
        stop = next((p["labels"] for p in runs["active"] if p["stop"]), None)
        if stop is not None:
            ax.axvline(stop, color="tab:red", linestyle=":", label="stopping suggested")
        ax.set_title(f"{name}: held-out macro-F1 through the real loop")
        ax.set_xlabel("labels")
        ax.set_ylabel("macro-F1")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sms,ag_news")
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--max-labels", type=int, default=400)
    parser.add_argument("--plot", default="label_efficiency.png")
    parser.add_argument("--random-seeds", type=int, default=12,
                        help="random orders measured in process besides the real loop's one")
    args = parser.parse_args()
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    with tempfile.TemporaryDirectory(prefix="alo-bench-efficiency-") as tmp:
        os.environ["ALO_DATA_DIR"] = str(Path(tmp) / "bench")
        django.setup()
        ls = LabelStudioServer(Path(tmp) / "label-studio")
        ls.start()
        service = None
        try:
            service = Service(Path(tmp) / "service", ls).start()
            rows, curves, bars = [], {}, {}

            def shown(value):
                return str(value) if value is not None else f">{args.max_labels}"

            for name in args.datasets.split(","):
                pool, held_out = dataset(name, args.pool, args.held_out)
                full = full_data_f1(name, pool, held_out)
                bars[name] = bar = 0.95 * full
                print(f"{name}: pool {len(pool)}, held out {len(held_out)}, full-data F1 {full:.3f}, bar {bar:.3f}",
                      flush=True)
                curves[name] = {order: run_project(ls, service, name, order, pool, held_out, args.batch,
                                                   args.max_labels, bar) for order in ("active", "random")}
                active, random = (labels_to(curves[name][o], bar) for o in ("active", "random"))
                stop = next((p["labels"] for p in curves[name]["active"] if p["stop"]), None)
                flat = plateau(curves[name]["active"])
                ratio = (f"{(random or args.max_labels) / active:.1f}x{'+' if random is None else ''}"
                         if active else "-")
                draws = random_in_process(name, pool, held_out, args.batch, args.max_labels, bar, args.random_seeds)
                capped = [d if d is not None else args.max_labels for d in draws]
                median = float(np.median(capped))
                spread = f"{median:.0f} ({min(capped)}-{max(capped)}{'+' if None in draws else ''})"
                rows.append((name, f"{full:.3f}", shown(random), shown(active), ratio, spread,
                             f"{median / active:.1f}x" if active else "-", shown(stop), str(flat),
                             str(abs(stop - flat)) if stop is not None else "-"))
            header = ("data", "full-data F1", "random -> 95%", "active -> 95%", "random / active",
                      f"random in process, {args.random_seeds} seeds: median (range)", "median / active",
                      "stop suggested at", "F1 stops rising at", "|stop - plateau|")
            print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
            for row in rows:
                print("| " + " | ".join(row) + " |")
            print(f"\nlabels in rounds of {args.batch}; '+' after a ratio: random missed the bar within "
                  f"{args.max_labels} labels (the ratio is a floor)")
            print("the same rule (mean kappa of the last 3 versions) at other thresholds, from the kappas above:")
            for name, runs in curves.items():
                print(f"  {name}: " + ", ".join(f"{t}: {shown(rule_fires(runs['active'], t))}"
                                                 for t in (0.99, 0.98, 0.97, 0.96, 0.95)))
            plot(curves, bars, Path(args.plot))
            print(f"plot: {args.plot}")
        finally:
            if service is not None:
                service.process.stop()
            ls.stop()


if __name__ == "__main__":
    main()
