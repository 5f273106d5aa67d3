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
   competing for the same two cores; then a paced burst (events due at `--rate`, 250/s: 1,000
   in 4 s) with training on, whose latencies count from when each event was due;
3. measures training time (read from Label Studio + fit + cross-validate + MLflow) for
   1k and 10k annotations, through Start Training (on the first database).

Run: `python bench/webhooks.py [--events 1000] [--sizes 1000,10000] [--databases sqlite,postgresql]
[--client python|wrk] [--rate 250]`.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
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


# Each wrk thread sends its share of the bodies once, then stops; latencies come from wrk's
# own histogram (a C client: no GIL of a Python sender in the measured time).
WRK_SCRIPT = """
local bodies, index, answered = {}, 0, 0
local started = 0
function setup(thread)
  thread:set("id", started)
  started = started + 1
end
function init(args)
  local all = {}
  for line in io.lines(os.getenv("BODIES_FILE")) do all[#all + 1] = line end
  local threads = tonumber(os.getenv("WRK_THREADS"))
  local share = math.ceil(#all / threads)
  for i = id * share + 1, math.min(#all, (id + 1) * share) do bodies[#bodies + 1] = all[i] end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  index = math.min(index + 1, #bodies)
  return wrk.format(nil, nil, nil, bodies[index])
end
function response(status, headers, body)
  if status ~= 201 then error("webhook answered " .. status) end
  answered = answered + 1
  if answered >= #bodies then wrk.thread:stop() end
end
function done(summary, latency, requests)
  io.write(string.format("ALO %.3f %.3f %.3f %d\\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests))
end
"""
WRK_SECONDS = 12


def wrk_burst(url: str, payloads: list[bytes]) -> tuple[float, float, float, int]:
    """p50, p99 and max latency (ms) and requests sent, by wrk with 2 threads x 4 connections."""
    with tempfile.TemporaryDirectory(prefix="alo-wrk-") as tmp:
        bodies, script = Path(tmp) / "bodies.jsonl", Path(tmp) / "burst.lua"
        bodies.write_bytes(b"\n".join(payloads) + b"\n")
        script.write_text(WRK_SCRIPT)
        result = subprocess.run(["wrk", "-t2", "-c8", f"-d{WRK_SECONDS}s", "-s", str(script), url],
                                env={**os.environ, "BODIES_FILE": str(bodies), "WRK_THREADS": "2"},
                                capture_output=True, text=True, check=True)
    p50, p99, most, sent = re.search(r"^ALO (\S+) (\S+) (\S+) (\d+)$", result.stdout, re.M).groups()
    return float(p50), float(p99), float(most), int(sent)


def burst(ls, loop, events: int, *, quiet: bool = False, use_wrk: bool = False,
          rate: float | None = None) -> list[tuple[str, str]]:
    """N webhooks from 8 senders. `quiet`: the policy defers training past the burst, which
    isolates the ack path from a training (and Label Studio serving its reads) on the same cores.
    `rate`: the events are due at that rate (open loop) instead of as fast as the senders go;
    each latency counts from the moment its event was due, so a sender running late counts too."""
    training = ({"min_annotations": 10, "retrain_every": 100_000, "quiet_seconds": 15} if quiet
                else {"min_annotations": 10, "retrain_every": 25, "quiet_seconds": 20})
    title = "burst-quiet" if quiet else f"burst-{rate:.0f}-per-s" if rate else "burst"
    project, tasks, _ = annotated_project(ls, title, events, loop, training)
    pid, key = project["id"], f"{project['id']}.0"
    # Bodies encoded up front and one keep-alive connection per sender, so the client's own
    # work (it shares the two cores) stays out of the measured latency as far as it can.
    payloads = [json.dumps(webhook_body(project, t)).encode() for t in tasks]
    address = urlsplit(loop.service.url)
    local = threading.local()

    def send(payload: bytes, due: float | None = None) -> float:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        if due is not None:
            time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter() if due is None else due
        connection.request("POST", "/webhook", body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status >= 300:
            raise SystemExit(f"/webhook answered {response.status}")
        return elapsed

    log = Path(loop.service.process.log_path)
    log_offset = log.stat().st_size if log.exists() else 0
    label = ("quiet burst (training after it)" if quiet else
             f"paced burst ({rate:.0f}/s, training during it)" if rate else "burst")
    start = time.perf_counter()
    if rate:
        # Connections opened before the clock starts; then event i is due at start + i / rate.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            begin = time.perf_counter() + 0.5
            latencies = list(pool.map(send, payloads, [begin + i / rate for i in range(len(payloads))]))
        last_event = time.perf_counter()
        p50, p99, most = statistics.median(latencies), percentile(latencies, 99), max(latencies)
        rows = [(f"{label}: events sent", f"{events} in {last_event - begin:.2f} s (due at {rate:.0f}/s, "
                                          "8 Python senders; latency counted from when each was due)")]
    elif use_wrk:
        p50, p99, most, sent = wrk_burst(f"{loop.service.url}/webhook", payloads)
        last_event = time.perf_counter()
        rows = [(f"{label}: events sent", f"{sent} by wrk (8 connections; it runs a fixed {WRK_SECONDS} s)")]
    else:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(send, payloads))
        last_event = time.perf_counter()
        p50, p99, most = statistics.median(latencies), percentile(latencies, 99), max(latencies)
        rows = [(f"{label}: events sent", f"{events} in {last_event - start:.2f} s "
                                          f"({events / (last_event - start):.0f}/s, 8 Python senders)")]
    rows.append((f"{label}: ack latency p50 / p99 / max", f"{p50:.1f} / {p99:.1f} / {most:.1f} ms (target p99 <= 50)"))
    with open(log, "rb") as handle:  # the service logs each ack slower than ALO_SLOW_ACK_MS inside it
        handle.seek(log_offset)
        slow = [line.decode(errors="replace") for line in handle if b"webhook_slow" in line]
    worst = max(slow, key=lambda line: int(re.search(r"total_ms=(\d+)", line).group(1)), default="")
    rows.append((f"{label}: acks > {os.environ.get('ALO_SLOW_ACK_MS', '200')} ms inside the service",
                 f"{len(slow)}" + (f"; slowest: {worst[worst.index('total_ms'):].strip()}" if slow else "")))
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
    parser.add_argument("--client", choices=("wrk", "python"), default="python",
                        help="who sends the burst: 8 Python threads, or wrk (as fast as it can: more load; "
                             "'last event -> serving' then counts from wrk's fixed end)")
    parser.add_argument("--rate", type=float, default=250.0,
                        help="also a paced burst: events due at this rate (0: skip)")
    args = parser.parse_args()
    results: list[tuple[str, str]] = []
    for i, database in enumerate(d for d in args.databases.split(",") if d):
        with running_stack(f"webhooks-{database}", database) as (ls, loop):
            use_wrk = args.client == "wrk"
            rounds = (burst(ls, loop, args.events, use_wrk=use_wrk)
                      + burst(ls, loop, args.events, quiet=True, use_wrk=use_wrk))
            if args.rate:
                rounds += burst(ls, loop, args.events, rate=args.rate)
            results += [(f"[{database}] {name}", value) for name, value in rounds]
            print(*results[-len(rounds):], sep="\n", flush=True)
            if i == 0:
                for size in [int(s) for s in args.sizes.split(",") if s]:
                    results.append(training_time(ls, loop, size))
    print_table(results)


if __name__ == "__main__":
    main()
