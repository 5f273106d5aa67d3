"""Django app configuration for the Label Studio ML backend protocol."""
from django.apps import AppConfig


class MLBackendConfig(AppConfig):
    name = "orchestrator.mlbackend"
    label = "mlbackend"
    verbose_name = "Label Studio ML backend protocol"
