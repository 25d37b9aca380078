"""The workflow builder: the flow drawn as cards from the trigger down, edited without JSON.

The page carries the workflow document (docs/product.md#documents) and a catalog of what the
organization's workflows may name (events, stages in pipeline order, members, fields and their
types, operators). The script (static/web/builder.js) edits the document and posts it back whole;
the same services as the YAML import and the API check and save it, and their errors come back
with their place (`nodes[send-email].data.config.defaults.to`,
`nodes[mood].data.config.routes[1].label`) so the form shows each at its input; an edge's
error (`edges[3].sourceHandle`) is shown on the step it leaves.

AI steps (`agent`, `router`) are built like any other; without a provider
(`ai.providers.configured()`) the page says on each AI step that the workflow can be saved as
a draft but not activated (activation refuses it and says why).
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from crm_automation import bounded_reader
from crm_automation.automation.ai import providers
from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes import control
from crm_automation.automation.nodes.function import FUNCTIONS
from crm_automation.automation.nodes.notify import RECIPIENTS
from crm_automation.automation.services.simulation import ENTITIES
from crm_automation.automation.services.versions import (
    workflow_create_from_document,
    workflow_document,
    workflow_update_from_document,
)
from crm_automation.automation.services.workflows import can_edit, check_edit, free_name, has_unpublished_changes
from crm_automation.automation.triggers import business_events as event_triggers
from crm_automation.automation.triggers import record_changes as field_changes
from crm_automation.crm import business_events, custom_fields
from crm_automation.crm.models import CustomField, Lead, Membership, Organization, Project, Task
from crm_automation.refusals import Refused, StaleEdit
from crm_automation.web.selectors import stage_names
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import forbidden, workflow_of
from crm_automation.web.views.workflow_pages import is_stale, last_edit, tab_links
from crm_automation.webhooks.action import METHODS as http_methods
from crm_automation.webhooks.models import ChatChannel, WebhookEndpoint, WebhookTarget

EVENTS = list(catalog.TRIGGER_CHOICES)  # manual_* become subtype "manual" in the document (builder.js)
STARTER_NAME = "New workflow"
AI_NOT_SET_UP = ("AI is not set up on this server: set AI_PROVIDER, AI_MODEL and AI_API_KEY; the workflow can be "
                 "saved as a draft but not activated.")


def starter_document(name: str = STARTER_NAME) -> dict:
    """What "New workflow" opens: a deal moving to a stage, and nothing yet to do."""
    return {"id": "", "name": name, "description": "",
            "settings": {"errorPolicy": "abort", "reenrollment": "not_while_running", "timeoutSeconds": 60},
            "nodes": [{"id": "trigger", "type": "workflow", "data": {
                "subtype": "chat-app", "label": "Trigger", "config": {"event": "deal_stage_change"}}}],
            "edges": []}


def own_fields(fields: dict, own: list[CustomField]) -> dict[str, str]:
    """The organization's own fields a trigger's workflows read, by path, as conditions compare
    them: a deal's on a deal's trigger, its contact's too, a lead's on a lead's, a contact's on a
    contact's."""
    found = {}
    for field in own:
        for head in (f"{field.entity}.", f"deal.{field.entity}.") if field.entity == "contact" else (
                f"{field.entity}.",):
            if f"{head}custom" in fields:
                found[f"{head}custom.{field.key}"] = custom_fields.kind_of(field.kind)
    return found


def own_names(own: list[CustomField]) -> dict[str, str]:
    names = {}
    for field in own:
        entity = field.get_entity_display()
        names[f"{field.entity}.custom.{field.key}"] = f"{entity} › {field.label}"
        if field.entity == "contact":
            names[f"deal.contact.custom.{field.key}"] = f"Deal › Contact › {field.label}"
    return names


