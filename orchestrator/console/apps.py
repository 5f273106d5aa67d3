from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "orchestrator.console"
    label = "console"
    verbose_name = "Console"
