"""Live Debug from the builder's canvas (static/web/builder_debug.js): find a record by what it
is called, run the workflow on it in the simulation's sandbox (services/simulation.py `debug`),
and answer with each node's status and each step's intercepted effect, so the canvas lights the
path up; the run stops at a wait or a question until the person fast-forwards or answers it.
"""

import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from crm_automation import bounded_reader
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.services.simulation import AI_STAND_IN, ENTITIES, Debug, debug
from crm_automation.crm.models import Contact, Deal, Lead
from crm_automation.web.run_picture import run_picture
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import workflow_of
from crm_automation.web.views.history import steps_of
from crm_automation.web.words import moment

MODELS: dict[str, type[Deal] | type[Lead] | type[Contact]] = {"deal": Deal, "lead": Lead, "contact": Contact}
FOUND = 10
MAX_CHOICES = 200
MAX_SAMPLE = 2000


def _refused(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
@org_page
def record_search(request):
    """Deals, leads or contacts of the organization whose title, name, email or company holds
    `q` (the most recently changed first; at most 10): the debug's record picker."""
    kind = request.GET.get("type", "")
    if kind not in MODELS:
        return _refused("type must be deal, lead or contact")
    words = request.GET.get("q", "").strip()[:100]
    records = MODELS[kind].objects.filter(organization=request.place.organization)
    if kind == "deal":
        if words:
            records = records.filter(Q(title__icontains=words) | Q(contact__first_name__icontains=words)
                                     | Q(contact__last_name__icontains=words) | Q(contact__email__icontains=words))
        found = [{"id": str(d.pk), "title": d.title, "detail": f"{d.stage.name} · {d.amount}"}
                 for d in records.select_related("stage").order_by("-updated_at")[:FOUND]]
    elif kind == "contact":
        if words:
            records = records.filter(Q(first_name__icontains=words) | Q(last_name__icontains=words)
                                     | Q(email__icontains=words) | Q(company__icontains=words))
        found = [{"id": str(c.pk), "title": str(c), "detail": " · ".join(filter(None, [c.email, c.company]))}
                 for c in records.order_by("-created_at")[:FOUND]]
    else:
        if words:
            records = records.filter(Q(name__icontains=words) | Q(email__icontains=words)
                                     | Q(company__icontains=words))
        found = [{"id": str(lead.pk), "title": lead.name, "detail": " · ".join(filter(None, [lead.email,
                                                                                            lead.company]))}
                 for lead in records.order_by("-updated_at")[:FOUND]]
    return JsonResponse({"results": found})


@require_POST
@org_page
def workflow_debug(request, pk: int):
    """Run (or go on with) a live debug; the answer is what the canvas draws and lists."""
    workflow = workflow_of(request, pk)
    if not request.place.can_edit:
        return _refused("Viewers cannot debug workflows.", 403)
    try:
        body = bounded_reader.read_json(request.body or b"{}", bounded_reader.DOCUMENT)
        choices, record, continuing = _read(body, request.place.organization.pk, workflow.trigger_type)
        run = debug(workflow_id=workflow.pk, by=request.user, record=record, choices=choices, continuing=continuing)
    except bounded_reader.InputRefused as exc:
        return _refused(f"The debug request cannot be read: {exc}")
    except PermissionDenied as exc:
        return _refused(str(exc), 403)
    except ValidationError as exc:
        return _refused(" ".join(exc.messages))
    steps = steps_of(run)
    picture = run_picture(run, steps)
    return JsonResponse({
        "run": run.pk, "url": reverse("web:run", args=[run.pk]), "status": run.status, "version": run.version.number,
        "nodes": [{"id": n["id"], "status": n["status"], "statusWords": n["statusWords"]} for n in picture["nodes"]],
        "steps": [{"node": s.node_id, "label": s.label, "status": s.status, "words": s.words, "error": s.error,
                   "input": s.input or {}, "output": s.result or {}} for s in steps],
        "stopped": _stops(steps, run.version.definition),
    })


def _read(body: object, organization_id: int, trigger_type: str) -> tuple[Debug, Deal | Lead | Contact, int | None]:
    if not isinstance(body, dict):
        raise ValidationError("Send a JSON object: record, fast_forward, answers, samples.")
    entity = ENTITIES.get(trigger_type)
    if entity is None:
        raise ValidationError("Debug replays a deal, a lead or a contact: this workflow starts on none of them (the "
                              "Impact tab shows what past events would have done).")
    chosen = body.get("record") or {}
    record = _record(entity, chosen.get("id") if isinstance(chosen, dict) else None, organization_id)
    if record is None:
        raise ValidationError(f"Choose a {entity} of your organization to debug on.")
    fast_forward = body.get("fast_forward") or []
    answers = body.get("answers") or {}
    samples = body.get("samples") or {}
    if not (isinstance(fast_forward, list) and all(isinstance(x, str) for x in fast_forward)
            and len(fast_forward) <= MAX_CHOICES):
        raise ValidationError("fast_forward must be a list of node ids.")
    if not (isinstance(answers, dict) and all(v in (questions.APPROVED, questions.REJECTED) for v in answers.values())
            and len(answers) <= MAX_CHOICES):
        raise ValidationError("answers must map node ids to approved or rejected.")
    if not (isinstance(samples, dict) and all(isinstance(v, str) and len(v) <= MAX_SAMPLE for v in samples.values())
            and len(samples) <= MAX_CHOICES):
        raise ValidationError(f"samples must map node ids to texts of at most {MAX_SAMPLE} characters.")
    ask_model = body.get("ask_model", False)
    if not isinstance(ask_model, bool):
        raise ValidationError("ask_model must be true or false.")
    continuing = body.get("continuing")
    if continuing is not None and not (isinstance(continuing, int) and not isinstance(continuing, bool)):
        raise ValidationError("continuing must be the id of the debug run to go on with.")
    return Debug(frozenset(fast_forward), dict(answers), dict(samples), ask_model), record, continuing


def _record(entity: str, given: object, organization_id: int) -> Deal | Lead | Contact | None:
    """The organization's record of that kind with that id (a contact's is a number), or None."""
    try:
        if entity == "contact":
            return Contact.objects.filter(organization_id=organization_id, pk=int(str(given))).first()
        model = Deal if entity == "deal" else Lead
        return model.objects.filter(organization_id=organization_id, pk=uuid.UUID(str(given))).first()
    except (ValueError, TypeError, OverflowError):
        return None


def _stops(steps: list, definition: dict) -> list[dict]:
    """Where the debug stopped and what the person can do there: fast-forward a wait, answer a
    question, or give an AI node the answer the model would give."""
    configs = {action.get("id"): action for action in definition.get("actions") or []}
    found = []
    for step in steps:
        result = step.result or {}
        if step.status == StepStatus.WAITING and step.action_type == questions.USER_INPUT:
            found.append({"node": step.node_id, "label": step.label, "kind": "question",
                          "prompt": result.get("prompt", "")})
        elif step.status == StepStatus.WAITING:
            found.append({"node": step.node_id, "label": step.label, "kind": "wait",
                          "until": moment(result.get("wake_at")) if result.get("wake_at") else ""})
        elif step.action_type in AI_STAND_IN and result.get("output") == AI_STAND_IN[step.action_type]["output"]:
            config = (configs.get(step.node_id) or {}).get("config") or {}
            routes = [r.get("label", "") for r in config.get("routes") or [] if isinstance(r, dict)]
            found.append({"node": step.node_id, "label": step.label, "kind": step.action_type, "routes": routes})
    return found
