"""A workflow's own pages beside the builder: its YAML (edit with errors by line), its versions
(compare, roll back), publishing the saved edits, simulating it on a deal or lead, and a picture
of its flow. Thin views: versioning, services and simulation do every write and every check;
what is here turns their answers into words."""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from crm_automation import bounded_reader
from crm_automation.automation.ai import budget
from crm_automation.automation.definition import catalog, documents, graph
from crm_automation.automation.models import Workflow, WorkflowStatus, WorkflowVersion
from crm_automation.automation.ops import costs, kpis
from crm_automation.automation.services import impact
from crm_automation.automation.services.simulation import replayed_entity, simulate
from crm_automation.automation.services.versions import (
    versions_compare,
    workflow_document,
    workflow_export_yaml,
    workflow_rollback,
    workflow_update_from_document,
)
from crm_automation.automation.services.workflows import can_edit, has_unpublished_changes, is_live
from crm_automation.crm import business_events
from crm_automation.crm.models import Deal
from crm_automation.crm.selectors import RECORD_MODELS, record_in, shown
from crm_automation.refusals import Refused, StaleEdit, reasons
from crm_automation.web import graph_picture
from crm_automation.web.rows import with_values
from crm_automation.web.selectors import stage_names
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, forbidden, workflow_of
from crm_automation.web.views.costs import usage_rows
from crm_automation.web.views.history import steps_of
from crm_automation.web.words import moment
from crm_automation.webhooks.models import WebhookTarget

MAX_YAML = 200_000  # characters; a workflow of 50 steps exports to well under 50 000
RECENT_RECORDS = 200


def _page(request, workflow: Workflow, tab: str, template: str, context: dict, status: int = 200):
    """Every page here: the place, the section, the tab bar's workflow and which tab is open."""
    return render(request, template, {"place": request.place, "section": "workflows", "workflow": workflow,
                                      "tab": tab, "tabs": tab_links(workflow), **context}, status=status)


def _edit_refusal(request, workflow: Workflow) -> str:
    """Why the person's role does not let them change this workflow; "" when it does. (The
    services check again; this only spares the person a form they cannot send.)"""
    if not request.place.can_edit:
        return "Viewers read workflows; ops members and admins change them."
    if is_live(workflow) and not request.place.can_manage:
        return (f"“{workflow.name}” is {workflow.get_status_display().lower()}: only admins change a live "
                "workflow; ops members edit drafts.")
    return ""


# --- YAML ---------------------------------------------------------------------------------------
@dataclass
class YamlConflict:
    """Someone saved since this form was opened: their version (shown beside this person's text,
    which stays in the box), who saved it and when, the revision a second save is made on (so it
    keeps this person's text), and what that save would change in theirs."""
    text: str
    revision: int
    by: str
    at: str
    changes: list  # of Change, from their version to this person's text


@dataclass
class YamlError:
    line: int | None
    place: str
    message: str
    source: str = ""  # the text of that line, to quote next to the message
    conflict: YamlConflict | None = None

    @property
    def sentence(self) -> str:
        """“Line 12: nodes[send-email].data.config.to: …”"""
        where = f"Line {self.line}: " if self.line else ""
        return f"{where}{self.place}: {self.message}" if self.place else f"{where}{self.message}"


def _yaml_errors(exc: documents.DocumentError, text: str) -> list[YamlError]:
    lines = text.splitlines()
    return [YamlError(line, place, message, lines[line - 1].strip() if line and line <= len(lines) else "")
            for place, message, line in exc.errors]


def _yaml_save(request, workflow: Workflow, text: str) -> list[YamlError]:
    """Parse and save; the problems (with their lines) when nothing was saved."""
    if len(text) > MAX_YAML:
        return [YamlError(None, "", f"The text is longer than {MAX_YAML:,} characters.")]
    revision = request.POST.get("revision", "")
    if revision and bounded_reader.read_int(revision) is None:
        return [YamlError(None, "", "The form came back with a revision that is not a number, so it cannot tell "
                                    "whether someone saved meanwhile: reload the page and make the change again.")]
    document: dict = {}
    try:
        document, tree = documents.from_yaml(text)
        saved = workflow_update_from_document(
            workflow_id=workflow.pk, by=request.user, document=document, tree=tree,
            expected_revision=bounded_reader.read_int(revision))
    except documents.DocumentError as exc:
        return _yaml_errors(exc, text)
    except (ValidationError, PermissionDenied, Refused) as exc:
        if is_stale(exc):
            return [_stale_yaml(request, workflow, document)]
        return [YamlError(None, "", message) for message in reasons(exc)]
    messages.success(request, _saved_words(workflow, saved))
    return []


