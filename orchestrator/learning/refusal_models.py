"""Label Studio projects whose Connect the service refused, before any was connected (registered with the learning app).

A connected project keeps its last refusal on itself (`Project.last_setup_error`); one that never
connected has no row there, so its refusal is kept here until a /setup of it is accepted.
"""
from __future__ import annotations

from django.db import models


class RefusedConnection(models.Model):
    """The latest refused /setup of a Label Studio project the service does not know."""

    ls_project_id = models.PositiveIntegerField(unique=True, help_text="The project's id in Label Studio.")
    reason = models.TextField(help_text="What the service answered (Label Studio shows it in Connect Model).")
    hostname = models.CharField(max_length=500, blank=True, help_text="The Label Studio that asked.")
    times = models.PositiveIntegerField(default=1, help_text="Refused /setup calls of the project so far.")
    refused_at = models.DateTimeField(help_text="The latest refusal.")

    class Meta:
        ordering = ["-refused_at"]

    def __str__(self) -> str:
        return f"Label Studio project {self.ls_project_id} (refused)"
