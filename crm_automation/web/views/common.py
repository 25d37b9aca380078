"""What every page view needs: the place's objects or a 404, refusals as messages, and a safe
way back to the page a form was posted from.

`attempt` is where the pages turn a service's refusal into words: bad input (ValidationError),
a role (PermissionDenied) and "not now" (Refused) all become the message the page shows; the
builder and the YAML tab also show a StaleEdit as what is saved now (workflow_pages.is_stale)."""

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.refusals import Refused, reasons

T = TypeVar("T")


def workflow_of(request, pk: int) -> Workflow:
    """The workflow if it is the page's organization's; otherwise 404, never 403."""
    found = Workflow.objects.filter(pk=pk, organization=request.place.organization).first()
    if found is None:
        raise Http404("No such workflow in your organization.")
    return found


def run_of(request, pk: int) -> WorkflowRun:
    found = (WorkflowRun.objects.filter(pk=pk, organization=request.place.organization, history_suppressed=False)
             .select_related("workflow", "version").first())
    if found is None:
        raise Http404("No such run in your organization.")
    return found


def back(request, default: str = "") -> HttpResponseRedirect:
    """To the page the form came from (`next`, same site only), else `default` or the list."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return HttpResponseRedirect(wanted)
    return HttpResponseRedirect(default or reverse("web:workflows"))


def forbidden(request, why: str):
    return render(request, "web/forbidden.html", {"place": request.place, "why": why}, status=403)


def attempt(request, call: Callable[[], T], done: Callable[[T], str] | str = "") -> T | None:
    """Call a service; its refusal (input, state, plan, role) becomes an error message on the
    page the user returns to, instead of an exception, and success says `done`. None when
    refused."""
    try:
        result = call()
    except (ValidationError, PermissionDenied, Refused) as exc:
        messages.error(request, refusal_text(exc))
        return None
    text = done(result) if callable(done) else done
    if text:
        messages.success(request, text)
    return result


def refusal_text(exc: ValidationError | PermissionDenied | Refused) -> str:
    """A refusal of any kind as the one message a page shows."""
    return " ".join(reasons(exc)) or "That is not allowed."
