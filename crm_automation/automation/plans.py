"""What each plan allows (docs/product.md#plans): Free hides automation, Pro has limits,
Enterprise none."""

from datetime import date

from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.utils import timezone

from crm_automation.automation.models import MonthlyUsage
from crm_automation.compiled_query import CompiledUpdate
from crm_automation.crm.models import Organization

Plan = Organization.Plan
ACTIVE_WORKFLOW_LIMIT: dict[str, int | None] = {Plan.FREE: 0, Plan.PRO: 10, Plan.ENTERPRISE: None}
MONTHLY_LOGGED_RUNS: dict[str, int | None] = {Plan.FREE: 0, Plan.PRO: 500, Plan.ENTERPRISE: None}


def includes_automation(plan: str) -> bool:
    return plan != Plan.FREE


class NotIncluded(PermissionDenied):
    """The organization's plan does not include automation (a 403 on the API; the pages show
    templates/web/plan_free.html instead, the admin hides the automation models)."""


def refusal(organization: Organization) -> str:
    """What a person (or a webhook sender) is told when the plan stands in the way."""
    return (f"{organization.name} is on the {organization.get_plan_display()} plan, which does not include "
            "automation (workflows and webhook endpoints); an admin of the organization can change the plan.")


def require_automation(organization: Organization) -> None:
    """Refuse automation work (NotIncluded) for an organization whose plan does not include it."""
    if not includes_automation(organization.plan):
        raise NotIncluded(refusal(organization))


def month_start(now=None):
    now = timezone.localdate(now or timezone.now())
    return now.replace(day=1)


# Compiled once per process (compiled_query.py): every dispatch that makes runs asks.
_COUNT_UNLIMITED = CompiledUpdate(lambda organization, month, runs: (
    MonthlyUsage.objects.filter(organization_id=organization, month=month),
    {"logged_runs": F("logged_runs") + runs}), organization=int, month=date, runs=int)


def reserve_history(*, organization: Organization, runs: int) -> int:
    """Count `runs` against this month's quota; return how many of them may keep history.

    Call inside the dispatch transaction: the usage row is locked, so two workers can never
    both take the last slot.
    """
    limit = MONTHLY_LOGGED_RUNS.get(organization.plan)
    month = month_start()
    if limit is None and runs and _COUNT_UNLIMITED.run(organization=organization.pk, month=month, runs=runs):
        return runs  # no limit: one UPDATE (its row lock orders two workers), nothing to read
    usage, _ = MonthlyUsage.objects.select_for_update(no_key=True).get_or_create(organization=organization, month=month)
    logged = runs if limit is None else max(0, min(runs, limit - usage.logged_runs))
    usage.logged_runs += logged
    usage.suppressed_runs += runs - logged
    usage.save(update_fields=["logged_runs", "suppressed_runs"])
    return logged
