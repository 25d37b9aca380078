"""Run history: the accordion under the workflow list (its first page), more pages by cursor,
one run's steps (loaded when a row is opened), and the run controls (retry, resume, cancel,
bulk retry of failures). Without JavaScript, "load more" and a run's steps are plain pages."""

import json
from datetime import datetime, time

from django.contrib import messages
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from crm_automation.automation.models import RunStatus, StepStatus, Workflow
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.selectors import version_labels
from crm_automation.automation.services.runs import run_cancel, run_resume, run_retry, runs_retry_failed
from crm_automation.web import selectors
from crm_automation.web.live import runs_watch
from crm_automation.web.run_picture import run_picture
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden, run_of
from crm_automation.web.words import duration, step_in_words

# What a person may do with a run in each status (the services refuse anything else anyway).
CONTROLS = {
    RunStatus.FAILED: [("retry", "Retry")],
    RunStatus.PARTIAL: [("retry", "Retry")],
    RunStatus.PAUSED: [("resume-retry", "Retry the failed step"), ("resume-skip", "Skip it and go on"),
                       ("cancel", "Cancel")],
    RunStatus.WAITING: [("cancel", "Cancel")],
    RunStatus.STARTED: [("cancel", "Cancel")],
}


def history_context(request) -> dict:
    """The first page of the history, its filters and the workflows to filter by."""
    place = request.place
    filters = selectors.RunFilters.from_query(request.GET)
    runs, after = selectors.history_page(place.organization, filters)
    for problem in filters.errors:
        messages.error(request, f"Run filter ignored: {problem}.")
    return {"runs": runs, "after": after, "run_filters": filters, "run_statuses": RunStatus.choices,
            "live": runs_watch(place.organization.pk, runs),
            "filter_workflows": Workflow.objects.filter(organization=place.organization).order_by("name")
            .values_list("pk", "name"), "controls": CONTROLS}


@org_page
def run_history(request):
    """More of the history (`?after=<run id>`): the rows alone for the accordion's script, or
    a page of its own without JavaScript."""
    place = request.place
    filters = selectors.RunFilters.from_query(request.GET)
    runs, after = selectors.history_page(place.organization, filters, request.GET.get("after", ""))
    context = {"place": place, "runs": runs, "after": after, "run_filters": filters, "controls": CONTROLS,
               "run_statuses": RunStatus.choices, "live": runs_watch(place.organization.pk, runs),
               "filter_workflows": Workflow.objects.filter(organization=place.organization).order_by("name")
               .values_list("pk", "name")}
    if request.GET.get("fragment"):
        return render(request, "web/_run_rows.html", context)
    return render(request, "web/run_history.html", context)


def steps_of(run) -> list:
    """The run's steps in the order it reached them, each with its label and outcome in words."""
    labels = version_labels(run.version) if run.version_id else {}
    steps = list(run.actions.order_by("position", "id"))
    for step in steps:
        step.label = labels.get(step.node_id) or step.action_type.replace("_", " ")
        step.words = step_in_words(step.action_type, step.result, simulated=run.simulated)
        took = (step.finished_at - step.started_at) if step.finished_at and step.started_at else None
        step.took = duration(int(took.total_seconds() * 1000)) if took is not None else ""
        step.open_question = (step.action_type == questions.USER_INPUT and step.status == StepStatus.WAITING
                              and not (step.result or {}).get("decision"))
    return steps


@org_page
def run_detail(request, pk: int):
    run = run_of(request, pk)
    selectors.name_records([run])
    steps = steps_of(run)
    context = {"place": request.place, "run": run, "steps": steps, "controls": CONTROLS,
               "took": duration(run.duration_ms)}
    if request.GET.get("fragment"):
        return render(request, "web/_run_steps.html", context)
    picture = run_picture(run, steps)
    return render(request, "web/run_detail.html", {
        **context, "picture": picture, "live": runs_watch(request.place.organization.pk, [run]),
        "payload": json.dumps(picture["payload"], indent=2, ensure_ascii=False, sort_keys=True)})


CONTROL_CALLS = {
    "retry": (lambda run, by: run_retry(run_id=run.pk, by=by), "Run #{} will be retried from its failed step."),
    "resume-retry": (lambda run, by: run_resume(run_id=run.pk, by=by, how="retry"),
                     "Run #{} goes on: its failed step is tried again."),
    "resume-skip": (lambda run, by: run_resume(run_id=run.pk, by=by, how="skip"),
                    "Run #{} goes on without the failed step."),
    "cancel": (lambda run, by: run_cancel(run_id=run.pk, by=by), "Run #{} is cancelled."),
}


@require_POST
@org_page
def run_control(request, pk: int, how: str):
    run = run_of(request, pk)
    if how not in CONTROL_CALLS:
        return forbidden(request, "Unknown run control.")
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot retry, resume or cancel runs.")
    call, done = CONTROL_CALLS[how]
    attempt(request, lambda: call(run, request.user), done.format(run.pk))
    return back(request, reverse("web:run", args=[run.pk]))


@require_POST
@org_page
def runs_bulk_retry(request):
    """Retry every failed run of a workflow since a date (the organization's midnight)."""
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot retry runs.")
    workflow_id = request.POST.get("workflow", "")
    workflow = (Workflow.objects.filter(pk=int(workflow_id), organization=request.place.organization).first()
                if workflow_id.isascii() and workflow_id.isdigit() and len(workflow_id) < 18 else None)
    filters = selectors.RunFilters.from_query({"since": request.POST.get("since", "")})
    if workflow is None:
        messages.error(request, "Choose the workflow whose failed runs to retry.")
    elif filters.errors or not filters.since:
        messages.error(request, "Give the date from which failed runs are retried.")
    else:
        since = timezone.make_aware(datetime.combine(filters.since, time.min))

        def said(result) -> str:
            count, notes = result
            return f"{count} failed runs of “{workflow.name}” since {filters.since:%-d %b %Y} will be retried." + (
                " " + " ".join(notes) if notes else "")

        attempt(request, lambda: runs_retry_failed(workflow_id=workflow.pk, by=request.user, since=since), said)
    return back(request)
