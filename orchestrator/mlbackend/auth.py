"""Optional HTTP basic auth on the protocol endpoints (Label Studio's "Basic Authentication")."""
from __future__ import annotations

import base64
import binascii
import hmac

from django.conf import settings


def basic_auth_enabled() -> bool:
    return bool(settings.BASIC_AUTH_USER and settings.BASIC_AUTH_PASS)


def check_basic_auth(header: str | None) -> bool:
    """True when auth is off, or the Authorization header carries the configured user and password."""
    if not basic_auth_enabled():
        return True
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare both, always, in constant time: no early exit that times the user name.
    user_ok = hmac.compare_digest(user.encode(), settings.BASIC_AUTH_USER.encode())
    pass_ok = hmac.compare_digest(password.encode(), settings.BASIC_AUTH_PASS.encode())
    return user_ok and pass_ok