def is_stale(exc: Exception) -> bool:
    """A refusal because someone saved since the page opened the workflow (its revision, or a
    field changed under the lock), not because what was sent is wrong: the page shows what is
    saved now, by whom and when, and lets the person save on top of it."""
    return isinstance(exc, StaleEdit)


def _stale_yaml(request, workflow: Workflow, mine: dict) -> YamlError:
    """The refusal of a stale YAML save, with what is saved now beside this person's text."""
    current = Workflow.objects.select_related("edited_by").get(pk=workflow.pk)
    theirs = workflow_document(current)
    theirs.pop("_status", None)
    try:  # what saving this person's text would change in theirs (the text may be odd: then nothing)
        changes, _ = changes_in_words(theirs, {k: v for k, v in mine.items() if k != "_status"},
                                      stage_names(workflow.organization_id))
    except (KeyError, TypeError, ValueError, AttributeError):
        changes = []
    edit = last_edit(current, request.user)
    conflict = YamlConflict(text=workflow_export_yaml(current), revision=current.draft_revision,
                            by=edit["by"], at=edit["at"], changes=changes)
    return YamlError(None, "", f"{edit['by']} saved this workflow on {edit['at']}, after you opened this page, so "
                               "your text was not saved. It is still in the box below, beside their version: "
                               "save again to replace theirs with yours, or discard yours.", conflict=conflict)


def last_edit(workflow: Workflow, viewer=None) -> dict[str, str]:
    """Who saved the workflow's last edit and when, in words: {"by": "Olivia Owner", "at":
    "5 Dec 2026, 14:03:07 CET"} (“(you, in another tab)” when it was `viewer`)."""
    who = workflow.edited_by
    by = (who.get_full_name() or who.username) if who is not None else "Someone else"
    if who is not None and viewer is not None and who.pk == viewer.pk:
        by += " (you, in another tab)"
    return {"by": by, "at": moment(workflow.edited_at or workflow.updated_at)}


def _saved_words(before: Workflow, after: Workflow) -> str:
    if after.draft_revision == before.draft_revision:
        return "Nothing to save: the YAML is the workflow as it already is."
    if is_live(after):
        return f"Saved. Version {after.version} still runs: publish to make these edits live."
    return f"Saved as version {after.version}."


@require_http_methods(["GET", "POST"])
@org_page
def workflow_yaml(request, pk: int):
    """The workflow as YAML in a form; errors name their line, and the lines are numbered."""
    workflow = workflow_of(request, pk)
    errors: list[YamlError] = []
    if request.method == "POST":
        refusal = _edit_refusal(request, workflow)
        if refusal:
            return forbidden(request, refusal)
        text = request.POST.get("yaml", "")
        errors = _yaml_save(request, workflow, text)
        if not errors:
            return redirect("web:yaml", pk=workflow.pk)
    else:
        text = workflow_export_yaml(workflow)
    wrong = {e.line for e in errors if e.line}
    conflict = next((e.conflict for e in errors if e.conflict), None)
    numbers = [{"n": n, "wrong": n in wrong} for n in range(1, max(len(text.splitlines()), 1) + 1)]
    return _page(request, workflow, "yaml", "web/workflow_yaml.html", {
        "text": text, "errors": errors, "numbers": numbers, "rows": len(numbers) + 1,
        "editable": not _edit_refusal(request, workflow) and can_edit(request.user, workflow),
        "refusal": _edit_refusal(request, workflow),
        # After an error the form keeps the revision it was opened at: sending it again must not
        # overwrite what someone else saved meanwhile.
        "revision": request.POST.get("revision", "") if errors else workflow.draft_revision,
        # …unless the error is that someone did: saving again on their revision keeps this text.
        "conflict": conflict, **({"revision": conflict.revision} if conflict else {}),
    }, status=400 if errors else 200)


# --- Changes in words (versions and publish) -----------------------------------------------------
@dataclass
class Change:
    kind: str  # added, removed, changed, connected, disconnected, settings: a CSS class and a word
    sentence: str
    details: list[str] = field(default_factory=list)


