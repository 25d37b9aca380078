"""The CRM tools an `agent` step may call (config `tools`, an allow-list of these names).

Each tool is the matching tool-call node run under a key of its own: the step's n-th call is
`run:<id>:node:<node>[:<token>]:call:<n>`, so a redelivered or retried step finds the effect
its n-th call made (the node's `existing`) and never makes it again. The node's own checks
(`validate`) and code (`prepare`, `apply`, `deliver`) do the work, so a tool does exactly what
the node would, within the same limits:

- the run's organization only: the nodes scope every lookup by it; `search_records` too;
- `update_field` changes the run's own record (the node has no way to name another);
- `create_task` links the task to the run's record (no `project_id`, no assignee by name);
- `send_email` and `send_sms` only to an address or number of one of the organization's contacts
  or leads: a prompt that reads a customer's text cannot send the organization's data elsewhere;
- arguments are data, never templates: a value with `{{` is refused.

A refusal is the tool's answer to the model (and recorded on the step), not a failure of the
step: the model can correct itself. In a simulation or live debug the effect is made inside the
simulation's transaction (rolled back) and never delivered; the call records its preview.
"""

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django.db import transaction
from django.db.models import Q

from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, NotYet, Result
from crm_automation.automation.nodes.create_task import CreateTask
from crm_automation.automation.nodes.post_chat import PostSlack
from crm_automation.automation.nodes.send_email import SendEmail
from crm_automation.automation.nodes.send_sms import SendSms
from crm_automation.automation.nodes.update_field import UpdateField
from crm_automation.crm.models import Contact, Deal, Lead, Project
from crm_automation.crm.phones import e164

MAX_KEY = 100  # the effect rows' automation_key columns
MAX_RESULT = 4000  # characters of a tool's answer given back to the model
SEARCH_LIMIT = 10
Preview = Callable[[Result], Result]

TEXT = {"type": "string"}
SPECS: dict[str, dict[str, Any]] = {
    "search_records": {
        "description": "Find the organization's deals, leads, contacts or projects whose name, title or email "
                       f"contains the text (at most {SEARCH_LIMIT}).",
        "parameters": {"type": "object", "required": ["kind", "text"], "additionalProperties": False,
                       "properties": {"kind": {"type": "string", "enum": ["deal", "lead", "contact", "project"]},
                                      "text": TEXT}}},
    "create_task": {
        "description": "Create a task on the record this workflow runs for.",
        "parameters": {"type": "object", "required": ["title"], "additionalProperties": False,
                       "properties": {"title": TEXT, "description": TEXT,
                                      "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"]},
                                      "due_in_days": {"type": "integer", "minimum": 0, "maximum": 3650}}}},
    "update_field": {
        "description": "Change one field of the record this workflow runs for (e.g. probability, title, a stage "
                       "slug for stage, custom.<field> for the organization's own fields).",
        "parameters": {"type": "object", "required": ["field", "value"], "additionalProperties": False,
                       "properties": {"field": TEXT, "value": {"type": ["string", "number", "boolean"]}}}},
    "send_email": {
        "description": "Send an email to one of the organization's contacts or leads (by their address).",
        "parameters": {"type": "object", "required": ["to", "subject", "body"], "additionalProperties": False,
                       "properties": {"to": TEXT, "subject": TEXT, "body": TEXT}}},
    "send_sms": {
        "description": "Send an SMS to one of the organization's contacts (their number with country code).",
        "parameters": {"type": "object", "required": ["to", "body"], "additionalProperties": False,
                       "properties": {"to": TEXT, "body": TEXT}}},
    "post_slack": {
        "description": "Post a message to one of the organization's Slack channels (by the channel's name).",
        "parameters": {"type": "object", "required": ["channel", "text"], "additionalProperties": False,
                       "properties": {"channel": TEXT, "text": TEXT}}},
}
NAMES = tuple(SPECS)
NODES: dict[str, Action[Any]] = {"create_task": CreateTask(), "update_field": UpdateField(),
                                 "send_email": SendEmail(), "send_sms": SendSms(), "post_slack": PostSlack()}


class Refused(Exception):
    """The tool call is not done; the message is the model's answer and the step's record."""


def definitions(names: list[str]) -> list[dict[str, Any]]:
    """The tools as the provider is told about them (ai/tool_calling.py)."""
    return [{"name": name, **SPECS[name]} for name in names]


def check_config(tools: object) -> str | None:
    """Why an agent's `tools` setting is not a list of these names (None: it is)."""
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
        return f"must be a list of tool names: {', '.join(NAMES)}"
    unknown = [t for t in tools if t not in SPECS]
    if unknown:
        return f"“{unknown[0]}” is not a tool an agent may call; allowed: {', '.join(NAMES)}"
    if len(set(tools)) != len(tools):
        return "names a tool twice"
    return None


def call_key(ctx: ExecutionContext, n: int) -> ExecutionContext:
    """The context of the step's n-th tool call: its own effect key."""
    return replace(ctx, step=f"{ctx.step}:call:{n}", notes=[])


def run(name: str, arguments: dict[str, Any], ctx: ExecutionContext, n: int, *, allowed: list[str],
        preview: Preview | None = None) -> tuple[bool, Result]:
    """Call tool `name` as the step's n-th call: (done, its result or {"error": why})."""
    try:
        if name not in allowed:
            raise Refused(f"“{name[:60]}” is not a tool this step may call; it may call {', '.join(allowed)}")
        _check_arguments(name, arguments)
        if name == "search_records":
            return True, search(ctx.organization_id, str(arguments["kind"]), str(arguments["text"]))
        return True, _by_node(name, arguments, call_key(ctx, n), preview)
    except Refused as exc:
        return False, {"error": str(exc)}


