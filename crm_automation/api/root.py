"""GET /api/v1/: where to start. Links to the docs, the schema, signing in and every resource.

Public on purpose: it lists addresses only (the same ones the public schema names), so someone
who follows the Ready line of `make run` before having a token sees how to get one instead of a
401. Every resource behind the links still asks for a token or a session.
"""

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# (name shown, URL name in the `api` namespace): the collections a client starts from.
RESOURCES = (
    ("workflows", "workflow-list"), ("runs", "run-list"), ("approvals", "approval-list"),
    ("deals", "deal-list"), ("leads", "lead-list"), ("contacts", "contact-list"), ("tasks", "task-list"),
    ("stages", "stage-list"), ("webhook_endpoints", "webhook-endpoint-list"), ("prices", "prices"),
    ("lifecycle_events", "lifecycle-event-list"), ("event_subscriptions", "event-subscription-list"),
)


class ApiRootView(APIView):
    """The API's front door: documentation, how to authenticate, and the resources."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)  # a list of links, not part of the contract
    def get(self, request):
        def link(name: str) -> str:
            return reverse(f"api:{name}", request=request)

        return Response({
            "name": "crm-automation API",
            "version": "1",
            "docs": link("docs"),
            "schema": link("schema"),
            "authentication": {
                "token": link("token"),
                "how": "POST your username and password to the token address, then send "
                       "`Authorization: Token <key>`; add `X-Organization: <slug>` if you belong to several "
                       "organizations.",
                "me": link("me"),
            },
            "resources": {name: link(url_name) for name, url_name in RESOURCES},
            "mcp": {"url": request.build_absolute_uri("/mcp"), "calls": link("mcp-calls"),
                    "how": "The MCP server (streamable HTTP; `manage.py mcp_stdio` for stdio): send "
                           "`Authorization: Bearer <key>` of a token made with `scopes` (read, draft, run)."},
        })
