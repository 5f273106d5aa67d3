"""Django app configuration for the active-learning domain."""
from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "orchestrator.learning"
    label = "learning"
    verbose_name = "Active learning"

    def ready(self) -> None:
        from django.conf import settings

        from backends import features

        # Derived word indexes live with the service's other embedded data (one per machine).
        features.set_cache_dir(settings.DATA_DIR / "features")