def _check_arguments(name: str, arguments: dict[str, Any]) -> None:
    schema = SPECS[name]["parameters"]
    if "_unreadable" in arguments:
        raise Refused(f"the arguments are not a JSON object: {arguments['_unreadable'][:100]!r}")
    unknown = sorted(set(arguments) - set(schema["properties"]))
    if unknown:
        raise Refused(f"{name} takes no argument “{unknown[0][:60]}”; it takes {', '.join(schema['properties'])}")
    missing = [key for key in schema["required"] if arguments.get(key) in (None, "")]
    if missing:
        raise Refused(f"{name} needs {', '.join(missing)}")
    for key, value in arguments.items():
        if isinstance(value, dict | list):
            raise Refused(f"{key} must be a single value")
        if isinstance(value, str) and "{{" in value:
            raise Refused(f"{key}: a tool's arguments are values, not templates (no {{{{ … }}}})")


def _config(name: str, arguments: dict[str, Any], organization_id: int) -> dict[str, Any]:
    """The tool-call node's config for these arguments, within the tool's limits."""
    if name in ("send_email", "send_sms"):
        to = str(arguments["to"]).strip()
        if name == "send_email":
            known = Q(email__iexact=to)
            found = Contact.objects.filter(known, organization_id=organization_id).exists() or \
                Lead.objects.filter(known, organization_id=organization_id).exists()
        else:
            found = bool(e164(to)) and Contact.objects.filter(
                organization_id=organization_id, phone_e164=e164(to)).exists()
        if not found:
            raise Refused(f"“{to[:80]}” is not the {'address' if name == 'send_email' else 'number'} of one of the "
                          "organization's contacts or leads; nothing was sent")
        return {**arguments, "to": to}
    return dict(arguments)


def _by_node(name: str, arguments: dict[str, Any], ctx: ExecutionContext, preview: Preview | None) -> Result:
    if len(ctx.key) > MAX_KEY:
        raise Refused("the step's node id is too long to key a tool call; shorten it")
    node = NODES[name]
    config = _config(name, arguments, ctx.organization_id)
    problems = node.validate(config, trigger_type=ctx.trigger_type, organization_id=ctx.organization_id)
    if problems:
        raise Refused("; ".join(f"{where.removeprefix('config.')}: {why}" for where, why in problems))
    made = node.existing([ctx.key]).get(ctx.key)  # the n-th call of a redelivered step: made already
    if made is None:
        try:
            with transaction.atomic():
                prepared = node.prepare(config, ctx)
                (made,) = node.apply([(ctx, prepared)])
        except NotYet as later:
            raise Refused(f"not done now: {later.reason}") from None
        except ActionFailed as exc:
            raise Refused(str(exc)) from None
        fresh = True
    else:
        fresh = False
    if ctx.simulating:
        return preview(made) if preview is not None else made
    if not node.external:
        return made
    outcome = None if fresh else node.settle_existing(made)
    if outcome is None:
        (outcome,) = node.deliver([(ctx, made)], None)
    if outcome is None:  # (no deadline was given: not reached)
        raise Refused("not delivered yet")
    ok, result, error = outcome
    if not ok:
        raise Refused(error)
    return result


def search(organization_id: int, kind: str, text: str) -> Result:
    """Up to SEARCH_LIMIT of the organization's records of `kind` matching `text`."""
    text = text.strip()[:100]
    rows: list[dict[str, Any]]
    if kind == "deal":
        rows = [{"id": str(d.pk), "title": d.title, "amount": str(d.amount), "stage": d.stage.slug}
                for d in Deal.objects.filter(organization_id=organization_id, title__icontains=text)
                .select_related("stage").order_by("-updated_at")[:SEARCH_LIMIT]]
    elif kind == "lead":
        rows = [{"id": str(x.pk), "name": x.name, "email": x.email, "status": x.status}
                for x in Lead.objects.filter(Q(name__icontains=text) | Q(email__icontains=text),
                                             organization_id=organization_id).order_by("-updated_at")[:SEARCH_LIMIT]]
    elif kind == "contact":
        rows = [{"id": str(c.pk), "name": f"{c.first_name} {c.last_name}".strip(), "email": c.email,
                 "phone": c.phone_e164}
                for c in Contact.objects.filter(
                    Q(first_name__icontains=text) | Q(last_name__icontains=text) | Q(email__icontains=text),
                    organization_id=organization_id).order_by("pk")[:SEARCH_LIMIT]]
    elif kind == "project":
        rows = [{"id": str(p.pk), "name": p.name, "status": p.status}
                for p in Project.objects.filter(organization_id=organization_id, name__icontains=text)
                .order_by("-updated_at")[:SEARCH_LIMIT]]
    else:
        raise Refused("kind must be deal, lead, contact or project")
    return {"kind": kind, "found": rows}


def answer_text(done: bool, result: Result) -> str:
    """What the model reads back: the result (or the refusal) as JSON, cut to a size."""
    text = json.dumps(result if done else {"refused": result.get("error")}, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_RESULT else text[:MAX_RESULT] + " …(cut)"
