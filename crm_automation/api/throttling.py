"""The API's request budget: one per person, whatever the credential.

A session and any number of tokens of the same user draw from one budget (keyed by the user's
id); anonymous callers (the token endpoint, the schema) by address. The counts live in the
default cache, which every process shares (Redis with REDIS_URL, else the database cache), so
two web workers do not each grant the whole rate.
"""

from rest_framework.throttling import SimpleRateThrottle

from crm_automation.api.client_address import client_address


class PerPerson(SimpleRateThrottle):
    """API_THROTTLE_RATE per user (session and tokens together); anonymous callers per address."""

    scope = "per_person"

    def get_ident(self, request) -> str:
        return client_address(request)

    def get_cache_key(self, request, view) -> str:
        user = getattr(request, "user", None)
        ident = f"user:{user.pk}" if user is not None and user.is_authenticated else f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
