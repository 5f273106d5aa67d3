"""What a project served before: the undo history a roll back walks (registered with the learning app)."""
from __future__ import annotations

from django.db import models


class ServingHistory(models.Model):
    """The versions a project's promotions replaced, the most recent last: a roll back serves the last one
    that can still serve and drops it and everything after it (an undo, as many times as there are entries)."""

    project = models.OneToOneField("learning.Project", on_delete=models.CASCADE, related_name="serving_history")
    replaced = models.JSONField(default=list, blank=True, help_text="ModelVersion pks, oldest first.")

    # A project keeps this many undo steps.
    KEEP = 100

    class Meta:
        verbose_name_plural = "serving histories"
