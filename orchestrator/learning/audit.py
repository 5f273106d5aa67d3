"""The audit sample: tasks drawn uniformly from a project, held out of training, that its quality estimate rests on.

Which tasks: those whose stable draw (a hash of the project and task id, independent of any
model) falls below `ALO_AUDIT_SHARE`. A push places them at every round(1 / share)-th position of
the queue, lowest draw first (`strategies.audit_order`), so the ones annotators reach are a uniform
sample of the project, not the hard tasks the strategy picks. Once labelled, an audit task trains
no version: every version is measured on all of them (backends/quality.py), with the model's own
probabilities on the project's stop set (a uniform unlabeled sample) narrowing the interval.

The rule is a function of the task id alone, so it needs no table and a resumed or repeated push
places the same tasks. Changing the share moves tasks in or out of the sample: a task labelled from
the queue's strategy positions that the new share calls audit is then held out as one (its draw
never depended on the model, so the estimate stays unbiased; the versions trained on it before are
measured on a task they saw).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings

import strategies


def share() -> float:
    return min(max(settings.AUDIT_SHARE, 0.0), 0.5)


def draws(ls_project_id: int, task_ids: Sequence[int]) -> np.ndarray:
    """Each task's uniform draw in [0, 1): the same for a task in every call and process."""
    return strategies.stable_random(f"audit:{ls_project_id}", [int(t) for t in task_ids])


def is_audit(ls_project_id: int, task_ids: Sequence[int]) -> np.ndarray:
    """Whether each task is in the project's audit sample (all False when the share is 0)."""
    if share() <= 0 or not len(task_ids):
        return np.zeros(len(task_ids), dtype=bool)
    return draws(ls_project_id, task_ids) < share()


def queue_order(ls_project_id: int, priorities: np.ndarray, task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The push order of a scored pool with the audit sample interleaved, and the priorities that sort
    that way (`strategies.audit_order`)."""
    if share() <= 0:
        order = strategies.labelling_order(priorities, task_ids)
        return order, np.asarray(priorities, dtype=np.float64)[order]
    return strategies.audit_order(priorities, task_ids, draws(ls_project_id, task_ids.tolist()), share())