SETTING_NAMES = {"errorPolicy": "When a step fails", "reenrollment": "Runs again for a record",
                 "timeoutSeconds": "Time limit of a step"}
SETTING_VALUES = {
    "errorPolicy": {documents.ERROR_POLICY[v]: label for v, label in Workflow.ErrorHandling.choices},
    "reenrollment": dict(Workflow.Reenrollment.choices),
}


def _node_type(node: dict) -> str | None:
    """The step type of a document node (None for the trigger): what `subtype` and, for tool
    calls, `toolName` stand for."""
    data = node.get("data") or {}
    subtype: Any = data.get("subtype")  # (anything a draft holds)
    if subtype in documents.TRIGGERS:
        return None
    if subtype == "tool-call":
        tool: Any = (data.get("config") or {}).get("toolName")
        return documents.ACTIONS.get(tool)
    return documents.PLAIN.get(subtype, subtype)


def _named(node: dict) -> str:
    label = (node.get("data") or {}).get("label") or node.get("id", "")
    kind = _node_type(node)
    if kind is None:
        return "the trigger" if _automatic_label(node) else f"the trigger “{label}”"
    return f"“{label}” ({graph_picture.type_in_words(kind)})"


def _words(key: str) -> str:
    """deal_stage / delayAmount → “deal stage”, “delay amount”."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key).replace("_", " ").replace("-", " ").lower()


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """{“rules 1 value”: 5000, …}: each leaf of a config by a readable path."""
    if isinstance(value, dict) and value:
        found: dict[str, object] = {}
        for key, item in value.items():
            found.update(_flatten(item, f"{prefix} {_words(str(key))}".strip()))
        return found
    if isinstance(value, list) and value:
        found = {}
        for i, item in enumerate(value, start=1):
            found.update(_flatten(item, f"{prefix} {i}".strip()))
        return found
    return {prefix or "value": value}


def _node_settings(node: dict) -> dict[str, object]:
    data = node.get("data") or {}
    config = data.get("config") or {}
    if data.get("subtype") == "tool-call":
        config = config.get("defaults") or {}
    kind = _node_type(node)
    found: dict[str, object] = {"type": graph_picture.type_in_words(kind) if kind else "Trigger"}
    found.update(_flatten(config))
    if data.get("onError") is not None:
        found.update(_flatten(data["onError"], "on error"))
    return found


def _value(key: str, value, names: dict[str, str]) -> str:
    if key == "type":
        return str(value)
    if key == "event":
        return dict(catalog.TRIGGER_CHOICES).get(value, shown(value))
    if key in ("to stage", "from stage") and value in names:
        return names[value]
    return "empty" if value in ({}, []) else shown(value)


def _automatic_label(node: dict) -> bool:
    """Whether a trigger's label is the one export writes by itself (“Deal stage changes to
    won”): it follows the trigger's settings, so its change is not a rename worth saying."""
    label = str((node.get("data") or {}).get("label") or "")
    return _node_type(node) is None and any(label.startswith(words) for _, words in catalog.TRIGGER_CHOICES)


def _node_details(old: dict, new: dict, names: dict[str, str]) -> list[str]:
    details = []
    old_label, new_label = (old.get("data") or {}).get("label"), (new.get("data") or {}).get("label")
    if old_label != new_label and not (_automatic_label(old) and _automatic_label(new)):
        details.append(f"renamed from “{old_label}” to “{new_label}”")
    before, after = _node_settings(old), _node_settings(new)
    for key in [*before, *(k for k in after if k not in before)]:
        if before.get(key, "∅") == after.get(key, "∅"):
            continue
        was = _value(key, before[key], names) if key in before else "not set"
        now = _value(key, after[key], names) if key in after else "not set"
        details.append(f"{key}: {was} → {now}")
    return details


def _node_summary(node: dict, names: dict[str, str]) -> list[str]:
    """An added node's settings, one “key: value” each."""
    return [f"{key}: {_value(key, value, names)}" for key, value in _node_settings(node).items() if key != "type"]


def _edge_sentence(verb: str, edge: tuple, labels: dict[str, str]) -> str:
    source, target, handle = edge
    way = f" ({graph_picture.handle_in_words(handle)})" if handle else ""
    return f"{verb} “{labels.get(source, source)}”{way} → “{labels.get(target, target)}”"


