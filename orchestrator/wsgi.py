"""WSGI entry point for gunicorn (`orchestrator.wsgi:application`).

Nothing heavy is imported here: MLflow and models load lazily, so /health answers at once.
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
application = get_wsgi_application()
