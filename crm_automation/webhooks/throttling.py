"""The inbound endpoints' budget: WEBHOOK_THROTTLE_RATE posts per sender address.

Senders have no account, so the address is all there is to count; it is the socket address
unless TRUSTED_PROXY_COUNT says proxies stand in front (api/client_address.py), so a sender
that writes a new X-Forwarded-For on every post still draws from one budget. The counts are in
the shared cache: every web worker sees the same ones.
"""

from rest_framework.throttling import SimpleRateThrottle

from crm_automation.api.client_address import client_address


class InboundWebhookThrottle(SimpleRateThrottle):
    scope = "webhook"

    def get_ident(self, request) -> str:
        return client_address(request)

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