def _setting_details(old: dict, new: dict) -> list[str]:
    details = []
    for key, name in SETTING_NAMES.items():
        was: Any = (old.get("settings") or {}).get(key)
        now: Any = (new.get("settings") or {}).get(key)
        if was != now:
            words = SETTING_VALUES.get(key, {})
            unit = " s" if key == "timeoutSeconds" else ""
            details.append(f"{name}: {words.get(was, was)}{unit} → {words.get(now, now)}{unit}")
    return details


def changes_in_words(old: dict, new: dict, names: dict[str, str]) -> tuple[list[Change], list[dict]]:
    """What `documents.compare` found between two documents, as sentences; and its YAML diff
    as lines marked added / removed, for those who want the text."""
    diff = documents.compare(old, new)
    labels = {n["id"]: (n.get("data") or {}).get("label") or n["id"]
              for n in [*old.get("nodes", []), *new.get("nodes", [])]}
    changes = [Change("added", f"Added {_named(n)}", _node_summary(n, names)) for n in diff["nodes_added"]]
    changes += [Change("removed", f"Removed {_named(n)}") for n in diff["nodes_removed"]]
    changes += [Change("changed", f"Changed {_named(new_node)}", _node_details(old_node, new_node, names))
                for old_node, new_node in diff["nodes_changed"]]
    changes += [Change("connected", _edge_sentence("Now goes from", e, labels)) for e in diff["edges_added"]]
    changes += [Change("disconnected", _edge_sentence("No longer goes from", e, labels))
                for e in diff["edges_removed"]]
    if diff["nodes_moved"]:
        changes.append(Change("moved", "Moved on the canvas: " + ", ".join(labels[i] for i in diff["nodes_moved"])
                              + " (what they do is unchanged)"))
    if diff["settings_changed"]:
        changes.append(Change("settings", "Changed the settings", _setting_details(old, new)))
    return changes, _diff_lines(diff["text"])


def _diff_lines(text: str) -> list[dict]:
    kinds = {"+": "added", "-": "removed", "@": "place"}
    return [{"kind": "" if line.startswith(("+++", "---")) else kinds.get(line[:1], ""), "text": line}
            for line in text.splitlines()]


