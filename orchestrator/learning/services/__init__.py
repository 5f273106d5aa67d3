"""Services of the active-learning domain: functions that do things, keyword-only.

Views, Celery tasks, admin actions and management commands call these and nothing deeper.
"""
