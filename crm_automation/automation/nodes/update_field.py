import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.utils import timezone

from crm_automation.automation.definition import catalog, coercion, conditions
from crm_automation.automation.models import FieldChange
from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Result, template_errors
from crm_automation.automation.runtime.cause import caused_by
from crm_automation.bulk_insert import bulk_insert
from crm_automation.compiled_query import CompiledQuery
from crm_automation.crm import custom_fields
from crm_automation.crm.models import Deal, Lead, Project, Stage
from crm_automation.crm.selectors import shown, stage_slugs
from crm_automation.crm.services import deal_move_to_stage

OWN = "custom."  # an organization's own field: "custom.budget" (crm/custom_fields.py)
TEXTUAL_OWN = {"text", "long_text", "email", "url", "phone"}  # own fields a template may fill


def _target(trigger_type: str, field: str) -> tuple[str, str]:
    """("deal" | "lead", field name) for a config field such as "probability", "deal.title" or
    "custom.budget" (an own field keeps its "custom." prefix)."""
    entity = catalog.TRIGGER_ENTITY.get(trigger_type, "deal")
    if field.startswith(OWN):
        return entity, field
    if "." in field:
        prefix, _, name = field.partition(".")
        if prefix == "deal" and (trigger_type == catalog.LEAD_CONVERTED or entity == "project"):
            return "deal", name  # the deal the lead became, the deal that sold the project
        if prefix == entity or (prefix in catalog.UPDATABLE_FIELDS and (
                catalog.is_event(trigger_type) or trigger_type in (catalog.TASK_COMPLETED, catalog.TASK_UPDATED))):
            return prefix, name  # (an event's: the record it names; a task's: its deal, lead or project)
        return "", field
    return entity, field


MODELS: dict[str, type[Deal] | type[Lead] | type[Project]] = {"deal": Deal, "lead": Lead, "project": Project}


def _record_of(entity: str, record: object) -> Any:
    """The record of that kind the run acts on: its own, the deal a lead became or a project
    was sold in; None when there is none."""
    if isinstance(record, MODELS[entity]):
        return record
    if entity == "deal":
        return getattr(record, "converted_deal", None) if isinstance(record, Lead) else getattr(record, "deal", None)
    return None


# What the stored values allow: 200 characters of text, 12 digits before a money amount's cents.
TEXT_LIMIT, AMOUNT_DIGITS = 200, 12
CENTS = Decimal("0.01")
# The rows a change is applied to, locked (compiled once per process: compiled_query.py).
_LOCKED = {model: CompiledQuery(lambda ids, model=model: model.objects.select_for_update(no_key=True).filter(
    pk__in=ids).select_related(*(["stage"] if model is Deal else [])).order_by("pk"), ids=list[UUID])
    for model in (Lead, Deal, Project)}


def coerce(kind: str, value: object, *, organization_id: int) -> object:
    """The value as the field's type, or ValueError saying why not (in words)."""
    if isinstance(value, dict | list):
        raise ValueError("must be a single value, not a list or an object")
    if kind == "str":
        return coercion.to_text(value, limit=TEXT_LIMIT)
    if kind == "number":
        return coercion.to_number(value, digits=AMOUNT_DIGITS).quantize(CENTS)
    if kind == "percent":
        return coercion.to_percent(value)
    if kind == "date":
        return coercion.to_date(value)
    if kind == "email":
        return coercion.to_email(value)
    if kind == "lead_status":
        settable = [v for v in Lead.Status.values if v != Lead.Status.CONVERTED]
        if value == Lead.Status.CONVERTED:
            raise ValueError("a lead becomes converted only by converting it (which creates its contact and "
                             f"deal); use one of {', '.join(settable)}")
        if value not in settable:
            raise ValueError(f"{shown(value)} is not a lead status; use one of {', '.join(settable)}")
        return value
    if kind in ("lead_source", "project_status"):
        what, choices = conditions.CHOICE_KINDS[kind]
        if value not in choices.values:
            raise ValueError(f"{shown(value)} is not a {what}; use one of {', '.join(choices.values)}")
        return value
    if kind == "stage":
        stage = Stage.objects.filter(organization_id=organization_id, slug=value).first()
        if stage is None:
            raise ValueError(f"{shown(value)} is not a stage of this organization; use one of "
                             f"{', '.join(stage_slugs(organization_id))}")
        return stage
    raise ValueError(f"unsupported field type {kind}")