# --- Versions and rollback ------------------------------------------------------------------------
def _number(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 9 else None


def _comparison(request, workflow: Workflow, numbers: list[int]) -> dict:
    """The two versions to compare (asked for, else the latest against the one before) and
    what changed between them."""
    if len(numbers) < 2:
        return {}
    wanted_from, wanted_to = _number(request.GET.get("from", "")), _number(request.GET.get("to", ""))
    old = wanted_from if wanted_from is not None else numbers[1]
    new = wanted_to if wanted_to is not None else numbers[0]
    try:
        versions_compare(workflow, old, new)  # the service's check: both versions exist
    except ValidationError as exc:
        return {"from": old, "to": new, "error": " ".join(exc.messages)}
    found = {v.number: v for v in workflow.versions.filter(number__in=[old, new])}
    changes, lines = changes_in_words(workflow_document(workflow, found[old]), workflow_document(workflow, found[new]),
                                      stage_names(workflow.organization_id))
    return {"from": old, "to": new, "changes": changes, "lines": lines}


@require_http_methods(["GET"])
@org_page
def workflow_versions(request, pk: int):
    workflow = workflow_of(request, pk)
    versions = list(workflow.versions.select_related("created_by").order_by("-number"))
    comparison = _comparison(request, workflow, [v.number for v in versions])
    may_roll_back = not _edit_refusal(request, workflow) and workflow.status != WorkflowStatus.ARCHIVED
    return _page(request, workflow, "versions", "web/workflow_versions.html", {
        "versions": versions, "comparison": comparison, "may_roll_back": may_roll_back,
        "live": is_live(workflow), "pending": has_unpublished_changes(workflow)},
        status=400 if comparison.get("error") else 200)


@require_POST
@org_page
def workflow_rollback_view(request, pk: int):
    workflow = workflow_of(request, pk)
    refusal = _edit_refusal(request, workflow)
    if refusal:
        return forbidden(request, refusal)
    number = _number(request.POST.get("version", ""))
    if number is None:
        messages.error(request, "Choose the version to roll back to.")
        return redirect("web:versions", pk=workflow.pk)

    def said(after: Workflow) -> str:
        if after.version == workflow.version:
            return f"Nothing changed: the workflow already has the steps and settings of version {number}."
        live = " It is live now." if is_live(after) else ""
        return (f"Rolled back: version {after.version} has the steps and settings of version {number}; "
                f"earlier versions are kept.{live}")

    attempt(request, lambda: workflow_rollback(workflow_id=workflow.pk, by=request.user, number=number), said)
    return redirect("web:versions", pk=workflow.pk)


# --- Simulate -----------------------------------------------------------------------------------
def chosen_record(organization_id: int, entity: str, value: str):
    """The organization's record of that kind with this id; None for an empty choice; 404 for an
    id that is not one of its records (another organization's included)."""
    if not value.strip():
        return None
    found = record_in(organization_id, entity, value)
    if found is None:
        raise Http404(f"No such {entity} in your organization.")
    return found


def recent_records(organization_id: int, entity: str, chosen) -> list:
    """The most recently changed records, the chosen one first when it is older than those."""
    model: Any = RECORD_MODELS[entity]
    records = model.objects.filter(organization_id=organization_id).order_by(
        "-updated_at" if entity != "contact" else "-created_at")
    if entity == "deal":
        records = Deal.objects.filter(organization_id=organization_id).order_by("-updated_at").select_related("stage")
    found = list(records[:RECENT_RECORDS])
    if chosen is not None and all(r.pk != chosen.pk for r in found):
        found.insert(0, chosen)
    return found


def _previews(run) -> list:
    """The run's steps in order, each with what it would have done in words and in detail."""
    steps = steps_of(run)
    for step in steps:
        result = step.result or {}
        step.mail = result.get("would_send")
        step.task = result.get("would_create_task")
    return steps


@require_http_methods(["GET", "POST"])
@org_page
def workflow_simulate(request, pk: int):
    workflow = workflow_of(request, pk)
    entity = replayed_entity(workflow.trigger_type, workflow.organization_id)
    context: dict = {"entity": entity, "versions": list(workflow.versions.order_by("-number"))}
    if entity is None:  # a webhook or a schedule: no record to run it on
        return _page(request, workflow, "simulate", "web/workflow_simulate.html", context)
    if catalog.is_event(workflow.trigger_type):  # another system's event: its data, as a sample to edit
        declaration = business_events.catalog(workflow.organization_id).get(
            workflow.trigger_type.removeprefix(catalog.EVENT_PREFIX))
        context["sample"] = request.POST.get("sample") or json.dumps(
            business_events.sample_data(declaration) if declaration else {}, indent=2)
    organization_id = request.place.organization.pk
    chosen = chosen_record(organization_id, entity, request.POST.get("record") or request.GET.get("record") or "")
    status = 200
    if request.method == "POST":
        if not request.place.can_edit:
            return forbidden(request, "Only ops members and admins of this organization simulate workflows.")
        context["run"], context["errors"] = _simulate(request, workflow, chosen, entity)
        status = 400 if context["errors"] else 200
        # What is wrong is the event's data (not the record chosen): the data is marked, not the select.
        context["bad_sample"] = "sample" in context and any(
            error.startswith(("data", "The sample data")) for error in context["errors"])
    version = _number(request.POST.get("version", ""))
    context.update(records=recent_records(organization_id, entity, chosen), chosen=chosen, version=version)
    return _page(request, workflow, "simulate", "web/workflow_simulate.html", context, status=status)


def _simulate(request, workflow: Workflow, record, entity: str) -> tuple:
    """(the simulated run with its step previews, None) or (None, what was refused)."""
    if record is None:
        return None, [f"Choose the {entity} to simulate “{workflow.name}” on."]
    number = _number(request.POST.get("version", ""))
    sample = None
    if catalog.is_event(workflow.trigger_type):
        try:
            sample = bounded_reader.read_json(request.POST.get("sample") or "{}", bounded_reader.PAYLOAD)
        except bounded_reader.InputRefused as exc:
            return None, [f"The sample data is not JSON: {exc}"]
    try:
        run = simulate(workflow_id=workflow.pk, by=request.user, record=record, version_number=number, sample=sample)
    except (ValidationError, PermissionDenied) as exc:
        return None, reasons(exc)
    return with_values(run, steps=_previews(run)), []


# --- Graph --------------------------------------------------------------------------------------
def _shown_definition(request, workflow: Workflow) -> tuple[dict, WorkflowVersion | None]:
    """The saved workflow, or the version asked for (`?version=N`)."""
    number = _number(request.GET.get("version", ""))
    version = workflow.versions.filter(number=number).first() if number is not None else None
    if number is not None and version is None:
        raise Http404("This workflow has no such version.")
    return (version.definition if version else workflow.definition), version


@require_http_methods(["GET"])
@org_page
def workflow_graph(request, pk: int):
    workflow = workflow_of(request, pk)
    definition, version = _shown_definition(request, workflow)
    names = graph_picture.Names(  # what the boxes' words name by key
        stages=stage_names(workflow.organization_id),
        workflows=dict(Workflow.objects.filter(organization_id=workflow.organization_id).values_list("key", "name")),
        targets=dict(WebhookTarget.objects.filter(organization_id=workflow.organization_id).values_list("name", "url")))
    problems = graph.problems(definition)
    context: dict[str, Any] = {
        "version": version, "problems": problems,
        "numbers": list(workflow.versions.order_by("-number").values_list("number", flat=True))}
    if not problems:
        # The SVG is built from escaped pieces only (graph_picture._text): safe to insert as is.
        context["picture"] = mark_safe(graph_picture.svg(definition, names))
        context["flow"] = graph_picture.flow_in_words(definition, names)
        context["loops"] = any(way["back"] for node in context["flow"] for way in node["next"])
    return _page(request, workflow, "graph", "web/workflow_graph.html", context)


def tab_links(workflow: Workflow) -> list[tuple[str, str, str]]:
    """(tab, label, address) of the tab bar."""
    tabs = (("edit", "Builder"), ("yaml", "YAML"), ("graph", "Graph"), ("versions", "Versions"),
            ("simulate", "Simulate"), ("impact", "Impact"), ("publish", "Publish"), ("health", "Health"))
    return [("builder" if name == "edit" else name, label, reverse(f"web:{name}", args=[workflow.pk]))
            for name, label in tabs]


# --- Health -------------------------------------------------------------------------------------
@org_page
def workflow_health(request, pk: int):
    """The workflow's figures (kpis.py), this month's time saved and costs (costs.py), its open alerts."""
    workflow = workflow_of(request, pk)
    month = costs.workflow_month(workflow)
    organization = request.place.organization
    return _page(request, workflow, "health", "web/workflow_health.html", {
        "health": kpis.workflow_health(workflow), "month": month, "usage": usage_rows(month.usage, month.costs),
        "ai_use": budget.use(organization.pk, organization.ai_monthly_token_budget),
        "alerts": list(workflow.incidents.filter(closed_at__isnull=True)),
        "breaks": list(workflow.breaks.all()[:5])})


# --- Impact -------------------------------------------------------------------------------------
@org_page
def workflow_impact(request, pk: int):
    """What the workflow as saved would have done over the last days' recorded changes."""
    workflow = workflow_of(request, pk)
    asked = request.GET.get("days", "")
    days = next((d for d in impact.WINDOWS if str(d) == asked), 30)
    # Worked out by a worker (a replay of 100,000 changes takes seconds); the page refreshes
    # itself until it is done, and a finished preview is shown again for a few minutes. A viewer
    # joins one under way or reads the latest; only ops and admins start one (impact.py).
    made = impact.preview_request(workflow, days=days, by=request.user)
    context: dict[str, Any] = {"preview": made, "days": days, "day_choices": impact.WINDOWS,
                               "outdated": made is not None and made.revision != workflow.draft_revision,
                               "can_start": impact.may_start(request.user, workflow)}
    if made is not None and made.status == made.Status.DONE:
        result = made.result
        assert result is not None, "a finished preview has its result"
        labels = {node_id: label or node_id for node_id, label in version_labels_of(workflow).items()}
        context.update(impact=result, skipped=[(s["reason"], s["events"]) for s in result["skipped"]],
                       steps=[(labels.get(r["node"], r["node"]), r["runs"]) for r in result["reached"]],
                       branches=[(labels.get(b["node"], b["node"]), graph_picture.handle_in_words(b["handle"]),
                                  b["runs"]) for b in result["branches"]],
                       undecided=[(labels.get(u["node"], u["node"]), u["runs"]) for u in result.get("undecided", [])])
    return _page(request, workflow, "impact", "web/workflow_impact.html", context)


def version_labels_of(workflow: Workflow) -> dict[str, str]:
    """{node id: label} of the workflow as saved (labels the document gives unlabelled nodes)."""
    document = workflow_document(workflow)
    return {node["id"]: node["data"].get("label", "") for node in document.get("nodes", [])}