def builder_catalog(organization: Organization) -> dict:
    """Everything the builder's selects and the variable picker offer, for this organization."""
    own = list(CustomField.objects.filter(organization=organization))
    members = (Membership.objects.filter(organization=organization).select_related("user")
               .order_by("user__username"))
    # Another system's events, by the name a document's trigger gives (`event: invoice.overdue`);
    # the ones that are the CRM's own changes too are already among the CRM's triggers.
    known = business_events.catalog(organization.pk)  # (read once: the events, their fields and names)
    declared = [d for d in known.values() if catalog.is_event(d.trigger_type)]
    with catalog.declared_events(event_triggers.declared_fields(organization.pk, known)):
        event_fields = {d.name: dict(catalog.fields_for(d.trigger_type)) for d in declared}
    return {
        "events": [{"value": value, "label": label, "entity": catalog.TRIGGER_ENTITY.get(value, "")}
                   for value, label in EVENTS] + [
            {"value": d.name, "label": f"Event: {d.name}", "entity": d.about, "description": d.description}
            for d in declared],
        "stages": [{"value": slug, "label": name} for slug, name in stage_names(organization.pk).items()],
        "members": [{"value": m.user.username, "label": m.user.get_full_name() or m.user.username} for m in members],
        "endpoints": list(WebhookEndpoint.objects.filter(organization=organization).order_by("name")
                          .values_list("name", flat=True)),
        # Webhook targets by name, with their URL: an HTTP step's card says the host it calls.
        "chat_channels": [{"value": name, "label": f"{name} ({kind.title()})", "kind": kind}
                          for name, kind in ChatChannel.objects.filter(organization=organization, active=True)
                          .order_by("name").values_list("name", "kind")],
        "targets": [{"value": name, "url": url} for name, url in WebhookTarget.objects.filter(
            organization=organization).order_by("name").values_list("name", "url")],
        "workflows": [{"value": key, "label": name} for key, name in Workflow.objects.filter(
            organization=organization).exclude(status=WorkflowStatus.ARCHIVED).order_by("name")
            .values_list("key", "name")],
        "fields": {trigger: {**{path: kind for path, kind in catalog.fields_for(trigger).items()
                                if not path.startswith("trigger.deal.") and not path.startswith("trigger.lead.")},
                             **own_fields(catalog.fields_for(trigger), own)}
                   for trigger in catalog.TRIGGER_TYPES} | {
            name: {**fields, **own_fields(fields, own)} for name, fields in event_fields.items()},
        # A variable's human name, the same everywhere.
        "names": {**{path: catalog.variable_name(path) for fields in event_fields.values() for path in fields},
                  **catalog.variable_names(), **own_names(own), **event_triggers.field_names(organization.pk, known)},
        "custom_choices": {f"{f.entity}.custom.{f.key}": f.choices for f in own if f.kind == "choice"},
        "operators": [{"value": value, "label": label} for value, label in catalog.OPERATORS.items()],
        "ordering": sorted(catalog.ORDERING_OPERATORS), "valueless": sorted(catalog.VALUELESS_OPERATORS),
        # Standard fields, then the organization's own ("custom.<key>"), as update_field names them.
        "updatable": {entity: {**fields, **{f"custom.{f.key}": custom_fields.kind_of(f.kind) for f in own
                                            if f.entity == entity}}
                      for entity, fields in catalog.UPDATABLE_FIELDS.items()},
        "watchable": {trigger: list(field_changes.FIELDS[entity]) for trigger, entity in catalog.UPDATED.items()},
        "lead_statuses": [{"value": value, "label": label} for value, label in Lead.Status.choices],
        "lead_sources": [{"value": value, "label": label} for value, label in Lead.Source.choices],
        "project_statuses": [{"value": value, "label": label} for value, label in Project.Status.choices],
        "priorities": [{"value": value, "label": label} for value, label in Task.Priority.choices],
        "recipients": list(RECIPIENTS), "roles": list(questions.ROLES), "units": list(control.UNITS),
        "later": sorted(catalog.LATER_NODES),
        "functions": [{"value": ref, "arguments": dict(function.arguments)} for ref, function in FUNCTIONS.items()],
        "methods": list(http_methods),
        "ai": {"configured": providers.configured() is not None, "notice": AI_NOT_SET_UP},
        "debuggable": ENTITIES,  # trigger type → the record Live Debug replays it on
    }


def _errors(exc: Exception, document: dict | None = None) -> list[dict]:
    """Errors as the builder shows them: the node and the field they belong to, when there is one.
    An edge's error (`edges[2].sourceHandle`) belongs to the node it leaves (`document`'s edge),
    when that node is in the document; otherwise it is shown above the flow."""
    edges = document.get("edges") if isinstance(document, dict) else None
    nodes = document.get("nodes") if isinstance(document, dict) else None
    node_ids = {n.get("id") for n in nodes if isinstance(n, dict)} if isinstance(nodes, list) else set()
    if isinstance(exc, DocumentError):
        found = [(place, message) for place, message, _line in exc.errors]
    elif isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        found = [(name, " ".join(errors.messages if hasattr(errors, "messages") else map(str, errors)))
                 for name, errors in exc.message_dict.items()]
    elif isinstance(exc, StaleEdit) and exc.fields:  # each at the field changed meanwhile
        found = list(exc.fields.items())
    else:
        found = [("", message) for message in getattr(exc, "messages", [str(exc)])]
    shown = []
    for place, message in found:
        node, field = "", ""
        if place.startswith("nodes[") and "]" in place:
            node = place[len("nodes["):place.index("]")]
            rest = place[place.index("]") + 1:]
            for prefix in (".data.config.defaults.", ".data.config.", ".data."):
                if rest.startswith(prefix):
                    field = rest[len(prefix):]
                    break
        elif place.startswith("edges[") and "]" in place and isinstance(edges, list):
            index = place[len("edges["):place.index("]")]
            edge = edges[int(index)] if index.isascii() and index.isdigit() and int(index) < len(edges) else None
            if isinstance(edge, dict) and isinstance(edge.get("source"), str) and edge["source"] in node_ids:
                node = edge["source"]
        shown.append({"place": place, "message": message, "node": node, "field": field})
    return shown


