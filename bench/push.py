"""Benchmark the push loop against a real Label Studio 1.23.2, with its own rates as the reference.

Starts Label Studio, Redis, the service and a Celery worker on loopback (the test suite's
helpers). For each project size N (default 20k and 100k tasks of real SMS texts):
1. trains a model (manage.py train_project from the SMS sample) with automatic pushes off;
2. reference, same run: Label Studio's bulk import rate, pushing N predictions 1,000 per
   request straight to `/import/predictions` of a twin project of the same N tasks;
3. reads the project's tasks into the service's task mirror (`manage.py sync_tasks`, what a
   connected project's first push does), timed on its own;
4. scores and pushes every task with `manage.py score_project` (the job a worker runs, in a
   process of its own: its peak RSS is the worker's), reading the run's phase timings: as every
   push after a project's first, it reads its tasks from the mirror, asking Label Studio only
   what changed and which tasks are labeled.
Then the loop latency on a 10k-task project: from the annotation that triggers a training
to the queue's head sorted by the new version (the project's model_version switched after
the push's first, most informative chunk), and to the whole push complete.

`--label-studio tuned` starts Label Studio with its memory-efficient prediction import switched on
(an environment variable of Label Studio's, MEMORY_EFFICIENT_IMPORT): each import then recomputes the
counters of the tasks it touches instead of every task of the project. The README recommends
it for large projects; the default measures Label Studio as installed.

Run: `python bench/push.py [--sizes 20000,100000] [--chunk 5000] [--latency-size 10000] [--reference-max 20000]
[--label-studio default|tuned]`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SMS_CONFIG, SMS_POOL, SMS_SAMPLE, sms_rows  # noqa: E402
from tests.support.label_studio import MEMORY_EFFICIENT_IMPORT, LabelStudioAPIError  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from stack import print_table, running_stack  # noqa: E402

LABEL_STUDIO_SETUPS = {"default": {}, "tuned": {MEMORY_EFFICIENT_IMPORT: "true"}}


def texts(n: int) -> list[tuple[str, str]]:
    pool = sms_rows(path=SMS_POOL)
    return [(label, text if i < len(pool) else f"{text} [{i // len(pool)}]")
            for i, (label, text) in enumerate((pool * (n // len(pool) + 1))[:n])]


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except LabelStudioAPIError as exc:  # e.g. SQLite busy under a long deletion: ask again
            if exc.status < 500:
                raise
            value = None
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def make_project(ls, loop, title: str, rows, *, training: dict, scoring: dict) -> tuple[int, list[int], dict]:
    project = ls.api("POST", "/api/projects", json={"title": title, "label_config": SMS_CONFIG})
    pid = project["id"]
    for start in range(0, len(rows), 5000):
        ls.api("POST", f"/api/projects/{pid}/import", timeout=600,
               json=[{"text": text, "truth": label} for label, text in rows[start:start + 5000]])
    ids: list[int] = []
    while len(ids) < len(rows):
        ids += [t["id"] for t in ls.api("GET", "/api/tasks", params={
            "project": pid, "page": len(ids) // 5000 + 1, "page_size": 5000, "include": "id"})["tasks"]]
    backend = ls.api("POST", "/api/ml", json={"project": pid, "url": loop.service.url, "title": "AL orchestrator",
                                              "extra_params": {"training": training, "scoring": scoring}})
    return pid, sorted(ids), backend


def bulk_import_rate(ls, pid: int, ids: list[int], chunk: int, count: int) -> tuple[float, float]:
    """Label Studio's own rate for `count` predictions, `chunk` per request; and its slowest request."""
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ham"]}}]
    started, slowest = time.perf_counter(), 0.0
    for start in range(0, count, chunk):
        t0 = time.perf_counter()
        ls.api("POST", f"/api/projects/{pid}/import/predictions", timeout=600, json=[
            {"task": i, "result": result, "score": 0.5, "model_version": "bench-reference"}
            for i in ids[start:start + chunk]])
        slowest = max(slowest, time.perf_counter() - t0)
    return count / (time.perf_counter() - started), slowest


