"""Brute-force protection for every password sign-in (django-axes, settings `AXES_*`).

The API's token endpoint and the admin's login form (the session the pages use) both go
through `django.contrib.auth.authenticate`, where axes' backend counts failures in the shared
cache by username and by address (api/client_address.py). After LOGIN_FAILURE_LIMIT failures
for one username, or from one address, sign-ins are refused for LOGIN_LOCKOUT_MINUTES, the
right password included: a 429 with a JSON error on the API, a page on the admin. Each refusal
is logged by the `crm_automation.auth` logger.
"""

import logging
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from crm_automation.api.client_address import client_address

log = logging.getLogger("crm_automation.auth")


class LockoutBackend(AxesStandaloneBackend):
    """axes' check, first in AUTHENTICATION_BACKENDS. An `authenticate()` without a request
    comes from code (a shell, a script, the test client's login), not from someone guessing over
    the network: there is no address to count, so it is not checked (axes would raise)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_minutes() -> int:
    return max(1, round(settings.AXES_COOLOFF_TIME / timedelta(minutes=1)))


def lockout_message() -> str:
    minutes = lockout_minutes()
    return (f"Too many failed sign-in attempts for this username or from this address. Try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator to unlock the account.")


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: what a refused sign-in gets, JSON for API clients and a page for
    people (the admin's login). The token view answers its own refusals (api/auth.py) with the
    same message; this covers every other login, e.g. /admin/login/."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": lockout_message(), "code": "locked_out"}, status=429)
    else:
        response = render(request, "admin/locked_out.html",
                          {"title": "Sign-in paused", "message": lockout_message()}, status=429)
    response["Retry-After"] = retry_after
    return response


@receiver(user_locked_out)
def log_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """Sent by axes when a failure reaches the limit and for each attempt refused afterwards.
    Written as text and, with LOG_FORMAT=json, as the fields username, address and path."""
    fields = {"username": username or "", "address": ip_address or (client_address(request) if request else ""),
              "path": getattr(request, "path", "")}
    log.warning("Sign-in locked out: username %(username)r from %(address)s at %(path)s after too many failures",
                fields, extra=fields)
