"""Django admin: the console for projects, model versions, training and scoring runs, events.

Thin: every action calls a service (versions, steering, scoring runs, the training schedule)
and reports what it did, or why it refused, in the page's messages.
"""
from orchestrator.learning.admin import jobs, projects, versions  # noqa: F401 - each registers its pages