def listing_rate(ls, pid: int, page: int = 2000) -> float:
    """Label Studio's own rate for listing a project's unlabeled tasks (id and data), the read a
    push cannot skip: the service's query (keyset pages of `page`, a `total_annotations = 0` filter)."""
    unlabeled = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
    after, count, started = 0, 0, time.perf_counter()
    while True:
        query = {"filters": {"conjunction": "and", "items": [unlabeled, {
            "filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after}]},
            "ordering": ["tasks:id"]}
        tasks = ls.api("GET", "/api/tasks", timeout=600, params={
            "project": pid, "page": 1, "page_size": page, "include": "id,data", "query": json.dumps(query)})["tasks"]
        if not tasks:
            return count / (time.perf_counter() - started)
        count += len(tasks)
        after = max(t["id"] for t in tasks)


def run_measured(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and output of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output[-3000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, output


def last_run(loop, pid: int) -> dict:
    columns = ("id", "tag", "status", "done", "total", "timings")
    row = loop.rows("SELECT r.id, r.tag, r.status, r.done, r.total, r.timings FROM learning_scoringrun r "
                    f"JOIN learning_project p ON p.id = r.project_id WHERE p.ls_project_id = {pid} "
                    "ORDER BY r.id DESC LIMIT 1")[0]
    out = dict(zip(columns, row))
    out["timings"] = json.loads(out["timings"]) if isinstance(out["timings"], str) else out["timings"]
    return out


def push_size(ls, loop, n: int, chunk: int, reference_max: int) -> list[tuple[str, str]]:
    rows = texts(n)
    # The reference: Label Studio's bulk import of n predictions, 1,000 per request (its own batch),
    # into a twin project of the same n tasks, so both pushes meet the same per-request costs.
    # Both projects exist before either push, so both meet a database of the same size.
    twin, twin_ids, _ = make_project(ls, loop, f"reference-{n}", rows, training={"auto_train": False},
                                     scoring={"auto_push": False})
    pid, ids, _ = make_project(ls, loop, f"push-{n}", rows, training={"auto_train": False},
                               scoring={"auto_push": False, "chunk_size": chunk})
    listing = listing_rate(ls, twin)
    reference_count = min(n, reference_max)  # Label Studio's rate at this project size, on a sample
    reference, reference_slowest = bulk_import_rate(ls, twin, twin_ids, 1000, reference_count)
    loop.service.manage("train_project", "--project", str(pid), "--from-file", str(SMS_SAMPLE))
    # The task mirror's whole read, once per project (a connected project's first push does it): timed
    # on its own, so the push below reads its tasks from the service's database as every later push does.
    t0 = time.perf_counter()
    mirrored = loop.service.manage("sync_tasks", "--project", str(pid))
    mirror_seconds = time.perf_counter() - t0
    assert f"the mirror holds {n} tasks" in mirrored, mirrored
    seconds, rss, _ = run_measured([sys.executable, str(ROOT / "manage.py"), "score_project", "--project", str(pid)],
                                   loop.service.env)
    run = last_run(loop, pid)
    versions = ls.api("GET", f"/api/projects/{pid}/model-versions/")
    assert run["status"] == "succeeded" and versions.get(run["tag"]) == n, (run, versions)
    assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == run["tag"]
    t = run["timings"]
    (job,) = loop.rows("SELECT (julianday(finished_at) - julianday(started_at)) * 86400 FROM learning_scoringrun "
                       f"WHERE id = {run['id']}")[0]
    end_to_end = n / job  # the job as a worker runs it: model load, mirror check, read, score, push, switch
    return [
        (f"{n:,} tasks: Label Studio bulk import (reference)",
         f"{reference:.0f} predictions/s ({reference_count:,} in requests of 1,000 into a twin project of {n:,}; "
         f"slowest {reference_slowest:.1f} s)"),
        (f"{n:,} tasks: Label Studio listing (reference)",
         f"{listing:.0f} tasks/s (unlabeled tasks, id and data, keyset pages of 2,000, the twin project)"),
        (f"{n:,} tasks: the task mirror's whole read (once per project)",
         f"{mirror_seconds:.1f} s = {n / mirror_seconds:.0f} tasks/s ({n / mirror_seconds / listing:.2f}x Label "
         "Studio's listing; manage.py sync_tasks with its start)"),
        (f"{n:,} tasks: scoring alone", f"{n / t['score']:,.0f} tasks/s ({t['score']:.1f} s: texts, predict, priorities)"),
        (f"{n:,} tasks: end to end", f"{end_to_end:.0f} tasks/s in {job:.0f} s = {end_to_end / reference:.2f}x "
                                     "the bulk import rate (target >= 0.80; the scoring process: "
                                     f"{seconds:.0f} s with its start)"),
        (f"{n:,} tasks: phases", phases(t)),
        (f"{n:,} tasks: slowest call to Label Studio", f"{t.get('slowest_call', 0):.1f} s (target <= 30)"),
        (f"{n:,} tasks: peak RSS of the scoring process", f"{rss:.0f} MB (target <= 500)"),
    ]


def loop_latency(ls, loop, n: int) -> list[tuple[str, str]]:
    rows = texts(n)
    pid, ids, backend = make_project(ls, loop, f"latency-{n}", rows,
                                     training={"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 2},
                                     scoring={"chunk_size": 5000})
    truth = dict(zip(ids, (label for label, _ in rows)))
    seed = [i for i in ids if truth[i] == "spam"][:10] + [i for i in ids if truth[i] == "ham"][:20]

    def annotate(task_id: int) -> None:
        ls.api("POST", f"/api/tasks/{task_id}/annotations", json={"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [truth[task_id]]}}]})

    for task_id in seed:
        annotate(task_id)

    def switched_from(old):
        current = ls.api("GET", f"/api/projects/{pid}")["model_version"]
        return current if current and current != old and current.startswith(f"p{pid}-") else None

    first = wait(lambda: switched_from("AL orchestrator"), 900, "the first push", interval=1)
    wait(lambda: last_run(loop, pid)["status"] == "succeeded", 900, "the first push to complete", interval=1)
    # The first version's push replaced the cold start's order: Label Studio deletes that tag
    # (~125 predictions/s). A training meeting the deletion reads slowly; the latency below is
    # measured on a quiet Label Studio, as every later push's clean-up is waited for too.
    t_clean = time.perf_counter()
    wait(lambda: set(ls.api("GET", f"/api/projects/{pid}/model-versions/")) == {first}, 1800,
         "the cold start's predictions to be deleted", interval=1)
    cold_cleanup = time.perf_counter() - t_clean
    # The annotation that triggers the next training, to the queue re-sorted by the new version:
    # Label Studio sorts by it once the project's model_version is the new tag (after the first chunk).
    t0 = time.perf_counter()
    annotate(next(i for i in ids if i not in seed))
    tag = wait(lambda: switched_from(first), 900, "the re-sorted queue", interval=0.25)
    head_latency = time.perf_counter() - t0
    view = next(v for v in ls.api("GET", "/api/dm/views", params={"project": pid})
                if v["data"].get("title") == "Active learning queue")
    head = ls.api("GET", "/api/tasks", params={"view": view["id"], "page_size": 50, "fields": "all"})["tasks"]
    scores = [t["predictions_score"] for t in head]
    assert all(s is not None for s in scores) and scores == sorted(scores), scores
    assert all(any(p["model_version"] == tag for p in t["predictions"]) for t in head)
    wait(lambda: (r := last_run(loop, pid))["tag"] == tag and r["status"] == "succeeded", 900,
         "the whole push", interval=0.5)
    complete = time.perf_counter() - t0
    run = last_run(loop, pid)
    # The previous tag's clean-up keeps Label Studio busy (~125 deletions/s) after the push:
    # let it finish, so the next measures do not meet it.
    wait(lambda: set(ls.api("GET", f"/api/projects/{pid}/model-versions/")) == {tag}, 900,
         "the previous tag's deletion", interval=2)
    (training,) = loop.rows(
        "SELECT (julianday(t.finished_at) - julianday(t.started_at)) * 86400 FROM learning_trainingrun t "
        f"JOIN learning_project p ON p.id = t.project_id WHERE p.ls_project_id = {pid} ORDER BY t.id DESC LIMIT 1")[0]
    (to_switch,) = loop.rows(
        f"SELECT (julianday(switched_at) - julianday(started_at)) * 86400 FROM learning_scoringrun WHERE id = {run['id']}"
    )[0]
    return [
        (f"loop latency, {n:,} tasks: queue head re-sorted",
         f"{head_latency:.1f} s from the annotation to Label Studio sorting by the new version (target <= 60; "
         f"quiet period 2 s); its first 50 tasks all scored by it, ascending"),
        ("  of which", f"training {training:.1f} s; push start -> switch {to_switch:.1f} s"),
        (f"loop latency, {n:,} tasks: cold start's tag deleted",
         f"{cold_cleanup:.0f} s after the first version's push completed (Label Studio's deletion, waited for)"),
        (f"loop latency, {n:,} tasks: whole push", f"{complete:.1f} s until all {run['done']:,} tasks carry it "
                                                   f"(push phases: {phases(run['timings'])})"),
    ]


def phases(timings: dict) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(timings.items()) if k != "slowest_call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--chunk", type=int, default=5000, help="the scoring policy's chunk_size (largest request)")
    parser.add_argument("--latency-size", type=int, default=10_000, help="0 to skip the loop latency")
    parser.add_argument("--reference-max", type=int, default=20_000,
                        help="predictions imported for Label Studio's reference rate (at most the project size)")
    parser.add_argument("--label-studio", choices=sorted(LABEL_STUDIO_SETUPS), default="default",
                        help="Label Studio as installed, or with its memory-efficient prediction import")
    args = parser.parse_args()
    results: list[tuple[str, str]] = [("Label Studio setup", args.label_studio)]
    with running_stack("push", label_studio_env=LABEL_STUDIO_SETUPS[args.label_studio]) as (ls, loop):
        if args.latency_size:
            results += loop_latency(ls, loop, args.latency_size)
            print(*results, sep="\n", flush=True)
        for size in [int(s) for s in args.sizes.split(",") if s]:
            results += push_size(ls, loop, size, args.chunk, args.reference_max)
            print(*results[-8:], sep="\n", flush=True)
    print_table(results)

if __name__ == "__main__":
    main()
