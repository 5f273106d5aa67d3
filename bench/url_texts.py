"""Benchmark /predict on tasks whose text is a URL on Label Studio (files uploaded as whole texts).

Starts Label Studio 1.23.2 and the service (bench/stack.py), uploads N SMS texts as .txt files
into a project whose config reads `$text` with valueType="url" (Label Studio's "treat as whole
text files" import: each task's data is `/data/upload/<project>/<file>.txt`), trains a model and
asks /predict for all N tasks in one request, as Label Studio's "Retrieve predictions" does.

References, measured in the same run against the same Label Studio: reading the N files from it
one after another (what /predict did before fetching concurrently: 1,000 took 45 s) and
2, 4 and ALO_URL_FETCH_THREADS at a time (the last: the most the service's fetching can reach).
Run: `python bench/url_texts.py [--tasks 1000]`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import print_table, running_stack  # noqa: E402

from backends.text_classification import URL_FETCH_THREADS as DEFAULT_THREADS  # noqa: E402
from tests.conftest import SMS_POOL, SMS_SAMPLE, sms_rows  # noqa: E402

URL_CONFIG = (
    '<View><Text name="text" value="$text" valueType="url"/>'
    '<Choices name="label" toName="text"><Choice value="ham"/><Choice value="spam"/></Choices></View>'
)
UPLOAD_BATCH = 100
# The service's fetches at once, as it will read the setting.
URL_FETCH_THREADS = int(os.environ.get("ALO_URL_FETCH_THREADS") or DEFAULT_THREADS)


def upload_texts(ls, pid: int, texts: list[str]) -> list[dict]:
    """Upload each text as its own .txt file and import the files as whole texts; the tasks.
    (Label Studio keeps one file per form field name: each needs its own.)"""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {ls.token}"
    upload_ids: list[int] = []
    for start in range(0, len(texts), UPLOAD_BATCH):
        files = [(f"file{i}", (f"sms-{start + i:06d}.txt", text.encode(), "text/plain"))
                 for i, text in enumerate(texts[start:start + UPLOAD_BATCH])]
        answer = session.post(f"{ls.url}/api/projects/{pid}/import", params={"commit_to_project": "false"},
                              files=files, timeout=600)
        answer.raise_for_status()
        upload_ids += answer.json()["file_upload_ids"]
    reimport = session.post(f"{ls.url}/api/projects/{pid}/reimport", timeout=600,
                            json={"file_upload_ids": upload_ids, "files_as_tasks_list": False})
    reimport.raise_for_status()
    tasks: list[dict] = []
    while len(tasks) < len(texts):  # pages of 500: a page of its data over 999 ids fails on its SQLite
        page = ls.api("GET", "/api/tasks", params={"project": pid, "page": len(tasks) // 500 + 1, "page_size": 500,
                                                  "include": "id,data"})["tasks"]
        if not page:
            break
        tasks += page
    return sorted(tasks, key=lambda t: t["id"])


def read_rate(ls, urls: list[str], threads: int) -> float:
    """Texts/s of Label Studio serving these files to one client with `threads` connections."""
    local = threading.local()

    def get(url: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Token {ls.token}"
        answer = local.session.get(ls.url + url, timeout=60)
        answer.raise_for_status()
        return len(answer.content)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(get, urls))
    assert all(sizes), "an uploaded text came back empty"
    return len(urls) / (time.perf_counter() - started)


def predict(loop, pid: int, tasks: list[dict]) -> tuple[float, list[dict]]:
    body = {"tasks": tasks, "project": f"{pid}.1700000000", "label_config": URL_CONFIG,
            "params": {"login": None, "password": None, "context": None}}
    started = time.perf_counter()
    answer = requests.post(f"{loop.service.url}/predict", json=body, timeout=600)
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"/predict answered {answer.status_code}: {answer.text[:500]}")
    return seconds, answer.json()["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000, help="Tasks (uploaded text files) to predict.")
    args = parser.parse_args()
    pool = sms_rows(path=SMS_POOL)
    rows = (pool * (args.tasks // len(pool) + 1))[:args.tasks]
    truth = [label for label, _ in rows]

    with running_stack("url-texts") as (ls, loop):
        project = ls.api("POST", "/api/projects", json={"title": "URL texts", "label_config": URL_CONFIG})
        pid = project["id"]
        ls.api("POST", "/api/ml", json={"project": pid, "url": loop.service.url, "title": "AL orchestrator",
                                        "extra_params": {"training": {"auto_train": False},
                                                         "scoring": {"auto_push": False}}})
        began = time.perf_counter()
        tasks = upload_texts(ls, pid, [text for _, text in rows])
        upload_seconds = time.perf_counter() - began
        if len(tasks) != args.tasks or not all(t["data"]["text"].startswith("/data/upload/") for t in tasks):
            raise SystemExit(f"expected {args.tasks} tasks reading /data/upload/ files, got {tasks[:2]}")
        loop.service.manage("train_project", "--project", str(pid), "--from-file", str(SMS_SAMPLE))
        time.sleep(2.5)  # the web workers pick the new version up within their refresh interval

        urls = [t["data"]["text"] for t in tasks]
        rates = {threads: read_rate(ls, urls, threads) for threads in sorted({1, 2, 4, URL_FETCH_THREADS})}
        serial, concurrent = rates[1], rates[URL_FETCH_THREADS]
        cold, results = predict(loop, pid, tasks)
        repeats = [predict(loop, pid, tasks) for _ in range(4)]

    labels = [r["result"][0]["value"]["choices"][0] if r.get("result") else None for r in results]
    assert len(labels) == len(tasks) and all(labels), "a task came back without a prediction"
    for _, again in repeats:
        assert [r.get("result") for r in again] == [r.get("result") for r in results], "the answers differ"
    warm = sorted(seconds for seconds, _ in repeats)
    accuracy = sum(a == b for a, b in zip(labels, truth)) / len(truth)
    n = len(tasks)
    print_table([
        (f"{n:,} files: upload and import (setup)", f"{upload_seconds:.1f} s"),
        ("Label Studio serving them one after another (reference)",
         f"{serial:.0f} texts/s = {n / serial:.1f} s for {n:,} (what a serial /predict could reach)"),
        *[(f"Label Studio serving them {threads} at a time (reference)", f"{rate:.0f} texts/s")
          for threads, rate in rates.items() if threads not in (1, URL_FETCH_THREADS)],
        (f"Label Studio serving them {URL_FETCH_THREADS} at a time (reference)",
         f"{concurrent:.0f} texts/s = {n / concurrent:.1f} s for {n:,} (the ceiling of the service's fetching)"),
        (f"/predict of {n:,} URL tasks, first time", f"{cold:.1f} s = {n / cold:.0f} tasks/s = "
                                                    f"{(n / cold) / concurrent:.2f}x the {URL_FETCH_THREADS}-at-a-time "
                                                    f"reference, {(n / cold) / serial:.2f}x the serial one "
                                                    "(before: 45 s; Label Studio waits 100 s, ML_TIMEOUT_PREDICT)"),
        (f"/predict of {n:,} URL tasks, 4 times more", f"{warm[0]:.2f} s to {warm[-1]:.1f} s (texts are cached per web "
                                                      "process: fast where the request meets the worker that read them)"),
        ("predictions agree with the true labels", f"{accuracy:.1%} (a sanity check that the texts were read)"),
    ])
    print(json.dumps({"tasks": n, "serial_rate": serial, "rates": rates, "cold_s": cold,
                      "repeat_s": warm, "accuracy": accuracy}))


if __name__ == "__main__":
    main()
