"""`manage.py bootstrap_admin`: the console's first account from ALO_ADMIN_USER / ALO_ADMIN_PASSWORD.

Creates the superuser if no account of that name exists; never changes an existing one
(a password changed in the admin stays changed). `manage.py serve` runs it at start.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


def bootstrap_admin(*, username: str, password: str, email: str = "") -> bool:
    """Create superuser `username` unless it exists; whether it was created."""
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        return False
    users.objects.create_superuser(username=username, email=email, password=password)
    return True


class Command(BaseCommand):
    help = "Create the admin account named by ALO_ADMIN_USER with ALO_ADMIN_PASSWORD, if it does not exist."

    def handle(self, *args, **options):
        username, password = settings.ALO_ADMIN_USER, settings.ALO_ADMIN_PASSWORD
        if not username and not password:
            self.stdout.write("ALO_ADMIN_USER and ALO_ADMIN_PASSWORD are unset: no account created "
                              "(make admin creates one interactively)")
            return
        if not username or not password:
            missing = "ALO_ADMIN_PASSWORD" if username else "ALO_ADMIN_USER"
            raise CommandError(f"{missing} is unset: set both ALO_ADMIN_USER and ALO_ADMIN_PASSWORD")
        created = bootstrap_admin(username=username, password=password, email=settings.ALO_ADMIN_EMAIL)
        self.stdout.write(f"admin account {username!r} " + ("created" if created else
                                                           "exists already (its password is left as it is)"))
