"""An organization's monthly AI budget (`Organization.ai_monthly_token_budget`, in tokens: what
a provider bills by, whatever the prices configured): this month's use is the sum of its
`AiCall` rows' tokens since the first of the month (one aggregate over the
(organization, created_at) index). Once the use reaches the budget an AI step fails before
any model call with the reason, and its error policy decides what follows (a pause, its
`error` edge). A step that starts under the budget finishes its conversation: the check is
one query per step, not one per model call."""

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from crm_automation.automation.models import AiCall
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import user_has_role


@dataclass(frozen=True)
class Use:
    tokens: int
    budget: int | None
    since: date
    renews: date

    @property
    def spent(self) -> bool:
        return self.budget is not None and self.tokens >= self.budget

    @property
    def share(self) -> float | None:
        return None if not self.budget else min(self.tokens / self.budget, 1.0)


def _month(today: date) -> tuple[date, date]:
    start = today.replace(day=1)
    renews = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, renews


def use(organization_id: int, budget: int | None) -> Use:
    """This month's AI use of the organization (one aggregate query)."""
    since, renews = _month(timezone.localdate())
    start = timezone.make_aware(datetime.combine(since, time.min))
    tokens = AiCall.objects.filter(organization_id=organization_id, created_at__gte=start).aggregate(
        n=Sum(F("input_tokens") + F("output_tokens")))["n"] or 0
    return Use(tokens=int(tokens), budget=budget, since=since, renews=renews)


def refusal(organization_id: int) -> str | None:
    """Why an AI step of the organization may not ask the model now (None: it may). Without a
    budget nothing is summed."""
    budget = Organization.objects.filter(pk=organization_id).values_list("ai_monthly_token_budget", flat=True).first()
    if budget is None:
        return None
    spent = use(organization_id, budget)
    if not spent.spent:
        return None
    return (f"the organization's monthly AI budget of {budget:,} tokens is spent ({spent.tokens:,} used since "
            f"{spent.since:%-d %B}); raise it or wait until {spent.renews:%-d %B}; nothing was asked")


MAX_BUDGET = 10**12  # tokens; beyond any month's use, and within the column


@transaction.atomic
def ai_budget_set(*, organization_id: int, by: Any, tokens: object) -> Organization:
    """Set (or with None clear) the organization's monthly AI budget in tokens: admins only.
    ValidationError names `budget_tokens` for a value that is not a whole number of tokens."""
    if by is None or not user_has_role(by, organization_id, "admin"):
        raise PermissionDenied("Only an admin of the organization sets its monthly AI budget.")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                               or not 0 <= tokens <= MAX_BUDGET):
        raise ValidationError({"budget_tokens": f"must be a whole number of tokens from 0 to {MAX_BUDGET:,}, or null "
                                                "for no budget"})
    organization = Organization.objects.select_for_update(no_key=True).get(pk=organization_id)
    organization.ai_monthly_token_budget = tokens
    organization.save(update_fields=["ai_monthly_token_budget"])
    return organization
