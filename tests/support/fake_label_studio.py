"""An in-memory Label Studio: the slice of its API the scoring job uses, with the same semantics.

It can lose answers, refuse imports, apply an import after its timeout, and store an import
batch by batch as Label Studio's memory-efficient import does. The `fake_ls` fixture
(tests/learning/conftest.py) puts it in place of the gateway's functions.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

from orchestrator.gateways import label_studio

_DELETING = threading.Lock()

# The gateway functions this fake answers in place of Label Studio.
FAKED = ("prediction_versions", "import_predictions", "model_versions", "predictions_of", "delete_prediction",
         "get_project", "update_project", "list_views", "save_view")
# ... those of the tasks' gateway (orchestrator/gateways/label_studio_tasks.py) the task mirror calls.
TASKS_FAKED = ("iter_tasks", "task_ids", "existing_task_ids", "tasks_with_data", "task_count", "annotated_task_ids")
# ... and those of the console's gateway (orchestrator/gateways/label_studio_console.py).
CONSOLE_FAKED = ("project_summary", "list_projects", "connect_model")


@dataclass
class FakeLabelStudio:
    """The slice of Label Studio's API the scoring job uses, with the same semantics."""

    texts: dict[int, str]
    labeled: set[int] = field(default_factory=set)
    predictions: list[dict] = field(default_factory=list)
    project: dict = field(default_factory=lambda: {"model_version": "AL orchestrator", "sampling": "Sequential sampling"})
    views: list[dict] = field(default_factory=list)
    import_faults: list[str] = field(default_factory=list)  # per import call: pass | lost | fail
    imports: int = 0
    late: list = field(default_factory=list)
    counted: int = 0  # model_versions calls
    reads: int = 0  # requests for tasks' data
    id_listings: int = 0  # listings of every task id
    verified: int = 0
    on_import: object = None
    last_id: int = 0  # the last prediction id given
    deleted: int = 0  # predictions deleted one by one
    delete_faults: list[str] = field(default_factory=list)  # per delete call, until empty: an error
    project_at_import: list = field(default_factory=list)  # the project's model_version as each import began
    # Label Studio's memory-efficient import (a feature flag) stores batches of 500 one after
    # the other and fails at the first batch naming a task gone from the project, keeping the
    # batches before it; the default import checks every task first and stores nothing.
    batch_by_batch: bool = False
    # The console's slice: other projects the token sees, and the models connected to each.
    others: dict[int, str] = field(default_factory=dict)  # project id -> title
    backends: list[dict] = field(default_factory=list)
    on_connect: object = None  # called as Label Studio calls /setup while connecting; may raise

    # --- the task mirror's reads: `reads` counts the requests that carry tasks' data
    def iter_tasks(self, ls_project_id, *, after_id=0, page_size=5000):
        after = after_id
        while True:
            ids = sorted(i for i in self.texts if i > after)[:page_size]
            self.reads += 1
            if not ids:
                return
            yield [{"id": i, "data": {"text": self.texts[i]}} for i in ids]
            after = ids[-1]

    def task_ids(self, ls_project_id, *, page_size=10000):
        self.id_listings += 1
        return set(self.texts)

    def existing_task_ids(self, ls_project_id, task_ids, *, batch=500):
        return {i for i in task_ids if i in self.texts}

    def tasks_with_data(self, ls_project_id, task_ids, *, batch=500):
        self.reads += 1
        return [{"id": i, "data": {"text": self.texts[i]}} for i in sorted(set(task_ids)) if i in self.texts]

    def task_count(self, ls_project_id):
        return len(self.texts)

    def annotated_task_ids(self, ls_project_id, *, page_size=5000):
        return {i for i in self.labeled if i in self.texts}

    def prediction_versions(self, ls_project_id, task_ids, batch=500):
        self.verified += len(task_ids)
        wanted = {i for i in task_ids if i in self.texts and i not in self.labeled}
        return {i: [p["model_version"] for p in self.predictions if p["task"] == i] for i in sorted(wanted)}

    def import_predictions(self, ls_project_id, predictions):
        self.imports += 1
        self.project_at_import.append(self.project["model_version"])
        fault = self.import_faults.pop(0) if self.import_faults else "pass"
        if fault == "fail":
            raise label_studio.LabelStudioError("POST import/predictions answered 503", status_code=503)
        if fault == "late":  # the client gave up; Label Studio applies the import a moment later
            self.late = [dict(p) for p in predictions]
            raise label_studio.LabelStudioError("POST import/predictions failed: timed out")
        batch = 500 if self.batch_by_batch else max(1, len(predictions))
        for start in range(0, len(predictions), batch):
            part = predictions[start:start + batch]
            unknown = [p["task"] for p in part if p["task"] not in self.texts]
            if unknown:
                raise label_studio.LabelStudioError(f"tasks {unknown} are not in the project", status_code=400)
            self.predictions += [{**p, "id": self._next_id()} for p in part]
        if self.on_import:
            self.on_import()
        if fault == "lost":
            raise label_studio.LabelStudioError("POST import/predictions failed: timed out")
        return len(predictions)

    def model_versions(self, ls_project_id):
        self.counted += 1
        counts = dict(collections.Counter(p["model_version"] for p in self.predictions))
        if self.late:  # seen once without the late import, then it lands
            self.predictions += [{**p, "id": self._next_id()} for p in self.late]
            self.late = []
        return counts

    def _next_id(self):
        self.last_id += 1
        return self.last_id

    def predictions_of(self, ls_project_id, versions, *, after_id, limit=500, duplicates_of=None):
        for p in self.predictions:  # those a test appended by hand get theirs now
            p.setdefault("id", self._next_id())
        counts: dict[int, int] = {}
        for p in self.predictions:
            counts[p["task"]] = counts.get(p["task"], 0) + 1
        least = 1 if versions else 2
        tasks = sorted(t for t, n in counts.items() if t > after_id and n >= least)[:limit]
        ids = [p["id"] for p in self.predictions if p["task"] in set(tasks) and p["model_version"] in versions]
        if duplicates_of is not None:
            for task in tasks:
                ids += sorted(p["id"] for p in self.predictions
                              if p["task"] == task and p["model_version"] == duplicates_of)[:-1]
        return ids, (tasks[-1] if len(tasks) >= limit else None)

    def delete_prediction(self, prediction_id):
        if self.delete_faults:
            raise label_studio.LabelStudioError(self.delete_faults.pop(0), status_code=503)
        with _DELETING:  # the clean-up deletes from several threads
            before = len(self.predictions)
            self.predictions = [p for p in self.predictions if p["id"] != prediction_id]
            self.deleted += before - len(self.predictions)
            return len(self.predictions) < before

    def get_project(self, ls_project_id):
        return dict(self.project)

    def update_project(self, ls_project_id, **fields):
        if "model_version" in fields and not any(p["model_version"] == fields["model_version"]
                                                 for p in self.predictions):
            raise label_studio.LabelStudioError("model_version: no predictions of it", status_code=400)
        self.project.update(fields)
        return dict(self.project)

    def list_views(self, ls_project_id):
        return [dict(v) for v in self.views]

    def save_view(self, ls_project_id, data, view_id=None):
        if view_id is None:
            self.views.append({"id": len(self.views) + 1, "project": ls_project_id, "data": data})
            return self.views[-1]
        view = next(v for v in self.views if v["id"] == view_id)
        view["data"] = data
        return view

    def project_summary(self, ls_project_id):
        return {"title": self.project.get("title", ""), "tasks": len(self.texts), "annotated": len(self.labeled),
                "queue": len(self.texts) - len(self.labeled), "predictions": len(self.predictions),
                "model_version": self.project.get("model_version", ""),
                "sampling": self.project.get("sampling", ""), "tags": dict(collections.Counter(p["model_version"] for p in self.predictions))}

    def list_projects(self):
        return [{"id": pid, "title": title} for pid, title in sorted(self.others.items())]

    def connect_model(self, ls_project_id, *, url, title, auth=None):
        for backend in self.backends:
            if backend["project"] == ls_project_id and backend["url"].rstrip("/") == url.rstrip("/"):
                return backend
        if self.on_connect is not None:
            self.on_connect(ls_project_id, url)
        self.backends.append({"id": len(self.backends) + 1, "project": ls_project_id, "url": url, "title": title,
                              "auth": auth})
        return self.backends[-1]

    # --- what the tests check
    def tags_per_unlabeled_task(self, tag: str) -> collections.Counter:
        counts = collections.Counter(p["task"] for p in self.predictions if p["model_version"] == tag)
        return collections.Counter(counts[i] for i in self.texts if i not in self.labeled)
