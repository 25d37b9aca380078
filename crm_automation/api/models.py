"""What the API keeps besides knox's tokens: the scopes a token was given, and the log of the
calls made through the MCP server (mcp_server/)."""

from django.conf import settings
from django.db import models
from knox.models import get_token_model

# What an MCP client may do with a token (mcp_server/server.py says which tool needs which):
# read (search, fetch, list, read workflows and runs, why), draft (new drafts, simulations and dry
# runs), run (real starts, retries, resumes, answers to approvals). The person's role in the
# organization is checked on top, by the services.
SCOPES = ("read", "draft", "run")
# A token made without scopes (every token made before scopes existed, and the sign-in that asks
# for none): the REST API is as it was, the MCP server only reads. A token made with scopes only
# reads on the REST API (token_auth.py).
DEFAULT_MCP_SCOPES = ("read",)


class TokenScopes(models.Model):
    """The scopes a token was made with (one row per token; none: DEFAULT_MCP_SCOPES). Deleted with
    the token, so a revoked or expired token leaves nothing behind."""

    token = models.OneToOneField(get_token_model(), on_delete=models.CASCADE, primary_key=True,
                                 related_name="scopes")
    scopes = models.JSONField(default=list, help_text="Some of read, draft, run.")

    class Meta:
        verbose_name_plural = "token scopes"

    def __str__(self) -> str:
        return ", ".join(self.scopes)


class McpCall(models.Model):
    """One tool call made through the MCP server: who, with which token, what they asked (secrets
    taken out) and how it ended. Written after the call, whatever its outcome; never changed."""

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        REFUSED = "refused", "refused"  # not found, no scope, a role, bad input, a state that forbids it
        ERROR = "error", "error"  # a fault of ours: the message names it, the traceback is in the log

    class Transport(models.TextChoices):
        HTTP = "http", "HTTP"
        STDIO = "stdio", "stdio"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    organization = models.ForeignKey("crm.Organization", null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="mcp_calls",
                                     help_text="The organization the call acted in (none: it named none of "
                                               "several, or nothing was found).")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="mcp_calls")
    token_id = models.CharField(max_length=16, blank=True,
                                help_text="The token's id (tokens.token_id), not the secret.")
    transport = models.CharField(max_length=8, choices=Transport.choices)
    tool = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict, help_text="As sent, with secrets and long texts cut.")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    message = models.TextField(blank=True, help_text="Why it was refused or failed; empty when it went well.")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "MCP call"
        indexes = [models.Index(fields=["organization", "-created_at", "-id"], name="mcp_call_org_newest")]

    def __str__(self) -> str:
        return f"{self.tool} ({self.outcome})"
