"""A workflow drafted from plain language (docs/product.md#ai-nodes). The model is given the
document format, what this organization has (stages, events, tools) and shipped templates as
examples, and answers with a YAML workflow document (docs/product.md#documents) and the
assumptions it made. The document goes through the same checks as an uploaded file; when
they find problems, the model is shown them once and asked to correct its draft. What passes is
saved as a draft (never activated: a person reviews it in the builder); what does not pass is
refused with the problems, and nothing is saved.

Each question is kept as an `AiCall` (node type "authoring"), so its tokens and cost count.
"""

import time
import uuid
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.ai import providers
from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import AiCall, AiCallStatus, Workflow
from crm_automation.automation.services.versions import _create_from, _free_name, parse_yaml
from crm_automation.automation.workflow_templates import get as template
from crm_automation.crm.models import Organization, Stage
from crm_automation.crm.selectors import user_has_role

MAX_DESCRIPTION = 2000
EXAMPLES = ("won-deal-kickoff", "weekly-pipeline-review", "stale-deal-nudge")
ANSWER = {"type": "object", "additionalProperties": False, "required": ["yaml", "assumptions"],
          "properties": {"yaml": {"type": "string"}, "assumptions": {"type": "array", "items": {"type": "string"}}}}
INSTRUCTIONS = """You write workflows for a CRM's automation engine as YAML documents in the format of the examples.
Rules:
- Every node has `type: workflow` and `data: {{subtype, label, config}}`; exactly one trigger node (subtype chat-app,
  schedule or manual); node ids are kebab-case; edges connect node ids (condition nodes use sourceHandle
  condition-true / condition-false, parallel nodes branch-0, branch-1 …, routers route-0, route-1 …).
- Set `_status: draft`. Use only the events, stages, tools and fields listed here.
- Templates use {{{{deal.title}}}}, {{{{deal.contact.email}}}}, {{{{lead.email}}}}, {{{{trigger.changed.amount.new}}}},
  or an earlier node's output by its label ({{{{Draft SMS}}}}).
- Keep it as small as the description allows. Where the description leaves something open, choose the sensible
  default and list it in `assumptions` (short sentences a person can check).
Answer with JSON: {{"yaml": "<the YAML document>", "assumptions": ["…"]}}.

Events (chat-app `event`): {events}
Stages of this organization (slug: name): {stages}
Tools (tool-call `toolName`): crm/send_email (to, subject, body), crm/create_task (title, assignee: owner or a username,
priority: low/normal/high, description, due_in_days), crm/update_record (field, value), http/request (target, body).
Other subtypes: condition (rules: field/operator/value, combinator), wait (delayAmount, delayUnit), desktop-notification
(title, body, recipients: admins/members/owner), user-input (promptText), agent (additionalPrompt), router
(classificationPrompt, routes), parallel, merge, loop, function, sub-workflow.
Deal fields: {deal_fields}. Lead fields: {lead_fields}.

Examples:
{examples}"""


@dataclass
class Draft:
    workflow: Workflow
    assumptions: list[str]
    corrected: bool  # the first draft had problems the model then corrected


def _instructions(organization: Organization) -> str:
    stages = ", ".join(f"{slug}: {name}" for slug, name in Stage.objects.filter(organization=organization)
                       .order_by("order", "pk").values_list("slug", "name"))
    fields = catalog.fields_for(catalog.DEAL_UPDATED)
    deal_fields = ", ".join(sorted(p for p in fields if p.startswith("deal.")))
    lead_fields = ", ".join(sorted(p for p in catalog.fields_for(catalog.LEAD_UPDATED) if p.startswith("lead.")))
    events = ", ".join(f"{value} ({words})" for value, words in catalog.TRIGGER_CHOICES
                       if value not in (*catalog.MANUAL, catalog.SCHEDULE))
    examples = "\n---\n".join(template(key).text for key in EXAMPLES)
    return INSTRUCTIONS.format(events=events, stages=stages, deal_fields=deal_fields, lead_fields=lead_fields,
                               examples=examples)


def _ask(provider, organization: Organization, system: str, prompt: str) -> dict:
    """One question, kept as an AiCall; the parsed answer or ValidationError."""
    call = AiCall.objects.create(organization=organization, automation_key=f"authoring:{uuid.uuid4()}",
                                 node_type="authoring", status=AiCallStatus.SENDING, attempts=1,
                                 request={"system": system, "prompt": prompt, "max_tokens": 4000})
    started = time.monotonic()
    fields: dict[str, object] = {}
    try:
        completion = providers.complete(provider, system=system, prompt=prompt, max_tokens=4000, schema=ANSWER)
    except providers.ProviderError as exc:
        fields.update(status=AiCallStatus.FAILED, error=str(exc), provider=provider.name)
        answer = None
    else:
        answer = completion.data if isinstance(completion.data, dict) else None
        fields.update(status=AiCallStatus.SUCCEEDED if answer else AiCallStatus.FAILED,
                      answer={"output": answer or completion.text}, **provider.usage(completion),
                      error="" if answer else "the answer is not the JSON asked for")
    AiCall.objects.filter(pk=call.pk).update(finished_at=timezone.now(),
                                             duration_ms=int((time.monotonic() - started) * 1000), **fields)
    if answer is None or not isinstance(answer.get("yaml"), str):
        raise ValidationError(f"The AI model gave no usable draft ({fields.get('error') or 'no YAML in its answer'}); "
                              "nothing was saved. Try again, or describe the workflow differently.")
    return answer


def _checked(text: str, organization: Organization) -> tuple[dict | None, list[str]]:
    try:
        return parse_yaml(text, organization.pk), []
    except DocumentError as exc:
        return None, exc.messages


def workflow_draft_from_description(*, organization: Organization, by, description: str) -> Draft:
    """A new draft of `organization` written by the AI model from `description`. `by` must be an
    ops member or admin. Raises PermissionDenied, or ValidationError saying what went wrong
    (nothing is saved then)."""
    if by is not None and not user_has_role(by, organization.pk, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can create workflows.")
    description = (description or "").strip()
    if not description:
        raise ValidationError("Describe the workflow: what starts it and what it should do.")
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"The description is longer than {MAX_DESCRIPTION:,} characters; shorten it.")
    provider = providers.configured()
    if provider is None:
        raise ValidationError(f"The AI model cannot draft workflows: {providers.not_configured_message()}.")
    system = _instructions(organization)
    answer = _ask(provider, organization, system, f"Write this workflow: {description}")
    parsed, problems = _checked(answer["yaml"], organization)
    corrected = False
    if problems:
        corrected = True
        answer = _ask(provider, organization, system,
                      f"Write this workflow: {description}\n\nYour draft was:\n{answer['yaml']}\n\nIt has these "
                      "problems; answer with the corrected document:\n- " + "\n- ".join(problems))
        parsed, problems = _checked(answer["yaml"], organization)
        if problems:
            raise ValidationError(["The AI model's draft has problems it could not correct, so nothing was saved. "
                                   "Try describing the workflow differently.", *problems])
    assert parsed is not None, "a draft without problems was read"
    document, definition = parsed["document"], parsed["definition"]
    assumptions = [str(a)[:300] for a in answer.get("assumptions") or [] if str(a).strip()][:20]
    with transaction.atomic():
        workflow = _create_from(definition, organization=organization, by=by,
                                # (a name over 200 characters was refused above and corrected)
                                name=_free_name(organization.pk, str(document["name"]).strip()),
                                key=str(document.get("id") or ""),
                                description=str(document.get("description") or description)[:2000])
    return Draft(workflow=workflow, assumptions=assumptions, corrected=corrected)
