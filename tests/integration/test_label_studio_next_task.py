"""What Label Studio 1.23.2's "Label All Tasks" serves next under uncertainty sampling, with and without `cluster`.

Measured on the real server, because the service relies on it: with the scores it pushes the
next task is the lowest score of the project's model_version, so "Label All Tasks" follows the
queue. Label Studio's source (projects/functions/next_task.py) reads a prediction's `cluster` to
prefer the clusters the annotator has labeled least; on 1.23.2, through `/api/projects/<id>/next`
as "Label All Tasks" calls it, one annotator is still served the lowest scores, cluster or not
(which step of that function drops it was not pinned down). So the service sends no `cluster`; diversity inside a batch, measured in process
(hybrid:margin in bench/learning_curves.py), reached the bar at the same median number of labels
as margin alone, with more spread.
"""
from __future__ import annotations

import pytest

from tests.conftest import SMS_CONFIG
from tests.integration.test_label_studio_e2e import annotate

pytestmark = [pytest.mark.integration, pytest.mark.database_independent]


def served_in_order(ls, clusters: bool, n: int = 8) -> list[int]:
    """A project of 40 tasks in 4 groups of 10; scores rise group by group. The groups (as they were
    given) of the first n tasks "Label All Tasks" serves, annotating each before asking for the next."""
    pid = ls.api("POST", "/api/projects", json={"title": f"next task, clusters={clusters}",
                                                "label_config": SMS_CONFIG})["id"]
    ls.api("POST", f"/api/projects/{pid}/import", json=[{"text": f"message {i}"} for i in range(40)])
    tasks = sorted(t["id"] for t in ls.api("GET", "/api/tasks", params={"project": pid, "page_size": 100,
                                                                         "include": "id"})["tasks"])
    group = {task: i // 10 for i, task in enumerate(tasks)}
    predictions = [{"task": task, "result": [], "score": round(0.01 * i, 2), "model_version": "v1",
                    **({"cluster": group[task]} if clusters else {})} for i, task in enumerate(tasks)]
    assert ls.api("POST", f"/api/projects/{pid}/import/predictions", json=predictions)["created"] == 40
    ls.api("PATCH", f"/api/projects/{pid}", json={"model_version": "v1", "sampling": "Uncertainty sampling"})
    served = []
    for _ in range(n):
        task = ls.api("GET", f"/api/projects/{pid}/next")
        served.append(group[task["id"]])
        annotate(ls, task, "ham")
    return served


def test_without_cluster_the_next_task_is_the_lowest_score(label_studio):
    assert served_in_order(label_studio, clusters=False) == [0] * 8


def test_with_cluster_one_annotator_is_still_served_the_lowest_scores(label_studio):
    assert served_in_order(label_studio, clusters=True) == [0] * 8
