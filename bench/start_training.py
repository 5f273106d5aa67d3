"""Start Training on a real-size project: from the press to the new version serving, against Label Studio's own export.

Starts Label Studio 1.23.2 and `manage.py serve` (what `make run` starts: the embedded defaults, a
worker per queue), imports N annotated 4-topic news texts (AG News; past its 7,600 texts each text
is joined with another one of the same topic) and 2,000 unlabeled ones, connects the project (the annotation store reads it
whole then), and presses Start Training. Prints the seconds to the new version serving with the
run's phases, the first push's queue switch, the model artefact's size, the training worker's peak
RSS, and as reference Label Studio's own JSON export of the same project, timed in the same run.

    python bench/start_training.py [--sizes 10000,50000]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from label_efficiency import Service, each_size  # noqa: E402
from stack import print_table  # noqa: E402
from tests.support.label_studio import LabelStudioServer  # noqa: E402
from tests.support.processes import wait_until  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="topic" toName="text">'
          '<Choice value="World"/><Choice value="Sports"/><Choice value="Business"/><Choice value="Sci/Tech"/>'
          '</Choices></View>')
TOPICS = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


def news(n: int) -> list[tuple[str, str]]:
    with (SHARED / "ag_news_test.csv").open(encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        base = [(TOPICS[r[0]], f"{r[1]}. {r[2]}") for r in reader]
    by_topic: dict[str, list[str]] = {}
    for label, text in base:
        by_topic.setdefault(label, []).append(text)
    rng = random.Random(0)
    out = []
    for i in range(n):
        label, text = base[i % len(base)]
        if i >= len(base):
            text = f"{text} {rng.choice(by_topic[label])}"
        out.append((label, text))
    return out


def annotated_project(ls: LabelStudioServer, n: int, unlabeled: int) -> int:
    """N annotated tasks, then `unlabeled` tasks for the new version's push to order."""
    pid = ls.api("POST", "/api/projects", json={"title": f"start-training-{n}", "label_config": CONFIG})["id"]
    rows = news(n + unlabeled)
    for start in range(0, n, 2000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=900, json=[
            {"data": {"text": text}, "annotations": [{"result": [
                {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}
            for label, text in rows[start:min(n, start + 2000)]])
    for start in range(n, n + unlabeled, 2000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=900,
               json=[{"data": {"text": text}} for _, text in rows[start:min(n + unlabeled, start + 2000)]])
    return pid


def export_seconds(ls: LabelStudioServer, pid: int) -> float:
    """Label Studio's own JSON export of the project (every task with its annotations): the reference."""
    started = time.perf_counter()
    answer = requests.get(f"{ls.url}/api/projects/{pid}/export", params={"exportType": "JSON"},
                          headers={"Authorization": f"Token {ls.token}"}, timeout=1800)
    answer.raise_for_status()
    assert len(answer.json()) > 0
    return time.perf_counter() - started


def peak_rss_mb(marker: str) -> float:
    """The largest peak RSS (VmHWM) among processes whose command line holds `marker`."""
    peak = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker not in (proc / "cmdline").read_bytes().decode(errors="replace"):
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def measure(ls: LabelStudioServer, service: Service, n: int, unlabeled: int) -> list[tuple[str, str]]:
    pid = annotated_project(ls, n, unlabeled)
    reference = export_seconds(ls, pid)
    connected = time.perf_counter()
    backend = ls.api("POST", "/api/ml", json={"project": pid, "url": service.url, "title": "AL orchestrator",
                                              "extra_params": {"training": {"auto_train": False}}})
    wait_until(lambda: service.rows("SELECT s.full_reads FROM learning_annotationstorestate s JOIN learning_project p "
                                    "ON p.id = s.project_id WHERE p.ls_project_id = ?", pid) == [(1,)],
               timeout=1800, interval=0.5, what="the annotation store's first read")
    store_read = time.perf_counter() - connected
    pressed = time.perf_counter()
    ls.api("POST", f"/api/ml/{backend['id']}/train", json={})

    def serving():
        found = service.rows("SELECT v.version, v.status, v.id FROM learning_modelversion v JOIN learning_project p "
                             "ON p.id = v.project_id WHERE p.ls_project_id = ? ORDER BY v.id DESC", pid)
        if found and found[0][1] == "failed":
            raise RuntimeError(f"the training failed: {service.rows('SELECT error FROM learning_modelversion')}")
        return found[0] if found and found[0][1] == "serving" else None

    version, _, version_pk = wait_until(serving, timeout=3600, interval=0.2, what="the new version to serve")
    served = time.perf_counter() - pressed
    wait_until(lambda: service.rows("SELECT switched_at FROM learning_scoringrun WHERE model_version_id = ? "
                                    "AND switched_at IS NOT NULL", version_pk), timeout=1800, interval=0.5,
               what="the new version's push to switch the queue")
    switched = time.perf_counter() - pressed
    (timings,), = service.rows("SELECT timings FROM learning_trainingrun r JOIN learning_project p "
                               "ON p.id = r.project_id WHERE p.ls_project_id = ? ORDER BY r.id DESC LIMIT 1", pid)
    timings = json.loads(timings)
    artefact = sum(f.stat().st_size for f in (service.data_dir / "mlartifacts").glob(
        f"*/{_run_of(service, version_pk)}/artifacts/model/*") if f.is_file())
    phases = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    return [
        (f"{n:,}: Label Studio's JSON export (reference)", f"{reference:.1f} s"),
        (f"{n:,}: annotation store's whole read (at connect)", f"{store_read:.1f} s ({store_read / reference:.2f}x the export)"),
        (f"{n:,}: Start Training -> {version} serving", f"{served:.1f} s ({served / reference:.2f}x the export)"),
        (f"{n:,}: the run's phases (s)", phases),
        (f"{n:,}: Start Training -> the queue sorted by it", f"{switched:.1f} s"),
        (f"{n:,}: model artefact", f"{artefact / 1e6:.1f} MB"),
        (f"{n:,}: training worker's peak RSS", f"{peak_rss_mb('training,celery'):.0f} MB"),
    ]


def _run_of(service: Service, version_pk: int) -> str:
    (run_id,), = service.rows("SELECT mlflow_run_id FROM learning_modelversion WHERE id = ?", version_pk)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--unlabeled", type=int, default=2000, help="tasks without annotations beside them")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or a kill: the finally blocks stop the servers
    results = each_size("alo-bench-start-training-", args.sizes, lambda ls, service, size: measure(ls, service, size, args.unlabeled))
    print_table(results)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    main()
