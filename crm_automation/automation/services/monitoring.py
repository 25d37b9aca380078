"""Writes behind the time-saved and cost figures (ops/costs.py): the minutes of manual work a
workflow's run replaces (ops and admins) and the organization's unit prices (admins only).

Every surface (the admin, the Health tab, the prices page, the API) calls these: the role is
checked here, every bad value is reported by field at once, and nothing is written unless all
of them are good.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from crm_automation.automation.models import UnitPrices, Workflow
from crm_automation.crm.selectors import user_has_role

MAX_MINUTES = 10_000  # about a week of work: more is a typing mistake, not a run
PRICE_FIELDS = ("email", "sms_segment", "ai_1k_tokens", "webhook_call")
MAX_PRICE = Decimal("999999.999999")  # what the columns hold (12 digits, 6 after the point)


def _minutes(value: Any) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINUTES:
        raise ValidationError({"minutes_saved": f"a whole number of minutes from 0 to {MAX_MINUTES:,} "
                                                f"(0: not counted)"})
    return value


@transaction.atomic
def workflow_set_minutes_saved(*, workflow_id: int, by, minutes: Any) -> Workflow:
    """Set how many minutes of manual work one completed run of the workflow replaces."""
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can set the time a workflow saves.")
    value = _minutes(minutes)
    if workflow.minutes_saved != value:
        workflow.minutes_saved = value
        workflow.save(update_fields=["minutes_saved", "updated_at"])
    return workflow


def _price(value: Any) -> tuple[Decimal | None, str]:
    """The price, or why it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None, "a number such as 0.01"
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        return None, "a number such as 0.01"
    if not price.is_finite():
        return None, "a number such as 0.01"
    if price < 0:
        return None, "must not be negative"
    if price > MAX_PRICE:
        return None, f"at most {MAX_PRICE}"
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        return None, "at most 6 digits after the decimal point"
    return price, ""


@transaction.atomic
def unit_prices_set(*, organization_id: int, by, values: dict[str, Any]) -> UnitPrices:
    """Set some or all of the organization's unit prices. Admins only (they are the bill)."""
    if by is not None and not user_has_role(by, organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can set its prices.")
    errors: dict[str, str] = {}
    clean: dict[str, Decimal] = {}
    for name, value in values.items():
        if name not in PRICE_FIELDS:
            errors[name] = f"not a price; the prices are {', '.join(PRICE_FIELDS)}"
            continue
        price, problem = _price(value)
        if price is None:
            errors[name] = problem
        else:
            clean[name] = price
    if errors:
        raise ValidationError(errors)
    prices, _ = UnitPrices.objects.select_for_update(no_key=True).get_or_create(organization_id=organization_id)
    changed = [name for name, price in clean.items() if getattr(prices, name) != price]
    for name in changed:
        setattr(prices, name, clean[name])
    if changed:
        prices.updated_by = by
        prices.save(update_fields=[*changed, "updated_by", "updated_at"])
    return prices
