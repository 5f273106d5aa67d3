"""Ten rounds of annotation from the queue's head: how long after each round the queue is sorted by a new version.

Starts Label Studio 1.23.2 and `manage.py serve` (what `make run` starts: a worker per queue, the
default policies: a training every 25 annotations). Per project size: imports N SMS texts (past the
collection's 5,574 each text carries a number), connects, waits for the cold start's push, then ten
times takes the 25 tasks at the head of the "Active learning queue" view, annotates them through
Label Studio's API with their true label, and times from the round's last annotation until Label Studio
sorts by a version trained on them (the project's model_version is that version's push) and until the
push completed. The clean-ups of older tags run meanwhile, on their own worker. Reference, measured in
the same run: one bulk import of N predictions into a twin project (what a push cannot be faster than).

    python bench/rounds.py [--sizes 1500,20000] [--rounds 10] [--batch 25]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from label_efficiency import Service, annotate, each_size, queue_head  # noqa: E402
from stack import print_table  # noqa: E402
from tests.conftest import SMS_CONFIG  # noqa: E402
from tests.support.label_studio import LabelStudioServer  # noqa: E402
from tests.support.processes import wait_until  # noqa: E402
from webhooks import rows as sms_rows  # noqa: E402


def task_ids(ls: LabelStudioServer, pid: int) -> list[int]:
    """Every task id of a project, in order (keyset pages of 5,000)."""
    ids: list[int] = []
    while True:
        query = json.dumps({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": ids[-1] if ids else 0}]},
            "ordering": ["tasks:id"]})
        page = ls.api("GET", "/api/tasks", params={"project": pid, "page": 1, "page_size": 5000, "query": query,
                                                   "include": "id"})["tasks"]
        if not page:
            return ids
        ids += [t["id"] for t in page]


def project(ls: LabelStudioServer, service: Service, n: int) -> tuple[int, dict[int, str]]:
    rows = sms_rows(n)
    pid = ls.api("POST", "/api/projects", json={"title": f"rounds-{n}", "label_config": SMS_CONFIG})["id"]
    for start in range(0, n, 5000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=900,
               json=[{"text": text} for _, text in rows[start:start + 5000]])
    truth = {task: label for task, (label, _) in zip(task_ids(ls, pid), rows)}  # ids follow the import's order
    ls.api("POST", "/api/ml", json={"project": pid, "url": service.url, "title": "AL orchestrator"})
    return pid, truth


def import_reference(ls: LabelStudioServer, n: int) -> float:
    """Seconds Label Studio takes to import N predictions in one request into a twin project."""
    pid = ls.api("POST", "/api/projects", json={"title": f"reference-{n}", "label_config": SMS_CONFIG})["id"]
    for start in range(0, n, 5000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=900,
               json=[{"text": f"twin {i}"} for i in range(start, min(n, start + 5000))])
    ids = task_ids(ls, pid)
    started = time.perf_counter()
    ls.api("POST", f"/api/projects/{pid}/import/predictions", timeout=1800, json=[
        {"task": i, "score": 0.5, "model_version": "reference", "result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ham"]}}]} for i in ids])
    return time.perf_counter() - started


def rounds(ls: LabelStudioServer, service: Service, n: int, count: int, batch: int) -> list[tuple[str, str]]:
    pid, truth = project(ls, service, n)
    wait_until(lambda: service.cold_start_pushed(pid), timeout=1800, interval=0.5, what="the cold start's push")
    switched, completed, labeled = [], [], 0
    for number in range(1, count + 1):
        picks = queue_head(ls, pid, batch)
        for task in picks:
            annotate(ls, task, truth[task])
        last = time.perf_counter()
        labeled += len(picks)

        def sorted_by_new() -> str | None:
            found = service.rows("SELECT v.version FROM learning_modelversion v JOIN learning_project p "
                                 "ON p.id = v.project_id WHERE p.ls_project_id = ? AND v.num_annotations = ? "
                                 "AND v.status = 'serving'", pid, labeled)
            if found and ls.api("GET", f"/api/projects/{pid}")["model_version"] == found[0][0]:
                return found[0][0]
            return None

        version = wait_until(sorted_by_new, timeout=1800, interval=0.25, what=f"round {number}'s version to sort")
        switched.append(time.perf_counter() - last)
        wait_until(lambda: service.settled(pid, labeled), timeout=1800, interval=0.5, what=f"round {number}'s push")
        completed.append(time.perf_counter() - last)
        print(f"  {n:,} tasks, round {number}: {labeled} labels, {version} sorts the queue after "
              f"{switched[-1]:.1f} s, push complete after {completed[-1]:.1f} s", flush=True)
    median = statistics.median(switched)
    reference = import_reference(ls, n)
    return [
        (f"{n:,} tasks: round -> queue sorted by its version (s)", ", ".join(f"{s:.0f}" for s in switched)),
        (f"{n:,} tasks: median, slowest / median", f"{median:.1f} s, {max(switched) / median:.2f}x"),
        (f"{n:,} tasks: round -> push complete (s)", ", ".join(f"{s:.0f}" for s in completed)),
        (f"{n:,} tasks: reference: Label Studio imports {n:,} predictions",
         f"{reference:.1f} s (median round = {median / reference:.2f}x)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1500,20000")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = each_size("alo-bench-rounds-", args.sizes, lambda ls, service, size: rounds(ls, service, size, args.rounds, args.batch))
    print_table(results)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    main()
