"""The Publish tab: what publishing would change, the regression check of the last runs, and
publishing to every record or to a share of them first (a gradual rollout, raised, held or called
off here by an admin)."""

from typing import Any

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from crm_automation.automation.definition import cycles
from crm_automation.automation.models import Rollout
from crm_automation.automation.services import impact, regression, rollouts
from crm_automation.automation.services.versions import workflow_document
from crm_automation.automation.services.workflows import (
    has_unpublished_changes,
    is_live,
    published_version,
    workflow_publish,
)
from crm_automation.web.selectors import stage_names
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, forbidden, workflow_of
from crm_automation.web.views.workflow_pages import Change, _page, changes_in_words


@require_http_methods(["GET", "POST"])
@org_page
def workflow_publish_view(request, pk: int):
    """GET: what publishing would change (the live version → the saved edits); POST: publish."""
    workflow = workflow_of(request, pk)
    if request.method == "POST":
        if not request.place.can_manage:
            return forbidden(request, "Only admins of this organization publish workflows.")
        if request.POST.get("rollout"):
            _change_rollout(request, workflow)
            return redirect("web:publish", pk=workflow.pk)
        acknowledged = request.POST.get("acknowledge_cycle") == "1"
        given = request.POST.get("share", "100")
        share = int(given) if given.isascii() and given.isdigit() and len(given) < 4 else 0  # 0: refused, said why
        steps = ROLLOUT_SCHEDULE if share < 100 and request.POST.get("scheduled") == "1" else None
        attempt(request, lambda: workflow_publish(workflow_id=workflow.pk, by=request.user,
                                                  acknowledge_cycle=acknowledged, share=share, steps=steps),
                lambda done: _published(done, share))
        return redirect("web:publish", pk=workflow.pk)
    changes: list[Change] = []
    lines: list[dict] = []
    pending = has_unpublished_changes(workflow)
    if pending:
        live = workflow_document(workflow, published_version(workflow))  # (a rollout's version, if one is under way)
        changes, lines = changes_in_words(live, workflow_document(workflow), stage_names(workflow.organization_id))
    # Guarded circles the person may acknowledge (an unguarded one is refused whatever they tick).
    circles = [c for c in cycles.find(workflow, workflow.definition) if c.guarded]
    context: dict[str, Any] = {"pending": pending, "changes": changes, "lines": lines, "live": is_live(workflow),
                               "circles": circles, "shares": SHARES, "rollout": _rollout_of(workflow)}
    if pending:
        # The last runs replayed through the live version and the edits, by a worker: asked for
        # as the page opens (ops and admins start it; a viewer reads the latest), the page
        # refreshing itself until it is done (regression.py).
        check = regression.check_request(workflow, by=request.user)
        context.update(check=check, can_start=impact.may_start(request.user, workflow))
        if check is not None and check.status == check.Status.DONE:
            context["check_current"] = regression.is_current(check, workflow, regression.latest_run_id(workflow))
    return _page(request, workflow, "publish", "web/workflow_publish.html", context)


def _published(workflow, share: int) -> str:
    rolling = workflow.rollout if workflow.rollout_id else None
    if rolling is not None:
        return (f"Published to {share} % of the records: version {rolling.version.number} of “{workflow.name}” "
                f"runs for them, version {workflow.version} for the others.")
    return (f"Published: version {workflow.version} of “{workflow.name}” runs for new triggers; runs already "
            "under way finish on the version they started with.")


SHARES = ((100, "every record"), (50, "half of the records"), (25, "a quarter of the records"),
          (10, "one record in ten"))
ROLLOUT_SCHEDULE = [{"percent": 50, "after_hours": 24}, {"percent": 100, "after_hours": 24}]


def _rollout_of(workflow) -> dict[str, Any] | None:
    """The workflow's rollout under way, with each version's finished and failed runs so far."""
    rollout = Rollout.objects.select_related("version", "previous").filter(
        workflow=workflow, status__in=[Rollout.Status.ACTIVE, Rollout.Status.HELD]).first()
    if rollout is None:
        return None
    rates = rollouts.failure_rates(rollout)
    return {"rollout": rollout, "new": rates.get(rollout.version_id, (0, 0)),
            "old": rates.get(rollout.previous_id, (0, 0)),
            "raise_to": [p for p in (25, 50, 100) if p > rollout.percent]}


def _change_rollout(request, workflow) -> None:
    action, percent = request.POST.get("rollout"), request.POST.get("percent", "")
    if action == "raise" and percent.isascii() and percent.isdigit() and len(percent) < 4:
        attempt(request, lambda: rollouts.rollout_raise(workflow_id=workflow.pk, by=request.user,
                                                        percent=int(percent)),
                lambda done: f"The new version now runs for {done.percent} % of the records."
                if done.status != Rollout.Status.COMPLETED else "The new version now runs for every record.")
    elif action == "hold":
        attempt(request, lambda: rollouts.rollout_hold(workflow_id=workflow.pk, by=request.user),
                lambda done: f"Held at {done.percent} %: its schedule waits until someone raises it.")
    elif action == "abort":
        attempt(request, lambda: rollouts.rollout_abort(workflow_id=workflow.pk, by=request.user),
                lambda done: f"Called off: every record runs version {done.previous.number} again.")
    else:
        messages.error(request, "Choose raise (with a share), hold or call off.")


