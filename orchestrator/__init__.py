"""The Django project of the active-learning orchestrator for Label Studio.

Importing it makes the Celery app available to Django (`orchestrator.celery.app`).
"""
from orchestrator.celery import app as celery_app

__all__ = ["celery_app"]
