"""Reading a project's annotations as training examples: which annotation counts, and texts behind URLs."""
from __future__ import annotations

import pytest

from backends import backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning.training.dataset import examples_from_tasks
from tests.conftest import URL_CONFIG


def annotated(task_id: int, label: str, *, cancelled: bool = False, name: str = "") -> dict:
    return {"id": task_id, "data": {"url": f"/data/upload/1/{name or task_id}.txt"}, "annotations": [
        {"id": 1000 + task_id, "was_cancelled": cancelled, "updated_at": "2026-12-01T00:00:00Z",
         "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}


def test_training_reads_texts_behind_urls_several_at_a_time_in_order(settings, label_studio_files):
    settings.URL_FETCH_THREADS = 3  # ALO_URL_FETCH_THREADS
    tasks = [annotated(i, "spam" if i % 2 else "ham", cancelled=(i == 5)) for i in range(1, 13)]
    dataset = examples_from_tasks(backend_for(URL_CONFIG), iter(tasks))
    wanted = [i for i in range(1, 13) if i != 5]  # a skipped task's text is not read
    assert [e.text for e in dataset.examples] == [f"free prize data/upload/1/{i}.txt" for i in wanted]
    assert [e.labels for e in dataset.examples] == [("spam" if i % 2 else "ham",) for i in wanted]
    assert dataset.annotation_ids == [1000 + i for i in wanted]
    assert label_studio_files["at_once"] == 3
    assert "data/upload/1/5.txt" not in label_studio_files["paths"]


def test_a_text_label_studio_cannot_serve_fails_the_read_naming_the_first_such_task(settings, label_studio_files):
    settings.URL_FETCH_THREADS = 4
    tasks = [annotated(i, "ham", name="bad" if i in (13, 17) else "") for i in range(1, 21)]
    with pytest.raises(label_studio.LabelStudioError) as raised:
        examples_from_tasks(backend_for(URL_CONFIG), iter(tasks))
    assert "task 13" in str(raised.value) and "500" in str(raised.value)
    assert "Traceback" not in str(raised.value) and "SECRET_KEY" not in str(raised.value)
