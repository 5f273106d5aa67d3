"""The active-learning domain: projects, model versions, events, and the services over them.

Services are modules named for what they do (`projects`, `webhooks`, `predictions`, the
`training` and `scoring` packages); `selectors` only read. Views, Celery tasks and admin
actions call them and hold no logic. ARCHITECTURE.md follows the three main paths.
"""
