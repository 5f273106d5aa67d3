"""Annotators' submits while old predictions are deleted: the service's clean-up against Label Studio's own deletion.

Starts Label Studio 1.23.2 (as installed: SQLite) and `manage.py serve` (what `make run` starts: the
clean-up runs on the housekeeping queue's own worker). Per project size N (SMS texts):
1. a model trained from the SMS sample, then two pushes (`manage.py score_project`): the first tag's N
   predictions are stale once the second completes, and the service's clean-up deletes them;
2. idle: an annotator's submits (one `POST /api/tasks/{id}/annotations` after another, 0.2 s apart),
   each timed, with nothing else running;
3. the same submits while the service's clean-up deletes the first tag, until it is gone;
4. reference, same run: N predictions of another tag imported, then deleted by Label Studio's own
   deletion of a model version (`DELETE /api/projects/{id}/model-versions/`, one request), the same
   submits meanwhile.
Prints submit p50/p95/max and failures for each, the ratio of each p95 to the idle one (target for
the clean-up: <= 1.2x, no failed submit) and both deletion rates.

    python bench/cleanup_submits.py [--sizes 10000] [--submits 60]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from label_efficiency import Service, each_size  # noqa: E402
from rounds import task_ids  # noqa: E402
from stack import print_table  # noqa: E402
from tests.conftest import SMS_CONFIG, SMS_SAMPLE  # noqa: E402
from tests.support.label_studio import LabelStudioAPIError, LabelStudioServer  # noqa: E402
from webhooks import rows as sms_rows  # noqa: E402

PAUSE = 0.2  # seconds between an annotator's submits


class Annotator:
    """Submits annotations one after another on the given tasks, timing each, until stopped or out of tasks."""

    def __init__(self, ls: LabelStudioServer, tasks: list[int]) -> None:
        self.ls, self.tasks = ls, list(tasks)
        self.seconds: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self, count: int | None = None) -> None:
        while self.tasks and not self.stop.is_set() and (count is None or len(self.seconds) < count):
            task = self.tasks.pop(0)
            started = time.perf_counter()
            try:
                self.ls.api("POST", f"/api/tasks/{task}/annotations", timeout=60, json={
                    "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                "value": {"choices": ["ham"]}}], "was_cancelled": False})
            except (LabelStudioAPIError, OSError) as exc:
                self.failures.append(str(exc)[:200])
            self.seconds.append(time.perf_counter() - started)
            time.sleep(PAUSE)

    def during(self, done) -> float:
        """Submit until `done()` is true (checked each second); the seconds it took."""
        thread = threading.Thread(target=self.run)
        started = time.perf_counter()
        thread.start()
        while not done():
            if not thread.is_alive():
                raise SystemExit("the annotator ran out of tasks before the deletion ended")
            time.sleep(1.0)
        elapsed = time.perf_counter() - started
        self.stop.set()
        thread.join()
        return elapsed

    def summary(self, idle_p95: float | None = None) -> str:
        ordered = sorted(self.seconds)
        p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
        ratio = f" = {p95 / idle_p95:.2f}x idle" if idle_p95 else ""
        return (f"{len(ordered)} submits: p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
                f"{ratio}, max {ordered[-1] * 1000:.0f} ms; failed {len(self.failures)}"
                + (f" ({self.failures[0]})" if self.failures else ""))

    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def manage(service: Service, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=service.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def versions(ls: LabelStudioServer, pid: int) -> dict[str, int]:
    return ls.api("GET", f"/api/projects/{pid}/model-versions/")


def measure(ls: LabelStudioServer, service: Service, n: int, submits: int) -> list[tuple[str, str]]:
    rows = sms_rows(n)
    pid = ls.api("POST", "/api/projects", json={"title": f"cleanup-{n}", "label_config": SMS_CONFIG})["id"]
    for start in range(0, n, 5000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=900,
               json=[{"text": text} for _, text in rows[start:start + 5000]])
    ids = task_ids(ls, pid)
    ls.api("POST", "/api/ml", json={"project": pid, "url": service.url, "title": "AL orchestrator", "extra_params": {
        "training": {"auto_train": False}, "scoring": {"auto_push": False}}})
    manage(service, "train_project", "--project", str(pid), "--from-file", str(SMS_SAMPLE))
    manage(service, "score_project", "--project", str(pid))
    (first,) = [tag for tag in versions(ls, pid) if tag.startswith(f"p{pid}-")]
    # The annotators work from the end of the project; every submit takes one unlabeled task.
    spare = list(reversed(ids))
    idle = Annotator(ls, spare[:submits])
    idle.run(submits)
    idle_p95 = idle.p95()

    manage(service, "score_project", "--project", str(pid))  # the second tag: the first is stale now
    ours = Annotator(ls, spare[submits:])
    stale = versions(ls, pid).get(first, 0)
    ours_seconds = ours.during(lambda: first not in versions(ls, pid))

    # Label Studio's own deletion of a version: n predictions of a tag of their own, one request.
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ham"]}}]
    for start in range(0, n, 5000):
        ls.api("POST", f"/api/projects/{pid}/import/predictions", timeout=900, json=[
            {"task": task, "result": result, "score": 0.5, "model_version": "bench-reference"}
            for task in ids[start:start + 5000]])
    reference_count = versions(ls, pid).get("bench-reference", 0)
    theirs = Annotator(ls, spare[submits + len(ours.seconds):])
    deleted: dict[str, float] = {}

    def delete_version() -> None:
        started = time.perf_counter()
        ls.api("DELETE", f"/api/projects/{pid}/model-versions/", json={"model_version": "bench-reference"},
               timeout=3600)
        deleted["seconds"] = time.perf_counter() - started

    deleter = threading.Thread(target=delete_version)
    deleter.start()
    theirs.during(lambda: not deleter.is_alive())
    deleter.join()
    return [
        (f"{n:,} tasks: submits idle", idle.summary()),
        (f"{n:,} tasks: submits during the service's clean-up", ours.summary(idle_p95) + " (target <= 1.2x, 0 failed)"),
        (f"{n:,} tasks: the service's clean-up", f"{stale:,} predictions in {ours_seconds:.0f} s = "
                                                 f"{stale / ours_seconds:.0f}/s (DELETE /api/predictions/{{id}}, "
                                                 "time checked before each, on the housekeeping worker)"),
        (f"{n:,} tasks: submits during Label Studio's version deletion (reference)", theirs.summary(idle_p95)),
        (f"{n:,} tasks: Label Studio's version deletion (reference)",
         f"{reference_count:,} predictions in {deleted['seconds']:.0f} s = "
         f"{reference_count / deleted['seconds']:.0f}/s (one request, one transaction)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--submits", type=int, default=60, help="idle submits (the p95's sample)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = each_size("alo-bench-cleanup-", args.sizes, lambda ls, service, size: measure(ls, service, size,
                                                                                           args.submits))
    print_table(results)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    main()
