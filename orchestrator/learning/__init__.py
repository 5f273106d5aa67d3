"""The active-learning domain: projects, model versions, events, and the services over them.

Views, Celery tasks and admin actions call `services` and `selectors`; they hold no logic.
"""
