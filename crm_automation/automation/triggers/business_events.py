"""Workflows on another system's events (crm/business_events.py holds the catalog and sending).

A workflow on `invoice.overdue` has the trigger type "event:invoice.overdue"; the events the
CRM makes itself too (project.completed, contact.created) start the CRM's own trigger types.
What a workflow may read of an event is its declaration's data, typed for conditions
(`declared_fields`, set around validation and the builder), plus the records it names.
"""

from crm_automation.automation.definition import catalog
from crm_automation.crm import business_events
from crm_automation.crm.custom_fields import kind_of


def declared_fields(organization_id: int, known: dict | None = None) -> dict[str, dict[str, str]]:
    """{trigger type: {"trigger.invoice.amount_due": "number", …}} for the organization's catalog
    (`known`: the catalog, when the caller has read it already)."""
    # (A date and time stays one: a wait may be "until" it, ± an offset; conditions compare it as text.)
    return {declaration.trigger_type: {f"trigger.{f.key}": "datetime" if f.kind == "datetime" else kind_of(f.kind)
                                       for f in declaration.fields}
            for declaration in (known or business_events.catalog(organization_id)).values()}


def field_names(organization_id: int, known: dict | None = None) -> dict[str, str]:
    """Each declared field's path with the name a person reads ("Invoice › Amount due")."""
    names = {}
    for declaration in (known or business_events.catalog(organization_id)).values():
        for f in declaration.fields:
            head = f.key.split(".")[0].replace("_", " ").capitalize()
            names[f"trigger.{f.key}"] = f"{head}{catalog.SEPARATOR}{f.label}"
    return names


def validate(trigger_type: str, config: dict, organization_id: int) -> list[tuple[str, str]]:
    """The event is in the organization's catalog; it takes no settings besides its conditions."""
    name = trigger_type.removeprefix(catalog.EVENT_PREFIX)
    known = business_events.catalog(organization_id)
    if name not in known:
        return [("type", f"“{name}” is neither a CRM trigger nor an event of this organization's catalog (events: "
                         f"{', '.join(sorted(known))}); an admin can declare it on the Events page")]
    return [(f"config.{key}", "unknown setting (an event's workflow takes only conditions)")
            for key in sorted(set(config or {}))]