def _page(request, *, workflow: Workflow | None, document: dict):
    editable = request.place.can_edit if workflow is None else can_edit(request.user, workflow)
    return render(request, "web/builder.html", {
        "place": request.place, "section": "workflows", "workflow": workflow, "editable": editable,
        "live_changes": workflow is not None and has_unpublished_changes(workflow),
        "breaks": list(workflow.breaks.all()[:5]) if workflow else [],
        "tabs": tab_links(workflow) if workflow else [], "tab": "builder",
        "builder_data": {"document": document, "catalog": builder_catalog(request.place.organization),
                         "revision": workflow.draft_revision if workflow else None,
                         "debug_url": reverse("web:debug", args=[workflow.pk]) if workflow and editable else None,
                         "search_url": reverse("web:record-search"),
                         "save_url": request.path, "editable": editable,
                         "status": workflow.status if workflow else "draft"}})


def _posted(request) -> tuple[dict, int | None]:
    try:
        body = bounded_reader.read_json(request.body or b"{}", bounded_reader.DOCUMENT)
    except bounded_reader.InputRefused as exc:
        raise DocumentError([("", f"the builder sent something we cannot read: {exc}", None)]) from None
    document = body.get("document") if isinstance(body, dict) else None
    if not isinstance(document, dict):
        raise DocumentError([("", "the builder sent no workflow; reload the page", None)])
    revision = body.get("revision")
    return document, revision if isinstance(revision, int) and not isinstance(revision, bool) else None


def conflict_of(request, workflow_id: int) -> dict:
    """What is saved now, for a page whose save was refused as stale: the document and its
    revision (saving on top of it is keeping one's changes), who saved it and when."""
    workflow = Workflow.objects.select_related("edited_by").get(pk=workflow_id)
    document = workflow_document(workflow)
    document.pop("_status", None)
    return {"document": document, "revision": workflow.draft_revision, **last_edit(workflow, request.user)}


def _save(request, save, workflow_id: int | None = None) -> JsonResponse:
    """Save through `save`; its refusal comes back as the builder shows it: 400 with each error
    at its place, 403 for a role, 409 for "not now" (an archived workflow), and 409 with what
    is saved now for a stale edit."""
    document = None
    try:
        document, revision = _posted(request)
        workflow = save(document, revision)
    except PermissionDenied as exc:
        return JsonResponse({"errors": [{"place": "", "message": str(exc), "node": "", "field": ""}]}, status=403)
    except (DocumentError, ValidationError, Refused) as exc:
        errors = _errors(exc, document)
        if workflow_id is not None and is_stale(exc):
            # The builder shows what the other person changed and offers to keep this
            # person's changes on top of it (static/web/builder_merge.js) or to discard them.
            return JsonResponse({"errors": errors, "conflict": conflict_of(request, workflow_id)}, status=409)
        return JsonResponse({"errors": errors}, status=409 if isinstance(exc, Refused) else 400)
    live = workflow.status in (WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED)
    return JsonResponse({
        "message": (f"Saved “{workflow.name}”. Publish it to make the changes live." if live
                    else f"Saved the draft “{workflow.name}”."),
        "revision": workflow.draft_revision, "url": reverse("web:edit", args=[workflow.pk]),
        "document": workflow_document(workflow)})


@require_http_methods(["GET", "POST"])
@org_page
def builder_new(request):
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot make workflows.")
    if request.method == "GET":
        # A name no other workflow has ("New workflow (2)" …): names are unique in the organization.
        name = free_name(request.place.organization.pk, STARTER_NAME)
        return _page(request, workflow=None, document=starter_document(name))
    return _save(request, lambda document, _revision: workflow_create_from_document(
        organization=request.place.organization, by=request.user, document=document))


@require_http_methods(["GET", "POST"])
@org_page
def builder_edit(request, pk: int):
    workflow = workflow_of(request, pk)
    if request.method == "GET":
        document = workflow_document(workflow)
        document.pop("_status", None)
        return _page(request, workflow=workflow, document=document)
    try:
        check_edit(request.user, workflow)  # before the body is read
    except PermissionDenied as exc:
        return JsonResponse({"errors": [{"place": "", "message": str(exc), "node": "", "field": ""}]}, status=403)
    except Refused as exc:  # archived
        return JsonResponse({"errors": _errors(exc)}, status=409)
    return _save(request, lambda document, revision: workflow_update_from_document(
        workflow_id=workflow.pk, by=request.user, document=document, expected_revision=revision),
        workflow_id=workflow.pk)
