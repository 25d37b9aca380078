"""The address a request comes from, as this deployment can trust it: one answer for the API's
throttles, the inbound webhooks' throttle and the login lockouts (django-axes'
AXES_CLIENT_IP_CALLABLE), so none of them can be fooled where another is not.

`X-Forwarded-For` is written by whoever sends the request, so by default it is ignored and the
socket address is the client. Behind proxies, TRUSTED_PROXY_COUNT (REST_FRAMEWORK's NUM_PROXIES)
says how many of them append to the header; the entry the outermost trusted proxy appended is
the client, and whatever a client put before it cannot change that.
"""

from rest_framework.settings import api_settings


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or the NUM_PROXIES-th entry from the end of
    X-Forwarded-For when that many proxies are trusted (DRF's own reading of the header)."""
    remote = request.META.get("REMOTE_ADDR") or ""
    trusted = api_settings.NUM_PROXIES or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not trusted or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return hops[-min(trusted, len(hops))] or remote
