"""Django app configuration for the active-learning domain."""
from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "orchestrator.learning"
    label = "learning"
    verbose_name = "Active learning"
