"""Data of the annotation store: what training needs of each annotated task, kept in the service's database.

Rows mirror Label Studio (its task data and annotations as it serves them); only the store's
service (learning/annotation_store.py) writes them.
"""
from __future__ import annotations

from django.db import models


class StoredTask(models.Model):
    """A Label Studio task that has at least one annotation: its data, as Label Studio serves it."""

    project = models.ForeignKey("learning.Project", on_delete=models.CASCADE, related_name="stored_tasks")
    task_id = models.BigIntegerField(help_text="The task's id in Label Studio.")
    data = models.JSONField(default=dict)
    ls_updated_at = models.CharField(max_length=40, blank=True, help_text="Label Studio's updated_at of the task.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "task_id"], name="stored_task_once")]


class StoredAnnotation(models.Model):
    """One annotation of a stored task, as Label Studio serves it (result, was_cancelled, ground_truth, times...)."""

    project = models.ForeignKey("learning.Project", on_delete=models.CASCADE, related_name="stored_annotations")
    annotation_id = models.BigIntegerField(help_text="The annotation's id in Label Studio.")
    task_id = models.BigIntegerField()
    was_cancelled = models.BooleanField(default=False)
    body = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "annotation_id"], name="stored_annotation_once")]
        indexes = [models.Index(fields=["project", "task_id"], name="stored_annotation_task")]


class AnnotationStoreState(models.Model):
    """How current a project's store is: when Label Studio was last read whole, and up to when changes were seen."""

    project = models.OneToOneField("learning.Project", on_delete=models.CASCADE, related_name="store_state")
    full_read_at = models.DateTimeField(null=True, blank=True)
    full_reads = models.PositiveIntegerField(default=0)
    # Label Studio's own clock: the newest task updated_at the store has seen (the next check asks from there).
    seen_through = models.CharField(max_length=40, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True, help_text="When (the service's clock) seen_through last moved.")
    events_through = models.BigIntegerField(default=0, help_text="The last webhook event whose deletions were applied.")
    checked_at = models.DateTimeField(null=True, blank=True)
    last_check = models.JSONField(default=dict, blank=True, help_text="What the last check read and changed.")


class MirroredTask(models.Model):
    """A Label Studio task of a connected project, annotated or not: its id and data (what a push scores)."""

    project = models.ForeignKey("learning.Project", on_delete=models.CASCADE, related_name="mirrored_tasks")
    task_id = models.BigIntegerField(help_text="The task's id in Label Studio.")
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "task_id"], name="mirrored_task_once")]


class TaskMirrorState(models.Model):
    """How current a project's task mirror is."""

    project = models.OneToOneField("learning.Project", on_delete=models.CASCADE, related_name="mirror_state")
    full_read_at = models.DateTimeField(null=True, blank=True)
    full_reads = models.PositiveIntegerField(default=0)
    events_through = models.BigIntegerField(default=0, help_text="The last webhook event whose deletions were applied.")
    checked_at = models.DateTimeField(null=True, blank=True)
    last_check = models.JSONField(default=dict, blank=True, help_text="What the last check read and changed.")
