"""Who calls the MCP server, and what of theirs a tool may name.

A caller is a person's API token (knox, api/tokens.py) with its scopes (api/models.SCOPES).
Every lookup here is scoped to the person's organizations: another organization's id is
"not found", exactly like an id that never existed (ids must not tell what exists elsewhere).
"""

from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse

from crm_automation.api.token_auth import TokenAuthentication
from crm_automation.api.tokens import scopes_of, token_id
from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import RECORD_MODELS, record_in, user_org_roles


class NotFound(Exception):
    """What a tool names does not exist in the caller's organizations (or is another's)."""


class MissingScope(Exception):
    """The token was not given the scope the tool needs."""


@dataclass
class Caller:
    user: Any
    token: Any
    scopes: frozenset[str]
    transport: str  # api.models.McpCall.Transport
    base_url: str  # pages are linked from here (the request's site over HTTP, SITE_URL over stdio)

    @property
    def token_id(self) -> str:
        return token_id(self.token)

    @property
    def organization_ids(self) -> list[int]:
        """The organizations the person is a member of (a superuser too: MCP acts as a member)."""
        return sorted(user_org_roles(self.user))

    def link(self, name: str, *args: object) -> str:
        return self.base_url + reverse(name, args=args)


def authenticate(key: str, *, transport: str, base_url: str) -> Caller:
    """The caller holding `key` (a knox token, as sent after `Token ` or `Bearer `). Raises
    rest_framework's AuthenticationFailed for a malformed, unknown, expired or revoked token, or an inactive user."""
    user, token = TokenAuthentication().authenticate_credentials(key.encode("utf-8", "replace"))
    return Caller(user=user, token=token, scopes=frozenset(scopes_of(token)), transport=transport, base_url=base_url)


@dataclass
class Call:
    """One tool call: the caller and, once a tool has found what it acts on, its organization
    (for the audit log)."""

    caller: Caller
    organization_id: int | None = field(default=None)

    def __post_init__(self) -> None:
        ids = self.caller.organization_ids
        if len(ids) == 1:  # most people belong to one: every call acts there
            self.organization_id = ids[0]

    def _seen(self, organization_id: int) -> None:
        self.organization_id = organization_id

    def number(self, raw: object, what: str) -> int:
        text = str(raw).strip()
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not (text.isascii() and text.isdigit()) \
                or len(text) > 18:
            raise NotFound(f"No {what} {raw!r} in your organizations.")
        return int(str(raw).strip())

    def workflow(self, raw: object) -> Workflow:
        pk = self.number(raw, "workflow")
        workflow = Workflow.objects.filter(pk=pk, organization_id__in=self.caller.organization_ids).first()
        if workflow is None:
            raise NotFound(f"No workflow {pk} in your organizations.")
        self._seen(workflow.organization_id)
        return workflow

    def run(self, raw: object) -> WorkflowRun:
        pk = self.number(raw, "run")
        run = (WorkflowRun.objects.filter(pk=pk, organization_id__in=self.caller.organization_ids)
               .select_related("workflow", "version").first())
        if run is None:
            raise NotFound(f"No run {pk} in your organizations.")
        self._seen(run.organization_id)
        return run

    def record(self, kind: object, raw: object) -> Any:
        if kind not in RECORD_MODELS:
            raise NotFound(f"No record kind {kind!r}: choose from {', '.join(RECORD_MODELS)}.")
        for organization_id in self.caller.organization_ids:
            record = record_in(organization_id, str(kind), raw)
            if record is not None:
                self._seen(organization_id)
                return record
        raise NotFound(f"No {kind} {raw!r} in your organizations.")

    def organization(self, slug: object) -> Organization:
        """The organization the caller names by slug, or their only one."""
        ids = self.caller.organization_ids
        if slug in (None, ""):
            if not ids:
                raise NotFound("You are not a member of any organization.")
            if len(ids) > 1:
                slugs = Organization.objects.filter(pk__in=ids).order_by("slug").values_list("slug", flat=True)
                raise NotFound("You belong to several organizations: name one with `organization` (its slug: "
                               + ", ".join(slugs) + ").")
            organization = Organization.objects.get(pk=ids[0])
        else:
            found = Organization.objects.filter(slug=str(slug), pk__in=ids).first()
            if found is None:
                raise NotFound(f"No organization “{slug}” of yours.")
            organization = found
        self._seen(organization.pk)
        return organization
