"""Benchmark the training loop: a burst of webhook events against a running service.

Starts a real Label Studio 1.23.2, Redis, the service (gunicorn) and a Celery worker, all
on loopback, with the test suite's process helpers; once with the service on SQLite (the
embedded default) and once on PostgreSQL (as docker-compose deploys it). Then:
1. imports N annotated tasks (real SMS texts) into a Label Studio project connected to the
   service, and sends N ANNOTATION_CREATED webhooks (8 concurrent senders), as Label
   Studio would for N annotations;
2. reports webhook ack latency, how many trainings the burst started, and the time from
   the last event until the new version serves (/setup reports it); then again with a
   policy that trains only after the burst, to separate the ack path from a training
   competing for the same two cores;
3. measures training time (read from Label Studio + fit + cross-validate + MLflow) for
   1k and 10k annotations, through Start Training (on the first database).

Run: `python bench/webhooks.py [--events 1000] [--sizes 1000,10000] [--databases sqlite,postgresql]`.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SMS_CONFIG, recorded  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
from predict import read_sms  # noqa: E402
from stack import print_table, running_stack  # noqa: E402


def rows(n: int) -> list[tuple[str, str]]:
    sms = read_sms()
    return [(label, text if i < len(sms) else f"{text} [{i // len(sms)}]")
            for i, (label, text) in enumerate((sms * (n // len(sms) + 1))[:n])]


def annotated_project(ls, title: str, n: int, loop, training: dict) -> tuple[dict, list[dict], dict]:
    project = ls.api("POST", "/api/projects", json={"title": title, "label_config": SMS_CONFIG})
    for start in range(0, n, 2000):
        ls.api("POST", f"/api/projects/{project['id']}/import", json=[
            {"data": {"text": text}, "annotations": [{"result": [
                {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}
            for label, text in rows(n)[start:start + 2000]])
    tasks: list[dict] = []
    page = 1
    while len(tasks) < n:  # Label Studio answers 404 past the last page
        tasks += ls.api("GET", "/api/tasks", params={"project": project["id"], "page_size": 1000, "page": page,
                                                    "fields": "all"})["tasks"]
        page += 1
    backend = ls.api("POST", "/api/ml", json={"project": project["id"], "url": loop.service.url, "title": "AL",
                                              "extra_params": {"training": training}})
    return project, tasks, backend


def webhook_body(project: dict, task: dict) -> dict:
    body = copy.deepcopy(recorded("webhook-annotation_created")["body"])
    body["project"].update({"id": project["id"], "label_config": SMS_CONFIG})
    annotation = task["annotations"][0]
    body["task"] = {**body["task"], "id": task["id"], "data": task["data"], "project": project["id"]}
    body["annotation"] = {**body["annotation"], "id": annotation["id"], "task": task["id"], "result": annotation["result"]}
    return body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def burst(ls, loop, events: int, *, quiet: bool = False) -> list[tuple[str, str]]:
    """N webhooks from 8 senders. `quiet`: the policy defers training past the burst, which
    isolates the ack path from a training (and Label Studio serving its reads) on the same cores."""
    training = ({"min_annotations": 10, "retrain_every": 100_000, "quiet_seconds": 15} if quiet
                else {"min_annotations": 10, "retrain_every": 25, "quiet_seconds": 20})
    project, tasks, _ = annotated_project(ls, "burst-quiet" if quiet else "burst", events, loop, training)
    pid, key = project["id"], f"{project['id']}.0"
    # Bodies encoded up front and one keep-alive connection per sender, so the client's own
    # work (it shares the two cores) stays out of the measured latency as far as it can.
    payloads = [json.dumps(webhook_body(project, t)).encode() for t in tasks]
    address = urlsplit(loop.service.url)
    local = threading.local()

    def send(payload: bytes) -> float:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        t0 = time.perf_counter()
        connection.request("POST", "/webhook", body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status >= 300:
            raise SystemExit(f"/webhook answered {response.status}")
        return elapsed

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        latencies = list(pool.map(send, payloads))
    last_event = time.perf_counter()
    label = "quiet burst (training after it)" if quiet else "burst"
    rows = [
        (f"{label}: events sent", f"{events} in {last_event - start:.2f} s ({events / (last_event - start):.0f}/s, "
                                  "8 senders)"),
        (f"{label}: ack latency p50 / p99 / max", f"{statistics.median(latencies):.1f} / "
                                                  f"{percentile(latencies, 99):.1f} / {max(latencies):.1f} ms "
                                                  "(target p99 <= 50)"),
    ]
    version = wait(lambda: (v := loop.setup_version(key, SMS_CONFIG)) != "cold-start" and v, 300, "a version")
    served = time.perf_counter()
    wait(lambda: loop.idle(pid), 300, "the loop to settle")
    runs = loop.runs(pid)
    trained = [r for r in runs if r["status"] == "succeeded"]
    return rows + [
        (f"{label}: trainings started", f"{len(runs)} runs: {len(trained)} trained, {len(runs) - len(trained)} "
                                        "skipped (data unchanged)"),
        (f"{label}: last trained on", f"{trained[-1]['num_annotations']} annotations -> {version}"),
        (f"{label}: last event -> new version serving", f"{served - last_event:.2f} s"),
    ]


def training_time(ls, loop, n: int) -> tuple[str, str]:
    project, _, backend = annotated_project(ls, f"train-{n}", n, loop, {"auto_train": False})
    pid = project["id"]
    t0 = time.perf_counter()
    ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
    wait(lambda: any(r["status"] in {"succeeded", "failed"} for r in loop.runs(pid)), 900, f"training on {n}")
    elapsed = time.perf_counter() - t0
    (run,) = loop.runs(pid)
    (timings,) = loop.rows(f"SELECT timings FROM learning_trainingrun WHERE id = {run['id']}")[0]
    timings = json.loads(timings) if isinstance(timings, str) else timings
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    return (f"training on {n:,} annotations", f"{elapsed:.1f} s from Start Training ({run['status']}, "
            f"{run['num_annotations']} examples; {phases})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="the service's database for each round of bursts (training times: the first)")
    args = parser.parse_args()
    results: list[tuple[str, str]] = []
    for i, database in enumerate(d for d in args.databases.split(",") if d):
        with running_stack(f"webhooks-{database}", database) as (ls, loop):
            rounds = burst(ls, loop, args.events) + burst(ls, loop, args.events, quiet=True)
            results += [(f"[{database}] {name}", value) for name, value in rounds]
            print(*results[-len(rounds):], sep="\n", flush=True)
            if i == 0:
                for size in [int(s) for s in args.sizes.split(",") if s]:
                    results.append(training_time(ls, loop, size))
    print_table(results)


if __name__ == "__main__":
    main()
