"""Fixtures of the console's tests: a staff user's API token, and Label Studio as the jobs see it."""
from __future__ import annotations

import pytest

from tests.learning.conftest import fake_ls, queued_runs  # noqa: F401 - the console's pages push too

# What an operator's account holds (orchestrator/learning/access.py): reading every record, and acting.
OPERATOR = ("view_project", "view_modelversion", "view_scoringrun", "view_trainingrun", "change_project")
READER = ("view_project", "view_modelversion", "view_scoringrun", "view_trainingrun")


def staff_user(username: str, permissions=()):
    """A staff account (not a superuser) holding these `learning` permissions."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username, password=f"pw-{username}-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="learning", codename__in=permissions))
    assert user.user_permissions.count() == len(permissions)
    return get_user_model().objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


def token_of(user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=user).key


@pytest.fixture
def staff_token(db):
    return token_of(staff_user("lead", OPERATOR))


@pytest.fixture
def api(client, staff_token):
    """A client that sends the staff user's token with every request."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {staff_token}"
    return client