def _as_json(value: object) -> object:
    return coercion.json_value(value.slug if isinstance(value, Stage) else value)


class UpdateField(Action["Change"]):
    type = "update_field"
    label = "Update field"
    required = ("field", "value")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if errors or not isinstance(config, dict):
            return errors
        if not isinstance(config["field"], str):
            return [("config.field", "must be the name of a field, e.g. \"probability\"")]
        entity, name = _target(trigger_type, config["field"])
        if name.startswith(OWN):
            return self._own_problems(entity, name, config["value"], trigger_type, organization_id)
        fields = catalog.UPDATABLE_FIELDS.get(entity, {})
        if name not in fields:
            allowed = ", ".join(sorted(fields)) or "none"
            return [("config.field", f"“{config['field']}” cannot be updated; allowed: {allowed}")]
        value = config["value"]
        if isinstance(value, str) and "{{" in value:
            if fields[name] != "str":
                return [("config.value", "templates are only allowed for text fields")]
            return template_errors("config.value", value, trigger_type)
        try:
            coerce(fields[name], value, organization_id=organization_id)
        except ValueError as exc:
            errors.append(("config.value", str(exc)))
        return errors

    @staticmethod
    def _own_problems(entity: str, name: str, value: object, trigger_type: str,
                      organization_id: int) -> list[tuple[str, str]]:
        field = custom_fields.definitions(organization_id, entity).get(name.removeprefix(OWN))
        if field is None:
            known = ", ".join(OWN + key for key in custom_fields.definitions(organization_id, entity)) or "none yet"
            return [("config.field", f"“{name}” is not a field of this organization's {entity}s ({known})")]
        if isinstance(value, str) and "{{" in value:
            if field.kind not in TEXTUAL_OWN:
                return [("config.value", f"templates fill text fields only; “{field.label}” is {field.kind}")]
            return template_errors("config.value", value, trigger_type)
        try:
            custom_fields.value_of(field, value, organization_id)
        except ValueError as exc:
            return [("config.value", f"{field.label}: {exc}")]
        return []

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> "Change":
        entity, name = _target(ctx.trigger_type, str(config["field"]))
        kind = "custom" if name.startswith(OWN) else catalog.UPDATABLE_FIELDS[entity][name]
        record = _record_of(entity, ctx.record)
        if record is None:
            raise ActionFailed(f"there is no {entity} to update")
        raw = config["value"]
        if isinstance(raw, str) and "{{" in raw:
            # A value written into a record must not silently become "" because a placeholder
            # did not resolve: that would blank the field while the run says "completed".
            raw = ctx.render("value", raw, strict=True)
            if not raw.strip() and name in catalog.REQUIRED_FIELDS.get(entity, ()):
                why = ctx.why_empty(config["value"])
                raise ActionFailed(f"the new {entity} {name} rendered empty"
                                   + (f" ({why})" if why else "") + f"; the {name} was left unchanged")
        try:
            if kind == "custom":
                field = custom_fields.definitions(ctx.organization_id, entity).get(name.removeprefix(OWN))
                if field is None:
                    raise ValueError("the organization no longer has this field")
                value = custom_fields.value_of(field, raw, ctx.organization_id)
            else:
                value = coerce(kind, raw, organization_id=ctx.organization_id)
        except ValueError as exc:
            raise ActionFailed(f"{name}: {exc}") from None
        return Change(model=MODELS[entity], pk=record.pk, entity=entity, name=name,
                      kind=kind, value=value)

    def apply(self, items: list[tuple[ExecutionContext, "Change"]]) -> list[Result]:
        """Lock every touched row (in primary-key order, so two workers cannot deadlock), apply
        the changes in order (two changes to one record behave as if made one after the other),
        then write each model's rows back with one UPDATE per field set."""
        locked: dict[tuple[Any, UUID], Any] = {}
        models = {change.model for _, change in items}
        for model in [m for m in (Lead, Deal, Project) if m in models]:  # leads, deals, projects, as everywhere
            pks = sorted({c.pk for _, c in items if c.model is model})
            for found in _LOCKED[model].models(ids=pks):
                locked[(model, found.pk)] = found
        results: list[Result] = []
        audit: list[FieldChange] = []
        dirty: dict[Any, dict[UUID, set[str]]] = {}
        for ctx, change in items:
            row = locked.get((change.model, change.pk))
            if row is None:
                raise ActionFailed(f"the {change.entity} no longer exists")
            if change.kind == "lead_status" and isinstance(row, Lead) and row.converted_at is not None:
                # Checked under the row lock: the lead may have been converted after the run began.
                raise ActionFailed("the lead is converted, so its status stays Converted; nothing was changed")
            if change.kind == "stage":
                assert isinstance(row, Deal) and isinstance(change.value, Stage), "a stage is a deal's"
                old = row.stage.slug
                with caused_by(ctx.run_id, ctx.depth):  # the move fires an event: mark its cause
                    deal_move_to_stage(deal=row, stage=change.value)
            elif change.kind == "custom":  # one key of the record's own fields, the others kept
                key = change.name.removeprefix(OWN)
                old = row.custom.get(key)
                row.custom = {k: v for k, v in {**row.custom, key: change.value}.items() if v is not None}
                dirty.setdefault(change.model, {}).setdefault(row.pk, set()).add("custom")
            else:
                old = getattr(row, change.name)
                setattr(row, change.name, change.value)
                dirty.setdefault(change.model, {}).setdefault(row.pk, set()).add(change.name)
            audit.append(FieldChange(
                organization_id=ctx.organization_id, entity_type=change.entity, entity_id=row.pk,
                field=change.name, old_value=_as_json(old), new_value=_as_json(change.value),
                run_id=ctx.run_id, automation_key=ctx.key))
            results.append({"field": f"{change.entity}.{change.name}", "old": _as_json(old),
                            "new": _as_json(change.value)})
        # Rows that end with the same new values (the usual case: a constant in the config)
        # share one UPDATE ... WHERE pk IN (...).
        now = timezone.now()
        causes = {(change.model, change.pk): ctx for ctx, change in items}
        for model, rows in dirty.items():
            if model is Project:
                # A project's status is its life cycle, as a deal's stage is: a workflow that
                # completes a project starts the workflows on its completion (saved one by one,
                # under the run's cause, so the loop guard counts it).
                for pk, names in rows.items():
                    ctx = causes[(model, pk)]
                    with caused_by(ctx.run_id, ctx.depth):
                        locked[(model, pk)].save(update_fields=[*sorted(names), "updated_at"])
                continue
            by_values: dict[str, tuple[dict[str, object], list[UUID]]] = {}
            for pk, names in rows.items():
                row = locked[(model, pk)]
                values = {name: getattr(row, name) for name in sorted(names)}
                same = json.dumps({k: _as_json(v) for k, v in values.items()}, sort_keys=True, default=str)
                by_values.setdefault(same, (values, []))[1].append(pk)
            for values, pks in by_values.values():
                model.objects.filter(pk__in=pks).update(**values, updated_at=now)
        bulk_insert(audit)
        return results

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {c.automation_key: {"field": f"{c.entity_type}.{c.field}", "old": c.old_value, "new": c.new_value,
                                   "repeated_delivery": True}
                for c in FieldChange.objects.filter(automation_key__in=keys)}


@dataclass
class Change:
    model: type[Deal] | type[Lead] | type[Project]
    pk: UUID
    entity: str
    name: str
    kind: str
    value: object
