"""Fixtures of the console's tests: a staff user's API token, and Label Studio as the jobs see it."""
from __future__ import annotations

import pytest

from tests.learning.conftest import fake_ls, queued_runs  # noqa: F401 - the console's pages push too


@pytest.fixture
def staff_token(db):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("lead", password="pw-lead-1", is_staff=True)
    return Token.objects.create(user=user).key


@pytest.fixture
def api(client, staff_token):
    """A client that sends the staff user's token with every request."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {staff_token}"
    return client
