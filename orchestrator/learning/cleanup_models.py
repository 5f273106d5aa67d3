"""Data of the prediction clean-up: where a project's deletion of older tags stands, so it resumes after a restart."""
from __future__ import annotations

from django.db import models


class PredictionCleanup(models.Model):
    """A project's clean-up of older prediction tags: asked for, where its last slice stopped, and whether it ended.

    Beat's scoring reconciliation asks again for a clean-up that has not moved for a while (its
    message lost, its worker killed or restarted), from where it stopped.
    """

    project = models.OneToOneField("learning.Project", on_delete=models.CASCADE, related_name="prediction_cleanup")
    generation = models.PositiveBigIntegerField(default=0, help_text=(
        "Counts the clean-ups asked for (one after each push); a slice of an older one never moves the cursor."))
    after_task = models.BigIntegerField(default=0, help_text="Tasks up to this id are done.")
    attempt = models.PositiveIntegerField(default=0)
    requested_at = models.DateTimeField(null=True, blank=True)
    moved_at = models.DateTimeField(null=True, blank=True, help_text="When it was last asked for or a slice last ended.")
    finished_at = models.DateTimeField(null=True, blank=True)
    deleted = models.PositiveIntegerField(default=0, help_text="Predictions deleted since it was asked for.")
